/**
 * Thin helpers over node-forge's ASN.1 module. forge builds and parses DER well, but its certificate
 * writer only knows RSA keys and its own (slow, pure-JS) signing, so certificates, CSRs and CRLs are
 * assembled here from ASN.1 nodes and signed with Node's native crypto.
 */
import forge from "node-forge";

const { asn1 } = forge;
/** A forge ASN.1 node. */
export type Asn1 = forge.asn1.Asn1;

/** SEQUENCE of the given nodes. */
export function seq(items: Asn1[]): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
}

/** SET of the given nodes. */
export function set(items: Asn1[]): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, items);
}

/** OBJECT IDENTIFIER from dotted text. */
export function oid(dotted: string): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(dotted).getBytes());
}

/** INTEGER from a small non-negative number. */
export function smallInt(n: number): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(n).getBytes());
}

/** INTEGER from big-endian unsigned hex (a leading 00 is added when the top bit is set). */
export function hexInt(hex: string): Asn1 {
  let bytes = forge.util.hexToBytes(hex.length % 2 ? `0${hex}` : hex);
  while (bytes.length > 1 && bytes.charCodeAt(0) === 0 && bytes.charCodeAt(1) < 0x80) bytes = bytes.slice(1);
  if (bytes.charCodeAt(0) >= 0x80) bytes = `\x00${bytes}`;
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, bytes);
}

/** BOOLEAN. */
export function bool(value: boolean): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BOOLEAN, false, value ? "\xff" : "\x00");
}

/** OCTET STRING holding raw bytes (a forge binary string). */
export function octets(bytes: string): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, bytes);
}

/** BIT STRING with no unused bits holding raw bytes. */
export function bits(bytes: string): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\x00${bytes}`);
}

/** NULL. */
export function nul(): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, "");
}

/** Explicitly tagged [n] wrapper. */
export function explicit(tag: number, inner: Asn1): Asn1 {
  return asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, true, [inner]);
}

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050 on. */
export function time(date: Date): Asn1 {
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) {
    return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date));
  }
  return asn1.create(
    asn1.Class.UNIVERSAL,
    asn1.Type.GENERALIZEDTIME,
    false,
    asn1.dateToGeneralizedTime(date),
  );
}

/** Reads a Time node back to a Date. */
export function readTime(node: Asn1): Date {
  const text = node.value as string;
  return node.type === asn1.Type.UTCTIME ? asn1.utcTimeToDate(text) : asn1.generalizedTimeToDate(text);
}

/** DER bytes of a node as a Node Buffer. */
export function toDer(node: Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), "binary");
}

/** Parses DER (strictly: trailing bytes are an error). */
export function fromDer(der: Buffer): Asn1 {
  // The options object is supported by forge but typed as a boolean in @types/node-forge.
  const options = { strict: true, decodeBitStrings: false } as unknown as boolean;
  return asn1.fromDer(forge.util.createBuffer(der.toString("binary")), options);
}

/** Children of a constructed node (throws on a primitive one, which means malformed input). */
export function children(node: Asn1): Asn1[] {
  if (!Array.isArray(node.value)) throw new Error("malformed DER: expected a constructed value");
  return node.value as Asn1[];
}

/** Big-endian unsigned hex of an INTEGER node, without leading zero bytes, lower case. */
export function intHex(node: Asn1): string {
  let hex = forge.util.bytesToHex(node.value as string);
  while (hex.length > 2 && hex.startsWith("00")) hex = hex.slice(2);
  return hex;
}

/** Dotted text of an OID node. */
export function oidText(node: Asn1): string {
  return asn1.derToOid(node.value as string);
}

/** Wraps DER in PEM armour with the given label, 64-character lines. */
export function derToPem(der: Buffer, label: string): string {
  const b64 = der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Every PEM block in a text, in order, as label and DER. */
export function pemBlocks(text: string): { label: string; der: Buffer }[] {
  const out: { label: string; der: Buffer }[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out.push({ label: m[1], der: Buffer.from(m[2].replace(/\s+/g, ""), "base64") });
  }
  return out;
}

/** The DER of the single PEM block with one of the given labels; throws a plain message otherwise. */
export function pemToDer(text: string, labels: string[], what: string): Buffer {
  const blocks = pemBlocks(text).filter((b) => labels.includes(b.label));
  if (blocks.length === 0) throw new Error(`expected a PEM ${what} (-----BEGIN ${labels[0]}-----)`);
  return blocks[0].der;
}
