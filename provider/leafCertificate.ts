/** What ServerCertificate and ClientCertificate share: arguments, outputs and how inputs are passed. */
import * as pulumi from "@pulumi/pulumi";
import type { KeySpec } from "./pki/keys";
import type { Subject } from "./pki/names";
import { CaCredentials, CaLike, caInput } from "./caCredentials";

/** Arguments common to server and client certificates. Give `subject` (and names) or a certtool `template`. */
export interface LeafCertificateArgs {
  /** The issuing CA: a CertificateAuthority, or `{ certPem, keyPem }` (e.g. from a StackReference). */
  readonly ca: CaLike | pulumi.Input<CaCredentials>;
  /** Subject DN. Servers: CN is the host's FQDN. */
  readonly subject?: pulumi.Input<Subject>;
  /** DNS names clients use (servers also get their CN). Normalised: case and order do not matter. */
  readonly dnsNames?: pulumi.Input<pulumi.Input<string>[]>;
  /** IPv4/IPv6 addresses clients use. Normalised to canonical form. */
  readonly ipAddresses?: pulumi.Input<pulumi.Input<string>[]>;
  /** A certtool template (as in the libvirt and QEMU guides) instead of subject and names. */
  readonly template?: pulumi.Input<string>;
  /** Key type of a generated key. @default "rsa-3072" */
  readonly keySpec?: pulumi.Input<KeySpec>;
  /** Sign this CSR instead of generating a key: no private key exists in state. */
  readonly csrPem?: pulumi.Input<string>;
  /** Lifetime in hours. @default 8760 (365 days) */
  readonly validityHours?: pulumi.Input<number>;
  /** Re-issue (replace) this many hours before expiry; shows as `notAfter` in the preview. @default 720 */
  readonly renewBeforeHours?: pulumi.Input<number>;
  /** End with the CA instead of failing when the certificate would outlive it. @default false */
  readonly truncateToIssuer?: pulumi.Input<boolean>;
  /** Policy: refuse a validity longer than this many hours (Ganeti: 168). @default no limit */
  readonly maxValidityHours?: pulumi.Input<number>;
}

/** The dynamic resource inputs for a leaf: the arguments plus the profile and every output declared. */
export function leafInputs(args: LeafCertificateArgs, profile: pulumi.Input<string>): pulumi.Inputs {
  return {
    ca: caInput(args.ca),
    profile,
    subject: args.subject,
    dnsNames: args.dnsNames,
    ipAddresses: args.ipAddresses,
    template: args.template,
    keySpec: args.keySpec,
    csrPem: args.csrPem,
    validityHours: args.validityHours,
    renewBeforeHours: args.renewBeforeHours,
    truncateToIssuer: args.truncateToIssuer,
    maxValidityHours: args.maxValidityHours,
    certPem: undefined,
    keyPem: undefined,
    caCertPem: undefined,
    caChainPem: undefined,
    serialNumber: undefined,
    notBefore: undefined,
    notAfter: undefined,
    renewAt: undefined,
    fingerprintSha256: undefined,
    subjectDn: undefined,
    distinguishedName: undefined,
  };
}

/** Resource options every leaf gets: its key is a secret output. */
export function leafOptions(opts?: pulumi.CustomResourceOptions): pulumi.CustomResourceOptions {
  return pulumi.mergeOptions(opts, { additionalSecretOutputs: ["keyPem"] });
}
