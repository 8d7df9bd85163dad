/**
 * Subject distinguished names: validation, DER encoding in a fixed RDN order, and the two text forms
 * operators meet: GnuTLS "compat" (encoded order, what libvirt's `tls_allowed_dn_list` matches) and
 * RFC 4514 (reversed, what `certtool -i` and `openssl -nameopt RFC2253` print).
 */
import * as forge from "node-forge";
import * as der from "./asn1";
import { PkiError } from "./errors";
import { gnutlsValueText } from "./gnutlsdn";
import { quoteInput } from "./quote";

/** A certificate subject. Every field is optional, but a certificate needs at least one. */
export interface Subject {
  /** Two-letter ISO 3166 country code (`C`), e.g. `GB`. @default none: no `C` in the DN */
  readonly country?: string;
  /** State or province (`ST`). @default none: no `ST` in the DN */
  readonly state?: string;
  /** Locality or city (`L`). @default none: no `L` in the DN */
  readonly locality?: string;
  /** Organization (`O`). @default none: no `O` in the DN */
  readonly organization?: string;
  /** Organizational unit (`OU`). @default none: no `OU` in the DN */
  readonly organizationalUnit?: string;
  /**
   * Common name (`CN`): the host FQDN for servers, the client's name for clients.
   * @default none: no `CN` in the DN (a leaf certificate needs one)
   */
  readonly commonName?: string;
  /**
   * PKCS#9 e-mail address in the subject (`emailAddress`); prefer an e-mail SAN.
   * @default none: not in the DN
   */
  readonly emailAddress?: string;
  /**
   * Domain components (`DC`), most significant first, e.g. `["org", "libvirt"]`.
   * @default none: no `DC` in the DN
   */
  readonly domainComponents?: readonly string[];
}

/** One attribute of a DN as read from a certificate: its short name (or OID) and value. */
export interface DnAttribute {
  /** Short name such as `CN`, or the dotted OID when it has none here. */
  readonly type: string;
  /** The attribute's string value. */
  readonly value: string;
  /**
   * The value exactly as GnuTLS prints it, already escaped, when read from a certificate (`#hex` for types
   * it does not decode). @default the escaped `value`
   */
  readonly text?: string;
  /** Whether this attribute shares its RDN with the one before it (GnuTLS joins them with `+`). @default false */
  readonly sameRdn?: boolean;
}

interface AttributeDef {
  readonly field: keyof Subject;
  readonly short: string;
  readonly oid: string;
  readonly tag: number;
  readonly maxLength: number;
}

const T = forge.asn1.Type;
/** The RDN encoding order: DC first, then C, ST, L, O, OU, CN (as certtool writes them), e-mail last. */
const ATTRIBUTES: readonly AttributeDef[] = [
  {
    field: "domainComponents",
    short: "DC",
    oid: "0.9.2342.19200300.100.1.25",
    tag: T.IA5STRING,
    maxLength: 63,
  },
  { field: "country", short: "C", oid: "2.5.4.6", tag: T.PRINTABLESTRING, maxLength: 2 },
  { field: "state", short: "ST", oid: "2.5.4.8", tag: T.UTF8, maxLength: 128 },
  { field: "locality", short: "L", oid: "2.5.4.7", tag: T.UTF8, maxLength: 128 },
  { field: "organization", short: "O", oid: "2.5.4.10", tag: T.UTF8, maxLength: 64 },
  { field: "organizationalUnit", short: "OU", oid: "2.5.4.11", tag: T.UTF8, maxLength: 64 },
  { field: "commonName", short: "CN", oid: "2.5.4.3", tag: T.UTF8, maxLength: 64 },
  { field: "emailAddress", short: "EMAIL", oid: "1.2.840.113549.1.9.1", tag: T.IA5STRING, maxLength: 128 },
];

function valuesOf(subject: Subject, def: AttributeDef): string[] {
  const v = subject[def.field];
  if (v === undefined) return [];
  return Array.isArray(v) ? [...(v as string[])] : [v as string];
}

/**
 * Validates a subject and returns it with values trimmed and empty fields dropped. `property` prefixes
 * error paths (`subject.commonName`).
 */
export function normalizeSubject(subject: Subject | undefined, property = "subject"): Subject {
  if (subject === undefined || subject === null || typeof subject !== "object") {
    throw new PkiError(property, "a subject is required (at least a commonName)");
  }
  const known = new Set<string>(ATTRIBUTES.map((a) => a.field));
  for (const key of Object.keys(subject)) {
    if (!known.has(key)) {
      throw new PkiError(`${property}.${key}`, `unknown subject field; use one of ${[...known].join(", ")}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const def of ATTRIBUTES) {
    const raw = subject[def.field];
    if (raw === undefined || raw === null) continue;
    const path = `${property}.${def.field}`;
    const list = Array.isArray(raw) ? (raw as unknown[]) : [raw];
    const values = list.map((v, i) => {
      if (typeof v !== "string") throw new PkiError(path, `must be a string, got ${typeof v}`);
      const t = v.trim();
      if (t === "") throw new PkiError(path, "must not be empty; leave it out instead");
      const control = controlCharacter(t);
      if (control !== undefined) {
        throw new PkiError(
          Array.isArray(raw) ? `${path}[${i}]` : path,
          `must not contain control characters (found U+${codePoint(control)}): GnuTLS prints them as is ` +
            "and libvirt's config files cannot hold a line break inside a string",
        );
      }
      if (def.field === "country" && !/^[A-Za-z]{2}$/.test(t)) {
        throw new PkiError(path, `must be a two-letter ISO 3166 code such as "GB", got ${quoteInput(t)}`);
      }
      if (t.length > def.maxLength) throw new PkiError(path, `at most ${def.maxLength} characters`);
      if (def.tag === T.IA5STRING && !/^[\x20-\x7e]+$/.test(t)) {
        throw new PkiError(Array.isArray(raw) ? `${path}[${i}]` : path, "must be printable ASCII");
      }
      return t;
    });
    if (def.field === "emailAddress" && !/^[^@\s]+@[^@\s]+$/.test(values[0])) {
      throw new PkiError(path, `must be an e-mail address, got ${quoteInput(values[0])}`);
    }
    out[def.field] = Array.isArray(raw)
      ? values
      : def.field === "country"
        ? values[0].toUpperCase()
        : values[0];
  }
  if (Object.keys(out).length === 0)
    throw new PkiError(property, "a subject needs at least one field (commonName)");
  return out as Subject;
}

/** The first C0 or C1 control character or DEL in `value`, if any. */
function controlCharacter(value: string): string | undefined {
  for (const c of value) {
    const code = c.charCodeAt(0);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return c;
  }
  return undefined;
}

function codePoint(c: string): string {
  return c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
}

/**
 * Characters a subject must not hold when its DN goes into libvirt's `tls_allowed_dn_list`, and why.
 * libvirt 9.0 reads the list from libvirtd.conf with `virConfParseString` (src/util/virconf.c): a `"..."`
 * string has no escapes and ends at the first `"`, so a `"` cannot be written at all (GnuTLS's `\"` ends the
 * string early and libvirtd refuses to start). It then matches each entry against the client's DN with
 * `g_pattern_match_simple` (src/rpc/virnettlscontext.c, `virNetTLSContextCheckCertDNACL`), where `*` and `?`
 * are wildcards with no escape: an entry holding them would admit other clients (CN `*` admits everyone).
 */
const NOT_IN_DN_LIST: ReadonlyMap<string, string> = new Map([
  ['"', "libvirt's config parser has no escape for it inside a string (virconf.c)"],
  ["*", "libvirt matches tls_allowed_dn_list entries as globs, where it matches any text"],
  ["?", "libvirt matches tls_allowed_dn_list entries as globs, where it matches any character"],
]);

/**
 * Refuses a (normalised) subject whose DN libvirt could not hold or would match as a pattern in
 * `tls_allowed_dn_list`: a `"`, `*` or `?` in any field (see `NOT_IN_DN_LIST`; control characters are
 * already refused by `normalizeSubject`). Used for every leaf certificate, since clients' and hosts' DNs
 * both go in the list. `property` prefixes error paths (`subject.commonName`).
 */
export function checkDnListSubject(subject: Subject, property = "subject"): void {
  for (const def of ATTRIBUTES) {
    const raw = subject[def.field];
    if (raw === undefined) continue;
    const list = Array.isArray(raw) ? (raw as string[]) : [raw as string];
    list.forEach((value, i) => {
      for (const [c, why] of NOT_IN_DN_LIST) {
        if (!value.includes(c)) continue;
        throw new PkiError(
          `${property}.${def.field}${Array.isArray(raw) ? `[${i}]` : ""}`,
          `must not contain ${JSON.stringify(c)} (got ${quoteInput(value)}): this DN goes in libvirt's ` +
            `tls_allowed_dn_list, and ${why}; choose a value without it`,
        );
      }
    });
  }
}

/** The subject's attributes in encoding order. */
export function subjectAttributes(subject: Subject): DnAttribute[] {
  return ATTRIBUTES.flatMap((def) => valuesOf(subject, def).map((value) => ({ type: def.short, value })));
}

/** DER Name (RDNSequence, one attribute per RDN) for a subject. */
export function subjectToAsn1(subject: Subject): der.Asn1 {
  const rdns = ATTRIBUTES.flatMap((def) =>
    valuesOf(subject, def).map((value) => {
      const bytes = def.tag === T.UTF8 ? forge.util.encodeUtf8(value) : value;
      const attrValue = forge.asn1.create(forge.asn1.Class.UNIVERSAL, def.tag, false, bytes);
      return der.set([der.seq([der.oid(def.oid), attrValue])]);
    }),
  );
  return der.seq(rdns);
}

/**
 * Reads a DER Name into its attributes, in encoded order, each with GnuTLS's name for its type (else the
 * dotted OID) and its text as GnuTLS prints it (see gnutlsdn.ts).
 */
export function nameFromAsn1(name: der.Asn1): DnAttribute[] {
  const out: DnAttribute[] = [];
  for (const rdn of der.children(name)) {
    for (const [i, atv] of der.children(rdn).entries()) {
      const [typeNode, valueNode] = der.children(atv);
      const gnutls = gnutlsValueText(der.oidText(typeNode), valueNode);
      const raw = valueNode.value as string;
      let value: string;
      // forge's DER reader already decodes a BMPString (UTF-16BE) into a string.
      if (valueNode.type === T.UTF8) value = forge.util.decodeUtf8(raw);
      else value = raw;
      const text = gnutls.escape ? escapeValue(gnutls.text) : gnutls.text;
      out.push({ type: gnutls.type, value, text, ...(i > 0 ? { sameRdn: true } : {}) });
    }
  }
  return out;
}

/** Maps attributes read from a certificate back to a Subject (unknown types are dropped). */
export function attributesToSubject(attrs: readonly DnAttribute[]): Subject {
  const out: Record<string, unknown> = {};
  for (const a of attrs) {
    const def = ATTRIBUTES.find((d) => d.short === a.type);
    if (!def) continue;
    if (def.field === "domainComponents")
      out.domainComponents = [...((out.domainComponents as string[]) ?? []), a.value];
    else out[def.field] = a.value;
  }
  return out as Subject;
}

/**
 * Value escaping exactly as GnuTLS does it in both of its DN formats (lib/x509/common.c `str_escape`, behind
 * `gnutls_x509_crt_get_dn`, which libvirt's DN check and `virt-pki-query-dn` call): a backslash before
 * `,` `+` `"` `\\` `<` `>` `;` anywhere, before `#` or a space in first position, and before a space in last
 * position. Unlike RFC 4514, `=` is left as is; everything else (non-ASCII UTF-8 included) is copied.
 */
function escapeValue(value: string): string {
  let out = "";
  const last = value.length - 1;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (',+"\\<>;'.includes(c) || (i === 0 && (c === "#" || c === " ")) || (i === last && c === " ")) {
      out += "\\";
    }
    out += c;
  }
  return out;
}

function attrText(a: DnAttribute): string {
  return `${a.type}=${a.text ?? escapeValue(a.value)}`;
}

/** Groups attributes into RDNs (`sameRdn`), each RDN's attributes joined with `+` as GnuTLS does. */
function rdnTexts(attrs: readonly DnAttribute[]): string[] {
  const rdns: string[] = [];
  for (const a of attrs) {
    if (a.sameRdn && rdns.length > 0) rdns[rdns.length - 1] += `+${attrText(a)}`;
    else rdns.push(attrText(a));
  }
  return rdns;
}

/**
 * The DN as libvirt's `tls_allowed_dn_list` compares it (GnuTLS compat format, what `virt-pki-query-dn`
 * prints): RDNs in encoded order, comma-joined, no spaces, e.g.
 * `C=GB,ST=London,L=London,O=Libvirt Project,CN=client1`.
 */
export function compatDistinguishedName(attrs: readonly DnAttribute[]): string {
  return rdnTexts(attrs).join(",");
}

/** The DN in RFC 4514 order (last RDN first), as `certtool -i` and `openssl x509 -nameopt RFC2253` print it. */
export function rfc4514DistinguishedName(attrs: readonly DnAttribute[]): string {
  return rdnTexts(attrs).reverse().join(",");
}

/** The compat-format DN of a subject, without encoding it. */
export function distinguishedName(subject: Subject): string {
  return compatDistinguishedName(subjectAttributes(subject));
}
