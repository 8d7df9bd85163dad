/** The ServerCertificate resource. */
import * as pulumi from "@pulumi/pulumi";
import { LeafCertificate, LeafCertificateArgs } from "./leafCertificate";

/** Arguments of a ServerCertificate. */
export interface ServerCertificateArgs extends LeafCertificateArgs {
  /** Also allow TLS client use: QEMU's combined certificate for migration and NBD. @default false */
  readonly alsoClient?: pulumi.Input<boolean>;
}

/**
 * A TLS server certificate for libvirtd or a QEMU service (serverAuth; CN also as a DNS SAN). Replaced
 * (create before delete) when its content, its CA, or its renewal window says so.
 */
export class ServerCertificate extends LeafCertificate {
  constructor(name: string, args: ServerCertificateArgs, opts?: pulumi.CustomResourceOptions) {
    const profile = pulumi.output(args.alsoClient).apply((both) => (both ? "server+client" : "server"));
    super("ServerCertificate", name, args, profile, opts);
  }
}
