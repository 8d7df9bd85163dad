/** The CertificateRevocationList resource. */
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_CRL_NEXT_UPDATE_HOURS, defaultCrlRenewBeforeHours, type RevocationReason } from "./pki/crl";
import { renewAtOutput } from "./leafCertificate";
import { CaCredentials, CaLike, caInput } from "./caCredentials";
import { revocationListProvider } from "./providers";
import { suspendStackTraces } from "./sdkStacks";

/** One revoked certificate: by serial or by its PEM, with an optional RFC 5280 reason. */
export interface RevokedCertificateArgs {
  /** Serial number (hex). @default none: give exactly one of `serialNumber` and `certPem` */
  readonly serialNumber?: pulumi.Input<string>;
  /**
   * Or the certificate itself (e.g. a ClientCertificate's certPem).
   * @default none: give exactly one of `serialNumber` and `certPem`
   */
  readonly certPem?: pulumi.Input<string>;
  /** Why. @default unspecified */
  readonly reason?: pulumi.Input<RevocationReason>;
  /**
   * When it was revoked, ISO 8601 (e.g. a ClientCertificate's `revokedAt`), so that every CRL, also one of
   * a CA added later, lists the same original date. Used when this CRL first lists the serial; after that
   * the listed date never moves. @default the time this CRL first lists the serial
   */
  readonly revocationDate?: pulumi.Input<string>;
  /**
   * The certificate's notAfter, ISO 8601: the entry stays in the CRL until then, even once it is no longer
   * in `revoked`. @default read from `certPem`; for a bare serial unknown, and the entry is kept for good
   */
  readonly notAfter?: pulumi.Input<string>;
}

/** One entry of the CRL's ledger (the `revokedCertificates` output). */
export interface RevokedCertificateEntry {
  /** Serial number, hex. */
  readonly serialNumber: string;
  /** The original revocation date, ISO 8601. */
  readonly revocationDate: string;
  /** The RFC 5280 reason, if any. @default none: the entry has no reason code (unspecified) */
  readonly reason?: RevocationReason;
  /**
   * The certificate's notAfter, ISO 8601, if known: the entry is dropped once it has passed.
   * @default none: unknown, and the entry is kept for good
   */
  readonly notAfter?: string;
}

/** Arguments of a CertificateRevocationList. */
export interface CertificateRevocationListArgs {
  /** The CA that signs the CRL. */
  readonly ca: CaLike | pulumi.Input<CaCredentials>;
  /** The revoked certificates. @default none: an empty CRL, which libvirt and QEMU load happily */
  readonly revoked?: pulumi.Input<pulumi.Input<RevokedCertificateArgs>[]>;
  /** Hours from signing to nextUpdate (`pulumi up` re-signs it before then). @default 720 (30 days, as the fleet) */
  readonly nextUpdateHours?: pulumi.Input<number>;
  /** Re-sign (in place) this many hours before nextUpdate. @default a third of nextUpdateHours */
  readonly renewBeforeHours?: pulumi.Input<number>;
}

/**
 * A v2 CRL signed by the CA (cacrl.pem / ca-crl.pem). Re-signed in place with a higher CRL number when
 * revocations change or nextUpdate nears. It keeps a ledger of every serial it has listed: an entry keeps
 * its original revocation date across re-signs, and stays listed after it leaves `revoked` until the
 * certificate's notAfter has passed (a `certificateHold` entry is lifted when it leaves `revoked`).
 */
export class CertificateRevocationList extends pulumi.dynamic.Resource {
  /** The CRL (PEM). */
  declare readonly crlPem: pulumi.Output<string>;
  /** Its CRL number. */
  declare readonly crlNumber: pulumi.Output<number>;
  /** When it was signed, ISO 8601. */
  declare readonly thisUpdate: pulumi.Output<string>;
  /** When it must be replaced by, ISO 8601. */
  declare readonly nextUpdate: pulumi.Output<string>;
  /** The revoked serials, hex, sorted. */
  declare readonly revokedSerials: pulumi.Output<string[]>;
  /** Every listed entry: serial, original revocation date, reason, notAfter. */
  declare readonly revokedCertificates: pulumi.Output<RevokedCertificateEntry[]>;
  /**
   * When the next `pulumi up` re-signs it: `nextUpdate` minus `renewBeforeHours` (computed, not stored). Run an
   * `up` by then: from `nextUpdate` on, the hosts hold a CRL that is out of date.
   */
  readonly renewAt: pulumi.Output<string>;

  constructor(name: string, args: CertificateRevocationListArgs, opts?: pulumi.CustomResourceOptions) {
    // The SDK's per-property stack traces are this registration's largest cost (see sdkStacks.ts).
    const restoreStacks = suspendStackTraces();
    try {
      super(
        revocationListProvider,
        name,
        {
          ca: caInput(args.ca),
          revoked: args.revoked,
          nextUpdateHours: args.nextUpdateHours,
          renewBeforeHours: args.renewBeforeHours,
          crlPem: undefined,
          crlNumber: undefined,
          thisUpdate: undefined,
          nextUpdate: undefined,
          revokedSerials: undefined,
          revokedCertificates: undefined,
        },
        opts,
        "virt-pki",
        "CertificateRevocationList",
      );
    } finally {
      restoreStacks();
    }
    // The window as check applies it (handlers/revocationList.ts normalize): a third of the lifetime unless given.
    const window = pulumi
      .all([args.renewBeforeHours, args.nextUpdateHours])
      .apply(
        ([before, hours]) => before ?? defaultCrlRenewBeforeHours(hours ?? DEFAULT_CRL_NEXT_UPDATE_HOURS),
      );
    this.renewAt = renewAtOutput(this.nextUpdate, window, 0);
  }
}
