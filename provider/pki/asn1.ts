/**
 * Thin helpers over node-forge's ASN.1 module. forge builds and parses DER well, but its certificate
 * writer only knows RSA keys and its own (slow, pure-JS) signing, so certificates, CSRs and CRLs are
 * assembled here from ASN.1 nodes and signed with Node's native crypto.
 */
import * as forge from "node-forge";

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

/** A `-----BEGIN label-----` or `-----END label-----` line marker: where it starts and ends, and its label. */
interface PemMarker {
  readonly begin: boolean;
  readonly label: string;
  readonly start: number;
  readonly end: number;
}

const PEM_LABEL_CHAR = /[A-Z0-9 ]/;

/** Every BEGIN and END marker of a text, in order, found in one linear pass (no backtracking regex). */
function pemMarkers(text: string): PemMarker[] {
  const out: PemMarker[] = [];
  let at = text.indexOf("-----", 0);
  while (at >= 0) {
    const begin = text.startsWith("BEGIN ", at + 5);
    const labelStart = at + 5 + (begin ? 6 : 4);
    if (begin || text.startsWith("END ", at + 5)) {
      let i = labelStart;
      while (i < text.length && PEM_LABEL_CHAR.test(text[i])) i++;
      if (i > labelStart && text.startsWith("-----", i)) {
        out.push({ begin, label: text.slice(labelStart, i), start: at, end: i + 5 });
        at = text.indexOf("-----", i + 5);
        continue;
      }
      at = text.indexOf("-----", Math.max(i, at + 1));
      continue;
    }
    at = text.indexOf("-----", at + 1);
  }
  return out;
}

/** The label of every `-----BEGIN label-----` line in a text, ended or not, in order. */
export function pemLabels(text: string): string[] {
  return pemMarkers(text)
    .filter((m) => m.begin)
    .map((m) => m.label);
}

/**
 * Every PEM block in a text, in order, as label and DER: a BEGIN line up to the first END line with the
 * same label. Linear in the text: each label's END markers are walked with one forward pointer.
 */
export function pemBlocks(text: string): { label: string; der: Buffer }[] {
  const markers = pemMarkers(text);
  const ends = new Map<string, PemMarker[]>();
  for (const m of markers) {
    if (m.begin) continue;
    const list = ends.get(m.label);
    if (list) list.push(m);
    else ends.set(m.label, [m]);
  }
  const next = new Map<string, number>();
  const out: { label: string; der: Buffer }[] = [];
  let consumed = 0;
  for (const m of markers) {
    if (!m.begin || m.start < consumed) continue;
    const list = ends.get(m.label) ?? [];
    let k = next.get(m.label) ?? 0;
    while (k < list.length && list[k].start < m.end) k++;
    next.set(m.label, k);
    if (k === list.length) continue;
    const body = text.slice(m.end, list[k].start);
    out.push({ label: m.label, der: Buffer.from(body.replace(/\s+/g, ""), "base64") });
    consumed = list[k].end;
  }
  return out;
}

/** The DER of the single PEM block with one of the given labels; throws a plain message otherwise. */
export function pemToDer(text: string, labels: string[], what: string): Buffer {
  const blocks = pemBlocks(text).filter((b) => labels.includes(b.label));
  if (blocks.length === 0) throw new Error(`expected a PEM ${what} (-----BEGIN ${labels[0]}-----)`);
  return blocks[0].der;
}
