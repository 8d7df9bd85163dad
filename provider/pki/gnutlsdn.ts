/**
 * How GnuTLS 3.7 turns one attribute of a DN into text (lib/x509/common.c `_gnutls_x509_dn_to_string`), the
 * text libvirt matches `tls_allowed_dn_list` against and `virt-pki-query-dn` prints: the names it knows, the
 * string type each must have, and `#hex` for the rest. Pure; used by names.ts for certificates read back.
 */
import * as forge from "node-forge";
import * as der from "./asn1";

const T = forge.asn1.Type;
/** DirectoryString: any of teletex, printable, universal, UTF-8 or BMP string (PKIX1.DirectoryString). */
const DIRECTORY = "directory";
/** Universal tags forge has no name for. */
const NUMERIC_STRING = 18;
const TELETEX_STRING = 20;
const UNIVERSAL_STRING = 28;

/**
 * GnuTLS's table of DN attributes (`_oid2str` in lib/x509/common.c): OID → its name and the string type it
 * decodes. Entries without a name there (challengePassword, friendlyName, localKeyId) are left out and so
 * printed like unknown OIDs.
 */
const KNOWN: ReadonlyMap<string, { readonly name: string; readonly kind: typeof DIRECTORY | number }> =
  new Map([
    ["1.3.6.1.5.5.7.9.2", { name: "placeOfBirth", kind: DIRECTORY }],
    ["1.3.6.1.5.5.7.9.3", { name: "gender", kind: T.PRINTABLESTRING }],
    ["1.3.6.1.5.5.7.9.4", { name: "countryOfCitizenship", kind: T.PRINTABLESTRING }],
    ["1.3.6.1.5.5.7.9.5", { name: "countryOfResidence", kind: T.PRINTABLESTRING }],
    ["2.5.4.6", { name: "C", kind: T.PRINTABLESTRING }],
    ["2.5.4.9", { name: "street", kind: DIRECTORY }],
    ["2.5.4.12", { name: "title", kind: DIRECTORY }],
    ["2.5.4.10", { name: "O", kind: DIRECTORY }],
    ["2.5.4.11", { name: "OU", kind: DIRECTORY }],
    ["2.5.4.3", { name: "CN", kind: DIRECTORY }],
    ["2.5.4.7", { name: "L", kind: DIRECTORY }],
    ["2.5.4.8", { name: "ST", kind: DIRECTORY }],
    ["2.5.4.13", { name: "description", kind: DIRECTORY }],
    ["2.5.4.5", { name: "serialNumber", kind: T.PRINTABLESTRING }],
    ["2.5.4.20", { name: "telephoneNumber", kind: T.PRINTABLESTRING }],
    ["2.5.4.4", { name: "surName", kind: DIRECTORY }],
    ["2.5.4.43", { name: "initials", kind: DIRECTORY }],
    ["2.5.4.44", { name: "generationQualifier", kind: DIRECTORY }],
    ["2.5.4.42", { name: "givenName", kind: DIRECTORY }],
    ["2.5.4.65", { name: "pseudonym", kind: DIRECTORY }],
    ["2.5.4.46", { name: "dnQualifier", kind: T.PRINTABLESTRING }],
    ["2.5.4.17", { name: "postalCode", kind: DIRECTORY }],
    ["2.5.4.41", { name: "name", kind: DIRECTORY }],
    ["2.5.4.15", { name: "businessCategory", kind: DIRECTORY }],
    ["0.9.2342.19200300.100.1.25", { name: "DC", kind: T.IA5STRING }],
    ["0.9.2342.19200300.100.1.1", { name: "UID", kind: DIRECTORY }],
    ["1.2.840.113556.1.4.656", { name: "userPrincipalName", kind: DIRECTORY }],
    ["1.3.6.1.4.1.311.60.2.1.1", { name: "jurisdictionOfIncorporationLocalityName", kind: DIRECTORY }],
    ["1.3.6.1.4.1.311.60.2.1.2", { name: "jurisdictionOfIncorporationStateOrProvinceName", kind: DIRECTORY }],
    ["1.3.6.1.4.1.311.60.2.1.3", { name: "jurisdictionOfIncorporationCountryName", kind: T.PRINTABLESTRING }],
    ["1.2.840.113549.1.9.1", { name: "EMAIL", kind: T.IA5STRING }],
    ["1.3.6.1.5.5.7.8.5", { name: "XmppAddr", kind: T.UTF8 }],
    ["1.2.643.100.1", { name: "OGRN", kind: NUMERIC_STRING }],
    ["1.2.643.100.3", { name: "SNILS", kind: NUMERIC_STRING }],
    ["1.2.643.100.5", { name: "OGRNIP", kind: NUMERIC_STRING }],
    ["1.2.643.3.131.1.1", { name: "INN", kind: NUMERIC_STRING }],
  ]);

/** An attribute's text as GnuTLS prints it: `escape` says whether its DN escaping still applies. */
export interface GnutlsValueText {
  /** The attribute type as printed: GnuTLS's name, else the dotted OID. */
  readonly type: string;
  /** The value: decoded UTF-8 text (to be escaped), or `#` and hex. */
  readonly text: string;
  /** Whether GnuTLS escapes `text` (`str_escape`): true for decoded strings, false for its `#hex` form. */
  readonly escape: boolean;
}

function hex(binary: string): string {
  return Buffer.from(binary, "binary").toString("hex");
}

/** `#` and the hex of the whole DER value: GnuTLS's form for unknown OIDs and values it cannot decode. */
function derHex(node: der.Asn1): string {
  return `#${forge.asn1.toDer(node).toHex()}`;
}

/**
 * The text GnuTLS prints for one attribute (`_gnutls_x509_dn_to_string`). Unknown OID, or a value not of the
 * type GnuTLS expects, or one holding a NUL: `#` and the DER's hex, unescaped. A DirectoryString in UTF-8 or
 * printable form is copied; BMP is converted to UTF-8; teletex is copied when ASCII; universal and non-ASCII
 * teletex become `#` and the hex of the string (and that `#` is then escaped, as GnuTLS does).
 */
export function gnutlsValueText(oid: string, node: der.Asn1): GnutlsValueText {
  const known = KNOWN.get(oid);
  if (known === undefined || node.constructed || typeof node.value !== "string") {
    return { type: known?.name ?? oid, text: derHex(node), escape: false };
  }
  const raw = node.value;
  const tag: number = node.type;
  let text: string | undefined;
  if (known.kind === DIRECTORY) {
    if (tag === T.UTF8) text = decodeUtf8(raw);
    else if (tag === T.PRINTABLESTRING) text = raw;
    // forge's DER reader already decodes a BMPString (UTF-16BE) into a string.
    else if (tag === T.BMPSTRING) text = raw;
    else if (tag === TELETEX_STRING)
      text = [...raw].every((c) => c.charCodeAt(0) < 0x80) ? raw : `#${hex(raw)}`;
    else if (tag === UNIVERSAL_STRING) text = `#${hex(raw)}`;
  } else if (tag === known.kind) {
    text = known.kind === T.UTF8 ? decodeUtf8(raw) : raw;
  }
  if (text === undefined || text.includes("\u0000"))
    return { type: known.name, text: derHex(node), escape: false };
  return { type: known.name, text, escape: true };
}

function decodeUtf8(raw: string): string | undefined {
  try {
    return forge.util.decodeUtf8(raw);
  } catch {
    return undefined;
  }
}
