/** The CertificateRevocationList resource. */
import * as pulumi from "@pulumi/pulumi";
import type { RevocationReason } from "./pki/crl";
import { CaCredentials, CaLike, caInput } from "./caCredentials";
import { revocationListProvider } from "./providers";

/** One revoked certificate: by serial or by its PEM, with an optional RFC 5280 reason. */
export interface RevokedCertificateArgs {
  /** Serial number (hex). */
  readonly serialNumber?: pulumi.Input<string>;
  /** Or the certificate itself (e.g. a ClientCertificate's certPem). */
  readonly certPem?: pulumi.Input<string>;
  /** Why. @default unspecified */
  readonly reason?: pulumi.Input<RevocationReason>;
}

/** Arguments of a CertificateRevocationList. */
export interface CertificateRevocationListArgs {
  /** The CA that signs the CRL. */
  readonly ca: CaLike | pulumi.Input<CaCredentials>;
  /** The revoked certificates. @default none: an empty CRL, which libvirt and QEMU load happily */
  readonly revoked?: pulumi.Input<pulumi.Input<RevokedCertificateArgs>[]>;
  /** Hours from signing to nextUpdate. @default 168 */
  readonly nextUpdateHours?: pulumi.Input<number>;
  /** Re-sign (replace, shown as `nextUpdate`) this many hours before nextUpdate. @default a third of nextUpdateHours */
  readonly renewBeforeHours?: pulumi.Input<number>;
}

/** A v2 CRL signed by the CA (cacrl.pem / ca-crl.pem). Re-signed with a higher CRL number when revocations change. */
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

  constructor(name: string, args: CertificateRevocationListArgs, opts?: pulumi.CustomResourceOptions) {
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
      },
      opts,
      "virt-pki",
      "CertificateRevocationList",
    );
  }
}
