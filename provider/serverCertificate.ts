/** The ServerCertificate resource. */
import * as pulumi from "@pulumi/pulumi";
import { LeafCertificateArgs, leafInputs, leafOptions } from "./leafCertificate";
import { certificateProvider } from "./providers";

/** Arguments of a ServerCertificate. */
export interface ServerCertificateArgs extends LeafCertificateArgs {
  /** Also allow TLS client use: QEMU's combined certificate for migration and NBD. @default false */
  readonly alsoClient?: pulumi.Input<boolean>;
}

/**
 * A TLS server certificate for libvirtd or a QEMU service (serverAuth; CN also as a DNS SAN). Replaced
 * (create before delete) when its content, its CA, or its renewal window says so.
 */
export class ServerCertificate extends pulumi.dynamic.Resource {
  /** The certificate (PEM): servercert.pem / server-cert.pem. */
  declare readonly certPem: pulumi.Output<string>;
  /** The private key (PKCS#8 PEM); absent when a CSR was signed. Secret. */
  declare readonly keyPem: pulumi.Output<string | undefined>;
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
  /** When the next `pulumi up` re-issues it. */
  declare readonly renewAt: pulumi.Output<string>;
  /** SHA-256 fingerprint. */
  declare readonly fingerprintSha256: pulumi.Output<string>;
  /** Subject DN in GnuTLS compat form. */
  declare readonly subjectDn: pulumi.Output<string>;

  constructor(name: string, args: ServerCertificateArgs, opts?: pulumi.CustomResourceOptions) {
    const profile = pulumi.output(args.alsoClient).apply((both) => (both ? "server+client" : "server"));
    super(
      certificateProvider,
      name,
      leafInputs(args, profile),
      leafOptions(opts),
      "virt-pki",
      "ServerCertificate",
    );
  }
}
