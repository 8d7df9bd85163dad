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
  /**
   * The CA certificate followed by its parents up to the root, when it is an intermediate.
   * @default the certificates in `certPem` (further certificates after the first are its chain)
   */
  readonly chainPem?: pulumi.Input<string>;
}

/** Anything with the three outputs of a CertificateAuthority. */
export interface CaLike {
  /** The CA certificate (PEM). */
  readonly certPem: pulumi.Output<string>;
  /** The CA private key (PEM). Secret. */
  readonly keyPem: pulumi.Output<string>;
  /** The CA certificate followed by its parents up to the root (PEM). */
  readonly chainPem: pulumi.Output<string>;
}

/** Turns either form into one secret input `{ certPem, keyPem, chainPem? }`. */
export function caInput(ca: CaLike | pulumi.Input<CaCredentials>): pulumi.Output<{
  /** The CA certificate (PEM). */
  certPem: string;
  /** The CA private key (PEM). */
  keyPem: string;
  /** The CA's chain (PEM). @default none: left out when the CA gives no (or an empty) `chainPem` */
  chainPem?: string;
}> {
  const c = ca as CaCredentials;
  return pulumi.secret(
    pulumi
      .all([c.certPem, c.keyPem, c.chainPem])
      .apply(([certPem, keyPem, chainPem]) =>
        chainPem ? { certPem, keyPem, chainPem } : { certPem, keyPem },
      ),
  );
}
