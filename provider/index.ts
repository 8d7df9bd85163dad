/** The Pulumi resources of pulumi-virt-pki. */
export * from "./caCredentials";
export * from "./certificateAuthority";
export * from "./leafCertificate";
export * from "./serverCertificate";
export * from "./clientCertificate";
export * from "./hostIdentities";
export * from "./certificateRevocationList";
export * from "./preSharedKeys";
export * from "./hostProbe";
