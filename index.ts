/**
 * pulumi-virt-pki: the x509 PKI of a libvirt/QEMU fleet as Pulumi resources.
 *
 * The resources (`CertificateAuthority`, `ServerCertificate`, `ClientCertificate`,
 * `CertificateRevocationList`, `PreSharedKeys`) are exported at the root; `pki` is the pure core
 * (no Pulumi import) that they call, usable on its own. `HostCredentialInstall` places credentials on
 * hosts; `VirtualizationPki` declares a whole fleet.
 *
 * @packageDocumentation
 */
export * as pki from "./provider/pki";
export * from "./provider";
export * from "./components";
