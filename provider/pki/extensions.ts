/**
 * X.509 v3 extensions: encoding the ones this library writes and decoding the ones it inspects. One
 * table of OIDs, one encoder and one decoder per extension.
 */
import * as forge from "node-forge";
import * as der from "./asn1";
import { AltNames, altNamesFromAsn1, altNamesToAsn1 } from "./altnames";

/** Extension OIDs used here. */
export const OID = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  cRLNumber: "2.5.29.20",
  reasonCode: "2.5.29.21",
  extKeyUsage: "2.5.29.37",
  authorityKeyIdentifier: "2.5.29.35",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  extensionRequest: "1.2.840.113549.1.9.14",
} as const;

/** keyUsage bits, in their ASN.1 bit order. */
export const KEY_USAGES = [
  "digitalSignature",
  "nonRepudiation",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
  "keyCertSign",
  "cRLSign",
] as const;
/** One keyUsage bit by name. */
export type KeyUsage = (typeof KEY_USAGES)[number];

/** Extended key usages this library sets, by name. */
export type ExtendedKeyUsage = "serverAuth" | "clientAuth";

/** An extension ready to encode: OID, criticality and its value node. */
export interface Extension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: der.Asn1;
}

/** Encodes a list of extensions as the SEQUENCE that goes inside `[3]` (certificates) or `[0]` (CRLs). */
export function extensionsToAsn1(exts: readonly Extension[]): der.Asn1 {
  return der.seq(
    exts.map((e) =>
      der.seq([
        der.oid(e.oid),
        ...(e.critical ? [der.bool(true)] : []),
        der.octets(forge.asn1.toDer(e.value).getBytes()),
      ]),
    ),
  );
}

/** basicConstraints: CA:TRUE with an optional path length, or CA:FALSE (an empty SEQUENCE in DER). Critical. */
export function basicConstraints(ca: boolean, pathLength?: number): Extension {
  const items = ca ? [der.bool(true), ...(pathLength === undefined ? [] : [der.smallInt(pathLength)])] : [];
  return { oid: OID.basicConstraints, critical: true, value: der.seq(items) };
}

/** keyUsage as a DER BIT STRING with trailing zero bits trimmed. */
export function keyUsage(usages: readonly KeyUsage[], critical: boolean): Extension {
  let bitsValue = 0;
  for (const u of usages) bitsValue |= 0x80 >> KEY_USAGES.indexOf(u);
  let unused = 0;
  while (unused < 7 && bitsValue && !(bitsValue & (1 << unused))) unused++;
  const bytes = bitsValue ? String.fromCharCode(unused, bitsValue) : "\x00";
  const value = forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.BITSTRING, false, bytes);
  return { oid: OID.keyUsage, critical, value };
}

/** extendedKeyUsage (not critical, as certtool writes it). */
export function extendedKeyUsage(usages: readonly ExtendedKeyUsage[]): Extension {
  return { oid: OID.extKeyUsage, critical: false, value: der.seq(usages.map((u) => der.oid(OID[u]))) };
}

/** subjectAltName (not critical, since the subject is not empty). */
export function subjectAltName(names: AltNames): Extension {
  return { oid: OID.subjectAltName, critical: false, value: altNamesToAsn1(names) };
}

/** subjectKeyIdentifier. */
export function subjectKeyIdentifier(keyId: Buffer): Extension {
  return { oid: OID.subjectKeyIdentifier, critical: false, value: der.octets(keyId.toString("binary")) };
}

/** authorityKeyIdentifier holding the issuer's key identifier ([0] keyIdentifier). */
export function authorityKeyIdentifier(issuerKeyId: Buffer): Extension {
  const keyIdNode = forge.asn1.create(
    forge.asn1.Class.CONTEXT_SPECIFIC,
    0,
    false,
    issuerKeyId.toString("binary"),
  );
  return { oid: OID.authorityKeyIdentifier, critical: false, value: der.seq([keyIdNode]) };
}

/** An extension as read from DER: OID, criticality and the still-encoded value. */
export interface RawExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: der.Asn1;
}

/** Reads an Extensions SEQUENCE. */
export function extensionsFromAsn1(node: der.Asn1): RawExtension[] {
  return der.children(node).map((ext) => {
    const parts = der.children(ext);
    const critical = parts.length === 3 && (parts[1].value as string) !== "\x00";
    const valueBytes = parts[parts.length - 1].value as string;
    return {
      oid: der.oidText(parts[0]),
      critical,
      value: der.fromDer(Buffer.from(valueBytes, "binary")),
    };
  });
}

/** Decoded basicConstraints. */
export function readBasicConstraints(value: der.Asn1): { ca: boolean; pathLength?: number } {
  let ca = false;
  let pathLength: number | undefined;
  for (const item of der.children(value)) {
    if (item.type === forge.asn1.Type.BOOLEAN) ca = (item.value as string) !== "\x00";
    else if (item.type === forge.asn1.Type.INTEGER) pathLength = parseInt(der.intHex(item), 16);
  }
  return { ca, pathLength };
}

/** Decoded keyUsage bit names. */
export function readKeyUsage(value: der.Asn1): KeyUsage[] {
  const bytes = value.value as string;
  const first = bytes.length > 1 ? bytes.charCodeAt(1) : 0;
  const second = bytes.length > 2 ? bytes.charCodeAt(2) : 0;
  return KEY_USAGES.filter((_, i) => (i < 8 ? first & (0x80 >> i) : second & (0x80 >> (i - 8))));
}

/** Decoded extendedKeyUsage: names where known, dotted OIDs otherwise. */
export function readExtendedKeyUsage(value: der.Asn1): string[] {
  return der.children(value).map((n) => {
    const o = der.oidText(n);
    return o === OID.serverAuth ? "serverAuth" : o === OID.clientAuth ? "clientAuth" : o;
  });
}

/** Decoded subjectAltName. */
export function readSubjectAltName(value: der.Asn1): AltNames {
  return altNamesFromAsn1(value);
}

/** Decoded subjectKeyIdentifier as hex. */
export function readSubjectKeyIdentifier(value: der.Asn1): string {
  return Buffer.from(value.value as string, "binary").toString("hex");
}

/** Decoded authorityKeyIdentifier's keyIdentifier as hex, if present. */
export function readAuthorityKeyIdentifier(value: der.Asn1): string | undefined {
  const keyId = der
    .children(value)
    .find((n) => n.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && n.type === 0);
  return keyId ? Buffer.from(keyId.value as string, "binary").toString("hex") : undefined;
}
