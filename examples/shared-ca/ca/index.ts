/**
 * The CA stack: owns the fleet's CA and exports it for host stacks (`StackReference`). The key is
 * exported as a secret; only stacks allowed to read this stack's secrets can issue certificates.
 */
import * as pulumi from "@pulumi/pulumi";
import { CertificateAuthority } from "pulumi-virt-pki";

const config = new pulumi.Config();
const ca = new CertificateAuthority("fleet-ca", {
  subject: {
    organization: config.get("organization") ?? "Virtualization",
    commonName: config.get("commonName") ?? "Fleet CA",
  },
  keySpec: "ecdsa-p384",
  validityHours: config.getNumber("validityHours") ?? 87600,
});

/** The CA certificate: install it everywhere. */
export const caCertPem = ca.certPem;
/** The CA key, secret: for host stacks that issue their own certificates. */
export const caKeyPem = ca.keyPem;
/** When this CA should be rotated (README: CA rotation). */
export const caRenewAt = ca.renewAt;
