/**
 * Subject distinguished names: validation, DER encoding in a fixed RDN order, and the two text forms
 * operators meet: GnuTLS "compat" (encoded order, what libvirt's `tls_allowed_dn_list` matches) and
 * RFC 4514 (reversed, what `certtool -i` and `openssl -nameopt RFC2253` print).
 */
import forge from "node-forge";
import * as der from "./asn1";
import { PkiError } from "./errors";
import { quoteInput } from "./quote";

/** A certificate subject. Every field is optional, but a certificate needs at least one. */
export interface Subject {
  /** Two-letter ISO 3166 country code (`C`), e.g. `GB`. */
  readonly country?: string;
  /** State or province (`ST`). */
  readonly state?: string;
  /** Locality or city (`L`). */
  readonly locality?: string;
  /** Organization (`O`). */
  readonly organization?: string;
  /** Organizational unit (`OU`). */
  readonly organizationalUnit?: string;
  /** Common name (`CN`): the host FQDN for servers, the client's name for clients. */
  readonly commonName?: string;
  /** PKCS#9 e-mail address in the subject (`emailAddress`); prefer an e-mail SAN. */
  readonly emailAddress?: string;
  /** Domain components (`DC`), most significant first, e.g. `["org", "libvirt"]`. */
  readonly domainComponents?: readonly string[];
}

/** One attribute of a DN as read from a certificate: its short name (or OID) and value. */
export interface DnAttribute {
  /** Short name such as `CN`, or the dotted OID when it has none here. */
  readonly type: string;
  /** The attribute's string value. */
  readonly value: string;
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
const SHORT_BY_OID = new Map(ATTRIBUTES.map((a) => [a.oid, a.short]));
SHORT_BY_OID.set("0.9.2342.19200300.100.1.1", "UID");
SHORT_BY_OID.set("2.5.4.5", "serialNumber");

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

/** Reads a DER Name into its attributes, in encoded order. */
export function nameFromAsn1(name: der.Asn1): DnAttribute[] {
  const out: DnAttribute[] = [];
  for (const rdn of der.children(name)) {
    for (const atv of der.children(rdn)) {
      const [typeNode, valueNode] = der.children(atv);
      const type = der.oidText(typeNode);
      const raw = valueNode.value as string;
      let value: string;
      if (valueNode.type === T.UTF8) value = forge.util.decodeUtf8(raw);
      else if (valueNode.type === T.BMPSTRING)
        value = Buffer.from(raw, "binary").swap16().toString("utf16le");
      else value = raw;
      out.push({ type: SHORT_BY_OID.get(type) ?? type, value });
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

/** RFC 4514 value escaping, as GnuTLS applies it in both of its DN formats. */
function escapeValue(value: string): string {
  let v = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
  if (v.startsWith("#") || v.startsWith(" ")) v = `\\${v}`;
  if (v.endsWith(" ")) v = `${v.slice(0, -1)}\\ `;
  return v;
}

function attrText(a: DnAttribute): string {
  return `${a.type === "EMAIL" ? "EMAIL" : a.type}=${escapeValue(a.value)}`;
}

/**
 * The DN as libvirt's `tls_allowed_dn_list` compares it (GnuTLS compat format, what `virt-pki-query-dn`
 * prints): RDNs in encoded order, comma-joined, no spaces, e.g.
 * `C=GB,ST=London,L=London,O=Libvirt Project,CN=client1`.
 */
export function compatDistinguishedName(attrs: readonly DnAttribute[]): string {
  return attrs.map(attrText).join(",");
}

/** The DN in RFC 4514 order (last RDN first), as `certtool -i` and `openssl x509 -nameopt RFC2253` print it. */
export function rfc4514DistinguishedName(attrs: readonly DnAttribute[]): string {
  return [...attrs].reverse().map(attrText).join(",");
}

/** The compat-format DN of a subject, without encoding it. */
export function distinguishedName(subject: Subject): string {
  return compatDistinguishedName(subjectAttributes(subject));
}
