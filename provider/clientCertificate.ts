/** The ClientCertificate resource. */
import * as pulumi from "@pulumi/pulumi";
import { LeafCertificateArgs, leafInputs, leafOptions } from "./leafCertificate";
import { certificateProvider } from "./providers";

/** Arguments of a ClientCertificate. */
export interface ClientCertificateArgs extends LeafCertificateArgs {
  /** Also allow TLS server use (the combined certificate). @default false */
  readonly alsoServer?: pulumi.Input<boolean>;
}

/** A TLS client certificate for virsh/virt-manager or a QEMU client (clientAuth). */
export class ClientCertificate extends pulumi.dynamic.Resource {
  /** The certificate (PEM): clientcert.pem / client-cert.pem. */
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
  /** The DN exactly as libvirtd's `tls_allowed_dn_list` takes it, e.g. `C=GB,ST=London,L=London,O=Libvirt Project,CN=client1`. */
  declare readonly distinguishedName: pulumi.Output<string>;

  constructor(name: string, args: ClientCertificateArgs, opts?: pulumi.CustomResourceOptions) {
    const profile = pulumi.output(args.alsoServer).apply((both) => (both ? "server+client" : "client"));
    super(
      certificateProvider,
      name,
      leafInputs(args, profile),
      leafOptions(opts),
      "virt-pki",
      "ClientCertificate",
    );
  }
}
