/** The CertificateAuthority resource. */
import * as pulumi from "@pulumi/pulumi";
import type { KeySpec } from "./pki/keys";
import type { Subject } from "./pki/names";
import { CaCredentials, CaLike, caInput } from "./caCredentials";
import { DEFAULT_CA_RENEW_BEFORE_HOURS } from "./handlers/certificateAuthority";
import { renewAtOutput } from "./leafCertificate";
import { certificateAuthorityProvider } from "./providers";
import { suspendStackTraces } from "./sdkStacks";

/** Arguments of a CertificateAuthority. Give `subject`, a certtool `template`, or `import`. */
export interface CertificateAuthorityArgs {
  /**
   * The CA's subject, e.g. `{ commonName: "Libvirt Project" }`.
   * @default none: give `subject`, `template` or `import` (check fails without one)
   */
  readonly subject?: pulumi.Input<Subject>;
  /**
   * A certtool template (`cn = ...`, `ca`, `cert_signing_key`) instead of `subject`.
   * @default none: the CA is described by `subject`
   */
  readonly template?: pulumi.Input<string>;
  /**
   * Key type. The resources default to RSA, as certtool and the libvirt and QEMU guides do: every libvirt,
   * QEMU and client TLS stack accepts it, without the `usage does not permit key encipherment` warning libvirt
   * logs for EC leaves. `VirtualizationPki` defaults to `"ecdsa-p256"` instead (see its `keySpec`).
   * @default "rsa-3072"
   */
  readonly keySpec?: pulumi.Input<KeySpec>;
  /** Lifetime in hours. @default 87600 (10 years) */
  readonly validityHours?: pulumi.Input<number>;
  /** Re-issue (replace) the CA this many hours before it expires; its certificates follow. @default 720 */
  readonly renewBeforeHours?: pulumi.Input<number>;
  /** basicConstraints path length: how many CA levels may follow. @default 0 */
  readonly pathLength?: pulumi.Input<number>;
  /** Make this an intermediate signed by another CA. @default self-signed */
  readonly parent?: CaLike | pulumi.Input<CaCredentials>;
  /**
   * Adopt an existing CA (e.g. made with certtool) after checking certificate and key match; then
   * `subject`, `template`, `keySpec`, `parent`, `validityHours` and `pathLength` must be left out.
   * @default none: a new CA is created
   */
  readonly import?: pulumi.Input<CaCredentials>;
  /** Policy: refuse a validity longer than this many hours. @default no limit */
  readonly maxValidityHours?: pulumi.Input<number>;
  /** With `parent`: end with the parent instead of failing when the CA would outlive it. @default false */
  readonly truncateToIssuer?: pulumi.Input<boolean>;
}

/**
 * A certificate authority for libvirt and QEMU TLS: a self-signed root, an intermediate under
 * `parent`, or an imported CA. Its key is a secret output. Renewal replaces it (create before delete),
 * and every certificate it issued reports a replacement in the same preview.
 */
export class CertificateAuthority extends pulumi.dynamic.Resource {
  /** The CA certificate (PEM): what `cacert.pem` / `ca-cert.pem` hold. */
  declare readonly certPem: pulumi.Output<string>;
  /** The CA private key (PKCS#8 PEM). Secret. */
  declare readonly keyPem: pulumi.Output<string>;
  /** This CA's certificate followed by its parents', PEM. */
  declare readonly chainPem: pulumi.Output<string>;
  /** Serial number, hex. */
  declare readonly serialNumber: pulumi.Output<string>;
  /** Start of validity, ISO 8601. */
  declare readonly notBefore: pulumi.Output<string>;
  /** End of validity, ISO 8601. */
  declare readonly notAfter: pulumi.Output<string>;
  /** When the next `pulumi up` will re-issue it: notAfter minus renewBeforeHours (computed, not stored). */
  declare readonly renewAt: pulumi.Output<string>;
  /** SHA-256 fingerprint, `AB:CD:...`. */
  declare readonly fingerprintSha256: pulumi.Output<string>;
  /** Subject DN in GnuTLS compat form. */
  declare readonly subjectDn: pulumi.Output<string>;

  constructor(name: string, args: CertificateAuthorityArgs, opts?: pulumi.CustomResourceOptions) {
    // The SDK's per-property stack traces are this registration's largest cost (see sdkStacks.ts).
    const restoreStacks = suspendStackTraces();
    try {
      super(
        certificateAuthorityProvider,
        name,
        {
          subject: args.subject,
          template: args.template,
          keySpec: args.keySpec,
          validityHours: args.validityHours,
          renewBeforeHours: args.renewBeforeHours,
          pathLength: args.pathLength,
          parent: args.parent ? caInput(args.parent) : undefined,
          import: args.import ? caInput(args.import) : undefined,
          maxValidityHours: args.maxValidityHours,
          truncateToIssuer: args.truncateToIssuer,
          certPem: undefined,
          keyPem: undefined,
          chainPem: undefined,
          serialNumber: undefined,
          notBefore: undefined,
          notAfter: undefined,
          fingerprintSha256: undefined,
          subjectDn: undefined,
        },
        pulumi.mergeOptions(opts, { additionalSecretOutputs: ["keyPem"] }),
        "virt-pki",
        "CertificateAuthority",
      );
    } finally {
      restoreStacks();
    }
    this.renewAt = renewAtOutput(this.notAfter, args.renewBeforeHours, DEFAULT_CA_RENEW_BEFORE_HOURS);
  }
}
