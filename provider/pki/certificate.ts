/**
 * Assembling and signing certificates. node-forge supplies the ASN.1 encoder; the TBSCertificate is
 * assembled here because forge's own writer accepts only RSA public keys and signs in pure JS
 * (about 20x slower than Node's native signing for RSA).
 */
import { createHash, KeyObject } from "node:crypto";
import * as der from "./asn1";
import { Extension, extensionsToAsn1 } from "./extensions";
import { algorithmIdentifier, keySpecOf, signatureAlgorithmFor, signStructure } from "./keys";
import { Validity } from "./validity";

/** Everything that goes into a certificate besides the signature. */
export interface CertificateContent {
  /** Serial, hex. */
  readonly serialNumber: string;
  /** Issuer Name node (copied from the issuer's subject as encoded, or the subject for self-signed). */
  readonly issuer: der.Asn1;
  /** Subject Name node. */
  readonly subject: der.Asn1;
  /** Validity window. */
  readonly validity: Validity;
  /** Subject public key, DER SubjectPublicKeyInfo. */
  readonly spki: Buffer;
  /** v3 extensions in the order they are written. */
  readonly extensions: readonly Extension[];
}

/** Builds the TBSCertificate, signs it with `signer` and returns the certificate DER. */
export function signCertificate(content: CertificateContent, signer: KeyObject): Buffer {
  const alg = signatureAlgorithmFor(keySpecOf(signer, "issuer.keyPem"));
  const tbs = der.seq([
    der.explicit(0, der.smallInt(2)),
    der.hexInt(content.serialNumber),
    algorithmIdentifier(alg),
    content.issuer,
    der.seq([der.time(content.validity.notBefore), der.time(content.validity.notAfter)]),
    content.subject,
    der.fromDer(content.spki),
    der.explicit(3, extensionsToAsn1(content.extensions)),
  ]);
  return signStructure(tbs, signer);
}

/** SHA-256 fingerprint of DER, as colon-separated upper-case hex (the form `openssl x509 -fingerprint` prints). */
export function fingerprintSha256(derBytes: Buffer): string {
  return createHash("sha256")
    .update(derBytes)
    .digest("hex")
    .toUpperCase()
    .replace(/(..)(?!$)/g, "$1:");
}
