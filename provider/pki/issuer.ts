/** Loading an issuing CA from `{ certPem, keyPem }` and checking it may sign what is asked of it. */
import { KeyObject } from "node:crypto";
import * as der from "./asn1";
import { PkiError } from "./errors";
import { digestKey, Memo } from "./memo";
import { OID, readBasicConstraints, readKeyUsage, readSubjectKeyIdentifier } from "./extensions";
import { keyIdentifier, loadPrivateKey, spkiDer } from "./keys";
import { findExtension, parseCertificateBundle, ParsedCertificate } from "./x509";

/** A CA's credentials as the functions here take them (also what another stack exports). */
export interface IssuerCredentials {
  /** The CA certificate (PEM). Further certificates after the first are taken as its chain to the root. */
  readonly certPem: string;
  /** The CA private key (PEM, PKCS#8, PKCS#1 or SEC1). Secret. */
  readonly keyPem: string;
  /**
   * The CA certificate followed by its parents up to the root (what `createCertificateAuthority` returns).
   * @default the certificates in `certPem`
   */
  readonly chainPem?: string;
}

/** A loaded, checked issuer. */
export interface LoadedIssuer {
  /** The issuing certificate. */
  readonly cert: ParsedCertificate;
  /** Its private key. */
  readonly key: KeyObject;
  /** Its key identifier (from its subjectKeyIdentifier, else computed). */
  readonly keyId: Buffer;
  /** Its path length constraint, if any. @default none: unlimited */
  readonly pathLength?: number;
  /** The issuer certificate followed by its chain, PEM. */
  readonly chainPem: string;
  /** The earliest notAfter of the issuer and every certificate of its chain: nothing it signs may outlive it. */
  readonly chainNotAfter: Date;
}

/** Signature algorithms GnuTLS (libvirt, QEMU) rejects in a certificate chain as insecure: MD2, MD4, MD5, SHA-1. */
const WEAK_SIGNATURES: Readonly<Record<string, string>> = {
  "1.2.840.113549.1.1.2": "md2WithRSAEncryption",
  "1.2.840.113549.1.1.3": "md4WithRSAEncryption",
  "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
  "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
  "1.3.14.3.2.3": "md5WithRSA",
  "1.3.14.3.2.29": "sha1WithRSA",
  "1.3.14.3.2.27": "dsaWithSHA1",
  "1.2.840.10040.4.3": "dsa-with-sha1",
  "1.2.840.10045.4.1": "ecdsa-with-SHA1",
};

/**
 * Refuses a certificate of an issuer's chain signed with MD5 or SHA-1: GnuTLS fails such a chain ("the
 * certificate chain uses insecure algorithm"). A self-signed root is exempt: a trust anchor's own
 * signature is not checked by GnuTLS (certtool 3.7 verifies a chain under a SHA-1 self-signed root).
 */
function checkSignatureAlgorithm(cert: ParsedCertificate, property: string): void {
  const weak = WEAK_SIGNATURES[cert.signatureAlgorithm];
  if (weak === undefined) return;
  if (der.toDer(cert.issuer).equals(der.toDer(cert.subject))) return;
  throw new PkiError(
    property,
    `a CA certificate in it is signed with ${weak}, which GnuTLS (libvirt, QEMU) rejects as insecure; ` +
      "have it re-issued with SHA-256 or better",
  );
}

/** Whether a private key is the one whose public half is in this SubjectPublicKeyInfo. */
export function keyMatchesSpki(key: KeyObject, spki: Buffer): boolean {
  return spkiDer(key).equals(spki);
}

/**
 * Checked issuers by a digest of their PEM inputs. Parsing a PEM key and re-checking the certificate
 * cost more than signing, and one provider process issues many certificates from the same CA. The
 * key objects are held in memory only, as they would be during issuance anyway.
 */
const issuerCache = new Memo<LoadedIssuer>(16);

/** Loads and checks an issuer: a CA certificate (CA:TRUE, keyCertSign if keyUsage is present) and its matching key. */
export function loadIssuer(issuer: IssuerCredentials | undefined, property = "issuer"): LoadedIssuer {
  if (!issuer || typeof issuer !== "object") {
    throw new PkiError(property, "the issuing CA is required as { certPem, keyPem }");
  }
  if (typeof issuer.certPem !== "string" || typeof issuer.keyPem !== "string")
    return checkIssuer(issuer, property);
  const key = digestKey(issuer.certPem, issuer.keyPem, issuer.chainPem ?? "");
  return issuerCache.get(key, () => checkIssuer(issuer, property));
}

function checkIssuer(issuer: IssuerCredentials, property: string): LoadedIssuer {
  const certs = parseCertificateBundle(issuer.certPem, `${property}.certPem`);
  const cert = certs[0];
  const key = loadPrivateKey(issuer.keyPem, `${property}.keyPem`);
  const bc = findExtension(cert, OID.basicConstraints);
  const constraints = bc ? readBasicConstraints(bc.value) : { ca: false };
  if (!constraints.ca) {
    throw new PkiError(
      `${property}.certPem`,
      "this certificate is not a CA (basicConstraints CA:TRUE is missing)",
    );
  }
  const ku = findExtension(cert, OID.keyUsage);
  if (ku && !readKeyUsage(ku.value).includes("keyCertSign")) {
    throw new PkiError(`${property}.certPem`, "the CA certificate's keyUsage does not allow keyCertSign");
  }
  if (!keyMatchesSpki(key, cert.spki)) {
    throw new PkiError(`${property}.keyPem`, "the private key does not match the CA certificate");
  }
  let chain = certs;
  certs.forEach((c) => checkSignatureAlgorithm(c, `${property}.certPem`));
  if (issuer.chainPem !== undefined && issuer.chainPem !== "") {
    chain = parseCertificateBundle(issuer.chainPem, `${property}.chainPem`);
    if (!chain[0].der.equals(cert.der)) {
      throw new PkiError(`${property}.chainPem`, "the chain must start with the CA certificate itself");
    }
    chain.forEach((c) => checkSignatureAlgorithm(c, `${property}.chainPem`));
  }
  const chainNotAfter = new Date(Math.min(...chain.map((c) => c.notAfter.getTime())));
  const ski = findExtension(cert, OID.subjectKeyIdentifier);
  const keyId = ski ? Buffer.from(readSubjectKeyIdentifier(ski.value), "hex") : keyIdentifier(cert.spki);
  return {
    cert,
    key,
    keyId,
    pathLength: constraints.pathLength,
    chainPem: chain.map((c) => der.derToPem(c.der, "CERTIFICATE")).join(""),
    chainNotAfter,
  };
}
