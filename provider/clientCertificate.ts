/** The ClientCertificate resource. */
import * as pulumi from "@pulumi/pulumi";
import { LeafCertificate, LeafCertificateArgs } from "./leafCertificate";

/** Arguments of a ClientCertificate. */
export interface ClientCertificateArgs extends LeafCertificateArgs {
  /** Also allow TLS server use (the combined certificate). @default false */
  readonly alsoServer?: pulumi.Input<boolean>;
}

/** A TLS client certificate for virsh/virt-manager or a QEMU client (clientAuth). Its `distinguishedName` goes in `tls_allowed_dn_list`. */
export class ClientCertificate extends LeafCertificate {
  constructor(name: string, args: ClientCertificateArgs, opts?: pulumi.CustomResourceOptions) {
    const profile = pulumi.output(args.alsoServer).apply((both) => (both ? "server+client" : "client"));
    super("ClientCertificate", name, args, profile, opts);
  }
}
