/**
 * pulumi-virt-pki: the x509 PKI of a libvirt/QEMU fleet as Pulumi resources.
 *
 * `pki` is the pure core (no Pulumi import) that the resources call; it can be used on its own.
 */
export * as pki from "./provider/pki";
