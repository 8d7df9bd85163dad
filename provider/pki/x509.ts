/**
 * Reading certificates at the DER level. node-forge's certificate reader rejects non-RSA keys, so the
 * TBSCertificate is walked here with forge's ASN.1 parser; the pieces are kept as nodes so an issuer's
 * Name can be copied byte-for-byte into the certificates it signs.
 */
import { createPublicKey, KeyObject } from "node:crypto";
import * as forge from "node-forge";
import * as der from "./asn1";
import { extensionsFromAsn1, RawExtension } from "./extensions";
import { PkiError } from "./errors";
import { checkTextSize, MAX_PEM_CHARS } from "./limits";

/** A certificate split into the parts this library reads. */
export interface ParsedCertificate {
  /** The whole certificate, DER. */
  readonly der: Buffer;
  /** X.509 version (3 for v3). */
  readonly version: number;
  /** Serial number, lower-case hex without leading zero octets. */
  readonly serialNumber: string;
  /** Signature algorithm OID (outer). */
  readonly signatureAlgorithm: string;
  /** Issuer Name node, as encoded. */
  readonly issuer: der.Asn1;
  /** Subject Name node, as encoded. */
  readonly subject: der.Asn1;
  /** Start of validity. */
  readonly notBefore: Date;
  /** End of validity. */
  readonly notAfter: Date;
  /** SubjectPublicKeyInfo, DER. */
  readonly spki: Buffer;
  /** The subject public key. */
  readonly publicKey: KeyObject;
  /** Extensions in encoded order. */
  readonly extensions: RawExtension[];
}

/** Certificate PEM labels accepted on input. */
const CERT_LABELS = ["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"];

/**
 * Checks a text given where certificates (or a CSR, a CRL) belong: at most `MAX_PEM_CHARS` long and
 * (or `maxChars`) holding no private key block, since such texts are copied into non-secret outputs and
 * state. The error never echoes the text.
 */
export function checkPublicPem(pem: unknown, property: string, maxChars = MAX_PEM_CHARS): void {
  checkTextSize(pem, property, maxChars, "PEM text");
  if (typeof pem !== "string") return;
  const key = der.pemLabels(pem).find((label) => label.endsWith("PRIVATE KEY"));
  if (key !== undefined) {
    throw new PkiError(
      property,
      `holds a private key (-----BEGIN ${key}-----); remove it: this text is copied into outputs and ` +
        "state that are not secret, and a key belongs only in its own secret field",
    );
  }
}

/** Parses the first certificate of a PEM text; errors name `property`. */
export function parseCertificatePem(pem: string, property = "certPem"): ParsedCertificate {
  checkPublicPem(pem, property);
  let bytes: Buffer;
  try {
    bytes = der.pemToDer(pem, CERT_LABELS, "certificate");
  } catch (e) {
    throw new PkiError(property, (e as Error).message);
  }
  return parseCertificateDer(bytes, property);
}

/** Every certificate in a PEM bundle, in order; the bundle may be at most `maxChars` long. */
export function parseCertificateBundle(
  pem: string,
  property = "certPem",
  maxChars = MAX_PEM_CHARS,
): ParsedCertificate[] {
  checkPublicPem(pem, property, maxChars);
  const blocks = der
    .pemBlocks(typeof pem === "string" ? pem : "")
    .filter((b) => CERT_LABELS.includes(b.label));
  if (blocks.length === 0) throw new PkiError(property, "expected one or more PEM certificates");
  return blocks.map((b) => parseCertificateDer(b.der, property));
}

/** Parses a DER certificate. */
export function parseCertificateDer(bytes: Buffer, property = "certPem"): ParsedCertificate {
  try {
    const cert = der.fromDer(bytes);
    const [tbs, sigAlg] = der.children(cert);
    const parts = der.children(tbs);
    let i = 0;
    let version = 1;
    if (parts[0].tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && parts[0].type === 0) {
      version = parseInt(der.intHex(der.children(parts[0])[0]), 16) + 1;
      i = 1;
    }
    const serialNumber = der.intHex(parts[i]);
    const issuer = parts[i + 2];
    const [nb, na] = der.children(parts[i + 3]);
    const subject = parts[i + 4];
    const spki = der.toDer(parts[i + 5]);
    const extWrapper = parts
      .slice(i + 6)
      .find((p) => p.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && p.type === 3);
    let publicKey: KeyObject | undefined;
    return {
      der: bytes,
      version,
      serialNumber,
      signatureAlgorithm: der.oidText(der.children(sigAlg)[0]),
      issuer,
      subject,
      notBefore: der.readTime(nb),
      notAfter: der.readTime(na),
      spki,
      // Made when first read: most parses (a just-issued certificate's facts, a diff) never use it.
      get publicKey(): KeyObject {
        try {
          return (publicKey ??= createPublicKey({ key: spki, format: "der", type: "spki" }));
        } catch {
          throw new PkiError(property, "the certificate's public key could not be parsed (malformed DER)");
        }
      },
      extensions: extWrapper ? extensionsFromAsn1(der.children(extWrapper)[0]) : [],
    };
  } catch (e) {
    if (e instanceof PkiError) throw e;
    throw new PkiError(property, "the certificate could not be parsed (malformed DER)");
  }
}

/** The extension with this OID, if present. */
export function findExtension(cert: ParsedCertificate, oid: string): RawExtension | undefined {
  return cert.extensions.find((e) => e.oid === oid);
}

/** PEM of a parsed certificate. */
export function certificatePem(cert: ParsedCertificate): string {
  return der.derToPem(cert.der, "CERTIFICATE");
}
