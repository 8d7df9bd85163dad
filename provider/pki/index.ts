/**
 * The pure PKI core of pulumi-virt-pki: keys, names, certificates, CSRs, CRLs, QEMU PSKs, certtool
 * templates and inspection. No Pulumi import: the resources in `provider/` call these functions.
 *
 * @module
 */
export * from "./errors";
export * from "./keys";
export * from "./names";
export * from "./altnames";
export * from "./serial";
export * from "./validity";
export { KEY_USAGES, KeyUsage, ExtendedKeyUsage } from "./extensions";
export * from "./issuer";
export * from "./result";
export { fingerprintSha256 } from "./certificate";
export * from "./ca";
export * from "./leaf";
export * from "./csr";
export * from "./crl";
export * from "./revocations";
export * from "./psk";
export * from "./template";
export * from "./inspect";
export * from "./limits";
export * from "./acceptance";
