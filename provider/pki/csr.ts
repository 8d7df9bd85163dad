/**
 * Certificate signing requests (PKCS#10), so a key can be made on a host and never leave it. Built and
 * read at the ASN.1 level for the same reason as certificates (forge's CSR code is RSA-only).
 *
 * When a CSR is signed, only these fields of it are honoured: the public key (after its self-signature
 * is verified), the subject (used only when the caller gives no subject or template) and a requested
 * subjectAltName (used only when the caller gives no alternative names). Every other requested
 * extension (key usage, basic constraints, ...) is ignored: the issuing profile decides those.
 */
import { createPublicKey, KeyObject, verify as nodeVerify } from "node:crypto";
import * as forge from "node-forge";
import * as der from "./asn1";
import { AltNames, hasAltNames, normalizeAltNames } from "./altnames";
import { PkiError } from "./errors";
import { extensionsFromAsn1, extensionsToAsn1, OID, readSubjectAltName, subjectAltName } from "./extensions";
import { keySpecOf, loadPrivateKey, signStructure, spkiDer } from "./keys";
import { DnAttribute, nameFromAsn1, normalizeSubject, Subject, subjectToAsn1 } from "./names";
import { checkPublicPem } from "./x509";

/** Arguments of `createCsr`. */
export interface CreateCsrArgs {
  /** The private key the request is for (PEM). It signs the request and is not included in it. */
  readonly keyPem: string;
  /** Requested subject. */
  readonly subject: Subject;
  /** Requested DNS names. @default none (no extensionRequest when no names are requested at all) */
  readonly dnsNames?: readonly string[];
  /** Requested IP addresses. @default none (no extensionRequest when no names are requested at all) */
  readonly ipAddresses?: readonly string[];
}

/** Creates a PEM `CERTIFICATE REQUEST` signed by `keyPem`, requesting the given subject and alternative names. */
export function createCsr(args: CreateCsrArgs): string {
  const key = loadPrivateKey(args.keyPem, "keyPem");
  const subject = normalizeSubject(args.subject, "subject");
  const names = normalizeAltNames({
    dnsNames: args.dnsNames as string[],
    ipAddresses: args.ipAddresses as string[],
  });
  const attributes = hasAltNames(names)
    ? [der.seq([der.oid(OID.extensionRequest), der.set([extensionsToAsn1([subjectAltName(names)])])])]
    : [];
  const info = der.seq([
    der.smallInt(0),
    subjectToAsn1(subject),
    der.fromDer(spkiDer(key)),
    forge.asn1.create(forge.asn1.Class.CONTEXT_SPECIFIC, 0, true, attributes),
  ]);
  return der.derToPem(signStructure(info, key), "CERTIFICATE REQUEST");
}

/** A parsed and signature-checked CSR. */
export interface VerifiedCsr {
  /** Requested subject attributes, in encoded order. */
  readonly subjectAttributes: DnAttribute[];
  /** The requested subject Name node. */
  readonly subjectName: der.Asn1;
  /** The requester's public key. */
  readonly publicKey: KeyObject;
  /** Its SubjectPublicKeyInfo, DER. */
  readonly spki: Buffer;
  /** Requested alternative names (empty lists when none were requested). */
  readonly altNames: AltNames;
}

const CSR_HASHES: Record<string, "sha256" | "sha384" | "sha512" | null> = {
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.3.101.112": null,
};

/** Parses a PEM CSR and verifies its self-signature; throws a PkiError on `property` otherwise. */
export function parseAndVerifyCsr(pem: string, property = "csrPem"): VerifiedCsr {
  checkPublicPem(pem, property);
  let parts: der.Asn1[];
  let info: der.Asn1[];
  try {
    const node = der.fromDer(der.pemToDer(pem, ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"], "CSR"));
    parts = der.children(node);
    info = der.children(parts[0]);
  } catch {
    throw new PkiError(property, "expected a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)");
  }
  const algOid = der.oidText(der.children(parts[1])[0]);
  if (!(algOid in CSR_HASHES)) {
    throw new PkiError(
      property,
      `unsupported CSR signature algorithm ${algOid}; sign it with SHA-256 or better`,
    );
  }
  const spki = der.toDer(info[2]);
  const publicKey = createPublicKey({ key: spki, format: "der", type: "spki" });
  keySpecOf(publicKey, property);
  const signature = Buffer.from((parts[2].value as string).slice(1), "binary");
  let verified = false;
  try {
    verified = nodeVerify(CSR_HASHES[algOid], der.toDer(parts[0]), publicKey, signature);
  } catch {
    verified = false; // a malformed ECDSA signature throws instead of returning false
  }
  if (!verified) {
    throw new PkiError(
      property,
      "the CSR's signature does not verify: it was not signed by the key it carries",
    );
  }
  let altNames = normalizeAltNames({});
  const attrs = info[3] ? der.children(info[3]) : [];
  for (const attr of attrs) {
    const [type, values] = der.children(attr);
    if (der.oidText(type) !== OID.extensionRequest) continue;
    for (const ext of extensionsFromAsn1(der.children(values)[0])) {
      if (ext.oid === OID.subjectAltName)
        altNames = normalizeAltNames(readSubjectAltName(ext.value), `${property}.`);
    }
  }
  return { subjectAttributes: nameFromAsn1(info[1]), subjectName: info[1], publicKey, spki, altNames };
}
