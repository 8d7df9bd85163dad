/** What ServerCertificate and ClientCertificate share: arguments, outputs and how inputs are passed. */
import * as pulumi from "@pulumi/pulumi";
import type { KeySpec } from "./pki/keys";
import type { Subject } from "./pki/names";
import { CaCredentials, CaLike, caInput } from "./caCredentials";
import { DEFAULT_LEAF_RENEW_BEFORE_HOURS } from "./handlers/certificate";
import { renewAtFor } from "./pki/inspect";
import { certificateProvider } from "./providers";
import { suspendStackTraces } from "./sdkStacks";

/** Arguments common to server and client certificates. Give `subject` (and names) or a certtool `template`. */
export interface LeafCertificateArgs {
  /** The issuing CA: a CertificateAuthority, or `{ certPem, keyPem }` (e.g. from a StackReference). */
  readonly ca: CaLike | pulumi.Input<CaCredentials>;
  /**
   * Subject DN. Servers: CN is the host's FQDN.
   * @default none: required, unless a `template` is given or a `csrPem`, whose subject is then used
   */
  readonly subject?: pulumi.Input<Subject>;
  /**
   * DNS names clients use (servers also get their CN). Normalised: case and order do not matter.
   * @default none besides a server's CN; with `csrPem` and no subject, template or names, the CSR's
   */
  readonly dnsNames?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * IPv4/IPv6 addresses clients use. Normalised to canonical form.
   * @default none; with `csrPem` and no subject, template or names, the CSR's
   */
  readonly ipAddresses?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * A certtool template (as in the libvirt and QEMU guides) instead of subject and names.
   * @default none: the certificate is described by `subject`, `dnsNames` and `ipAddresses`
   */
  readonly template?: pulumi.Input<string>;
  /**
   * Key type of a generated key: RSA by default, as certtool and the guides do (see
   * `CertificateAuthorityArgs.keySpec`; `VirtualizationPki` defaults to `"ecdsa-p256"`).
   * @default "rsa-3072"
   */
  readonly keySpec?: pulumi.Input<KeySpec>;
  /**
   * Sign this CSR instead of generating a key: no private key exists in state.
   * @default none: a key of `keySpec` is generated, and `keyPem` holds it
   */
  readonly csrPem?: pulumi.Input<string>;
  /** Lifetime in hours. @default 8760 (365 days) */
  readonly validityHours?: pulumi.Input<number>;
  /** Re-issue (replace) this many hours before expiry; shows as `notAfter` in the preview. @default 720 */
  readonly renewBeforeHours?: pulumi.Input<number>;
  /**
   * End with the CA instead of failing when the certificate would outlive it. A policy for the next issuance:
   * changing it re-issues nothing. (`VirtualizationPki` sets it, so that its hosts and clients can still be
   * issued and renewed in the last year of their CA; the fleet warns then.)
   * @default false
   */
  readonly truncateToIssuer?: pulumi.Input<boolean>;
  /** Policy: refuse a validity longer than this many hours (Ganeti: 168). @default no limit */
  readonly maxValidityHours?: pulumi.Input<number>;
  /**
   * Re-issue when the renewal window is reached. false for a revoked certificate: it must not come back
   * with a new serial that the CRL does not list. @default true
   */
  readonly autoRenew?: pulumi.Input<boolean>;
  /**
   * The certificate is revoked (listed in a CRL): it is frozen as issued. No change of any input (keySpec,
   * validityHours, subject, the CA, ...) and no renewal re-issues it; `revokedAt` records when it was
   * marked. Setting the mark is an in-place update (the one a certificate has), so its preview shows the
   * certificate's outputs as unknown. Removing the mark re-issues it with a new serial.
   * @default false
   */
  readonly revoked?: pulumi.Input<boolean>;
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
    autoRenew: args.autoRenew,
    revoked: args.revoked,
    truncateToIssuer: args.truncateToIssuer,
    maxValidityHours: args.maxValidityHours,
    certPem: undefined,
    keyPem: undefined,
    caCertPem: undefined,
    caChainPem: undefined,
    serialNumber: undefined,
    notBefore: undefined,
    notAfter: undefined,
    fingerprintSha256: undefined,
    subjectDn: undefined,
    distinguishedName: undefined,
    revokedAt: undefined,
  };
}

/**
 * `renewAt` of a certificate resource: its `notAfter` output minus the program's renewal window. Computed
 * here rather than stored, so that a new window changes no output of the resource (a "same" step).
 * Undefined while `notAfter` is (a resource that failed, or mocks that return no outputs).
 */
export function renewAtOutput(
  notAfter: pulumi.Output<string>,
  renewBeforeHours: pulumi.Input<number> | undefined,
  defaultHours: number,
): pulumi.Output<string> {
  return pulumi
    .all([notAfter, renewBeforeHours])
    .apply(([end, hours]) =>
      typeof end === "string" && !Number.isNaN(Date.parse(end))
        ? renewAtFor(end, hours ?? defaultHours).toISOString()
        : (undefined as unknown as string),
    );
}

/** Resource options every leaf gets: its key is a secret output. */
export function leafOptions(opts?: pulumi.CustomResourceOptions): pulumi.CustomResourceOptions {
  return pulumi.mergeOptions(opts, { additionalSecretOutputs: ["keyPem"] });
}

/**
 * What ServerCertificate and ClientCertificate have in common: the dynamic resource with the leaf
 * outputs. Not constructed directly; use ServerCertificate or ClientCertificate.
 */
export abstract class LeafCertificate extends pulumi.dynamic.Resource {
  /** The certificate (PEM): servercert.pem / server-cert.pem, or clientcert.pem / client-cert.pem. */
  declare readonly certPem: pulumi.Output<string>;
  /**
   * The private key (PKCS#8 PEM). Secret. Typed as a string so it passes straight to an install; when a
   * CSR was signed (`csrPem`) there is no key here (it stays with whoever made the CSR) and the value is
   * undefined: an install given it fails with `keyPem: is required`.
   */
  declare readonly keyPem: pulumi.Output<string>;
  /** The issuing CA's certificate (PEM). */
  declare readonly caCertPem: pulumi.Output<string>;
  /** The issuing CA's chain up to the root (PEM). */
  declare readonly caChainPem: pulumi.Output<string>;
  /** Serial number, hex. */
  declare readonly serialNumber: pulumi.Output<string>;
  /** Start of validity, ISO 8601. */
  declare readonly notBefore: pulumi.Output<string>;
  /** End of validity, ISO 8601. */
  declare readonly notAfter: pulumi.Output<string>;
  /** When the next `pulumi up` re-issues it: notAfter minus renewBeforeHours (computed, not stored). */
  declare readonly renewAt: pulumi.Output<string>;
  /** SHA-256 fingerprint, `AB:CD:...`. */
  declare readonly fingerprintSha256: pulumi.Output<string>;
  /** Subject DN in GnuTLS compat form. */
  declare readonly subjectDn: pulumi.Output<string>;
  /** The DN exactly as libvirtd's `tls_allowed_dn_list` takes it, e.g. `C=GB,ST=London,L=London,O=Libvirt Project,CN=client1`. */
  declare readonly distinguishedName: pulumi.Output<string>;
  /** When it was marked `revoked`, ISO 8601 (the revocation date its CRL entries carry); absent otherwise. */
  declare readonly revokedAt: pulumi.Output<string | undefined>;

  protected constructor(
    type: "ServerCertificate" | "ClientCertificate",
    name: string,
    args: LeafCertificateArgs,
    profile: pulumi.Input<string>,
    opts?: pulumi.CustomResourceOptions,
  ) {
    // The SDK's per-property stack traces are this registration's largest cost (see sdkStacks.ts).
    const restoreStacks = suspendStackTraces();
    try {
      super(certificateProvider, name, leafInputs(args, profile), leafOptions(opts), "virt-pki", type);
    } finally {
      restoreStacks();
    }
    this.renewAt = renewAtOutput(this.notAfter, args.renewBeforeHours, DEFAULT_LEAF_RENEW_BEFORE_HOURS);
  }
}
