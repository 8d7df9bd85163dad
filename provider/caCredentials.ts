/** How resources take an issuing CA: a CertificateAuthority resource, or plain PEM from anywhere. */
import * as pulumi from "@pulumi/pulumi";

/**
 * A CA given as PEM, e.g. exported by another stack and read through a `StackReference`. `keyPem` is
 * treated as a secret whether or not it arrives as one.
 */
export interface CaCredentials {
  /** The CA certificate (PEM). */
  readonly certPem: pulumi.Input<string>;
  /** The CA private key (PEM). Secret. */
  readonly keyPem: pulumi.Input<string>;
  /** The CA certificate followed by its parents up to the root, when it is an intermediate. */
  readonly chainPem?: pulumi.Input<string>;
}

/** Anything with the three outputs of a CertificateAuthority. */
export interface CaLike {
  readonly certPem: pulumi.Output<string>;
  readonly keyPem: pulumi.Output<string>;
  readonly chainPem: pulumi.Output<string>;
}

/** Turns either form into one secret input `{ certPem, keyPem, chainPem? }`. */
export function caInput(
  ca: CaLike | pulumi.Input<CaCredentials>,
): pulumi.Output<{ certPem: string; keyPem: string; chainPem?: string }> {
  const c = ca as CaCredentials;
  return pulumi.secret(
    pulumi
      .all([c.certPem, c.keyPem, c.chainPem])
      .apply(([certPem, keyPem, chainPem]) =>
        chainPem ? { certPem, keyPem, chainPem } : { certPem, keyPem },
      ),
  );
}
