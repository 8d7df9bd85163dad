/**
 * GnuTLS `certtool` templates (the `--template` files libvirt's and QEMU's TLS guides tell operators to
 * write): a strict parser that turns one into a {@link CerttoolTemplate}, and a writer for the reverse.
 *
 * The parser follows certtool 3.7's own reader (`src/cfg.c`), but turns every case where certtool would
 * silently do something surprising into an error that names the line and says the fix:
 *  - `keyword = value`, `keyword: value` or `keyword value`; bare keywords for flags;
 *  - `#` comments on their own line, or after a quoted value (certtool keeps `# ...` that follows an
 *    unquoted value as part of the value, so that is rejected);
 *  - values in `"..."` or `'...'`, where only the quote itself may be escaped (`\"`): certtool drops any
 *    other backslash together with the character after it, so a backslash cannot be expressed at all;
 *  - keywords are case-sensitive (certtool ignores `CN = ...` without a warning);
 *  - a flag with a value (certtool ignores the value: `ca = no` makes a CA), a repeated single-valued
 *    keyword (certtool keeps the first), an unterminated quote (certtool swallows the rest of the file)
 *    and CRLF line endings (certtool keeps the CR in values) are all errors;
 *  - so are two combinations certtool accepts but half-ignores when it issues: `email` with
 *    `tls_www_server` (the e-mail SANs are dropped) and `encryption_key` on a `ca` that is not also a
 *    `tls_www_server` (keyEncipherment is dropped).
 * Unknown keywords (certtool warns and skips them) and known certtool keywords this library does not
 * implement are errors too.
 */
import { isIP } from "node:net";
import { normalizeDnsName, normalizeIpAddress } from "./altnames";
import { PkiError } from "./errors";
import { checkTextSize, MAX_TEMPLATE_CHARS } from "./limits";
import { isPemOrBase64Line, looksLikeKeyMaterial, quoteInput } from "./quote";
import { ExtendedKeyUsage, KEY_USAGES, KeyUsage } from "./extensions";
import { Subject, normalizeSubject } from "./names";
import { normalizeSerial } from "./serial";

/** Structured content of a certtool template. */
export interface CerttoolTemplate {
  /** `cn`, `organization` (`o`), `unit` (`ou`), `locality`, `state`, `country`, `dc` (repeatable), `pkcs9_email`. */
  subject: Subject;
  /** `dns_name` (repeatable), lower case, in template order. */
  dnsNames: string[];
  /** `ip_address` (repeatable), IPv4 or IPv6 in canonical text form, in template order. */
  ipAddresses: string[];
  /** `email` (repeatable): RFC 822 subject alternative names. */
  emailAddresses: string[];
  /** `uri` (repeatable): URI subject alternative names. */
  uris: string[];
  /** `ca`: basicConstraints CA:TRUE. */
  ca: boolean;
  /**
   * `path_len` (0 or more; certtool's `-1`, no limit, is left out). Only with `ca`.
   * @default none: no `path_len` line, or `-1`
   */
  pathLength?: number;
  /** Key usage flags in `KEY_USAGES` order, without duplicates. */
  keyUsages: KeyUsage[];
  /** `tls_www_server` (serverAuth) and `tls_www_client` (clientAuth), in that order. */
  extendedKeyUsages: ExtendedKeyUsage[];
  /**
   * `expiration_days`: validity in days (a positive whole number).
   * @default none: no `expiration_days` line
   */
  expirationDays?: number;
  /** `serial` as lower-case hex without leading zero octets. @default none: no `serial` line */
  serialNumber?: string;
}

const SUBJECT_KEYWORDS: Readonly<Record<string, keyof Subject>> = {
  country: "country",
  state: "state",
  locality: "locality",
  organization: "organization",
  o: "organization",
  unit: "organizationalUnit",
  ou: "organizationalUnit",
  cn: "commonName",
  dc: "domainComponents",
  pkcs9_email: "emailAddress",
};

type ListField = "dnsNames" | "ipAddresses" | "emailAddresses" | "uris";
const LIST_KEYWORDS: Readonly<Record<string, ListField>> = {
  dns_name: "dnsNames",
  ip_address: "ipAddresses",
  email: "emailAddresses",
  uri: "uris",
};

const KEY_USAGE_KEYWORDS: Readonly<Record<string, KeyUsage>> = {
  signing_key: "digitalSignature",
  non_repudiation: "nonRepudiation",
  encryption_key: "keyEncipherment",
  data_encipherment: "dataEncipherment",
  key_agreement: "keyAgreement",
  cert_signing_key: "keyCertSign",
  crl_signing_key: "cRLSign",
};

const EKU_KEYWORDS: Readonly<Record<string, ExtendedKeyUsage>> = {
  tls_www_server: "serverAuth",
  tls_www_client: "clientAuth",
};
const EKU_ORDER: readonly ExtendedKeyUsage[] = ["serverAuth", "clientAuth"];

const FLAG_KEYWORDS = new Set(["ca", ...Object.keys(KEY_USAGE_KEYWORDS), ...Object.keys(EKU_KEYWORDS)]);

/** Every keyword the parser accepts, in the order suggestions prefer them. */
const SUPPORTED = [
  "cn",
  "organization",
  "unit",
  "locality",
  "state",
  "country",
  "dc",
  "pkcs9_email",
  "dns_name",
  "ip_address",
  "email",
  "uri",
  "ca",
  "path_len",
  "signing_key",
  "encryption_key",
  "cert_signing_key",
  "crl_signing_key",
  "key_agreement",
  "data_encipherment",
  "non_repudiation",
  "tls_www_server",
  "tls_www_client",
  "expiration_days",
  "serial",
];
const SUPPORTED_SET = new Set([...SUPPORTED, "o", "ou"]);
/** Longest keyword `suggest` computes an edit distance for: the longest candidate plus 2. */
const SUGGEST_MAX_LENGTH = Math.max(...SUPPORTED.map((k) => k.length)) + 2;

/** certtool keywords (GnuTLS 3.7) this library deliberately does not implement, with a hint where useful. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  uid: "",
  dn: "use cn, organization, unit, locality, state, country and dc",
  dn_oid: "",
  activation_date: "certificates are valid from the time they are issued",
  expiration_date: "use expiration_days",
  crl_next_update: "",
  crl_number: "",
  crl_revocation_date: "",
  crl_this_update_date: "",
  crl_next_update_date: "",
  code_signing_key: "only tls_www_server and tls_www_client are supported",
  ocsp_signing_key: "only tls_www_server and tls_www_client are supported",
  time_stamping_key: "only tls_www_server and tls_www_client are supported",
  email_protection_key: "only tls_www_server and tls_www_client are supported",
  ipsec_ike_key: "only tls_www_server and tls_www_client are supported",
  key_purpose_oid: "only tls_www_server and tls_www_client are supported",
  honor_crq_extensions: "",
  honor_crq_ext: "",
  proxy_policy_language: "",
  ocsp_uri: "",
  ca_issuers_uri: "",
  challenge_password: "",
  password: "",
  pkcs12_key_name: "",
  crl_dist_points: "",
  tls_feature: "",
  inhibit_anypolicy_skip_certs: "",
  subject_unique_id: "",
  issuer_unique_id: "",
  other_name: "",
  other_name_utf8: "",
  other_name_octet: "",
  xmpp_name: "",
  krb5_principal: "",
  add_extension: "",
  add_critical_extension: "",
};
/** Keyword families certtool matches by prefix (`policy1_txt`, `nc_permit_dns`, ...). */
const UNSUPPORTED_PREFIXES = ["policy", "nc_permit_", "nc_exclude_"];

function isUnsupported(keyword: string): boolean {
  return (
    Object.prototype.hasOwnProperty.call(UNSUPPORTED, keyword) ||
    UNSUPPORTED_PREFIXES.some((p) => keyword.startsWith(p))
  );
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions), case-insensitive. */
function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) =>
    Array.from({ length: y.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[x.length][y.length];
}

function suggest(keyword: string): string | undefined {
  // A keyword more than 2 characters longer than every candidate is more than 2 edits from each.
  if (keyword.length > SUGGEST_MAX_LENGTH) return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of SUPPORTED) {
    const dist = editDistance(keyword, candidate);
    if (dist <= 2 && dist < candidate.length && dist < bestDistance) {
      best = candidate;
      bestDistance = dist;
    }
  }
  return best;
}

/** The message of a PkiError without its `property: ` prefix. */
function reason(e: unknown): string {
  if (e instanceof PkiError) return e.message.slice(e.property.length + 2);
  return e instanceof Error ? e.message : String(e);
}

/** Input text in a message: short and never key material (see {@link quoteInput}). */
const q = quoteInput;
/** The error of a template line that holds PEM or base64 text, which is never repeated. */
const KEY_TEXT_LINE =
  "this line holds PEM or base64 text (a key or certificate pasted into the template?), which is not " +
  "repeated here; a template holds certtool keywords only. Fix or remove the line";
const EMAIL = /^[^@\s]+@[^@\s]+$/;
const URI = /^[a-z][a-z0-9+.-]*:\S+$/i;
const INT32_MAX = 2147483647;

/**
 * Validates one value of a value-taking keyword and returns its canonical form. Throws a plain Error whose
 * message starts with the keyword; callers attach the line (parser) or field path (writer).
 */
function canonicalValue(keyword: string, value: string): string {
  if (value === "") throw new Error(`${keyword} has no value; write ${keyword} = <value> or remove the line`);
  // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
  if (/[\x00-\x1f\x7f]/.test(value))
    throw new Error(`${keyword} value ${q(value)} contains a control character`);
  const field = SUBJECT_KEYWORDS[keyword];
  if (field !== undefined) {
    if (field === "country" && !/^[A-Za-z]{2}$/.test(value)) {
      throw new Error(`country must be a two-letter ISO 3166 code such as "GB", got ${q(value)}`);
    }
    try {
      const s = normalizeSubject({ [field]: field === "domainComponents" ? [value] : value }, keyword);
      const v = s[field];
      return Array.isArray(v) ? (v as string[])[0] : (v as string);
    } catch (e) {
      throw new Error(`${keyword} ${reason(e).replace(/^at most/, "must be at most")}`);
    }
  }
  switch (keyword) {
    case "dns_name":
      if (isIP(value.replace(/^\[(.*)\]$/, "$1"))) {
        throw new Error(`dns_name ${q(value)} is an IP address; write it as ip_address = ${value}`);
      }
      try {
        return normalizeDnsName(value, keyword);
      } catch (e) {
        throw new Error(`dns_name ${reason(e)}`);
      }
    case "ip_address": {
      const fix = "write a plain IPv4 (192.168.1.24) or IPv6 (2001:db8::24) address";
      if (/[[\]%]/.test(value)) {
        throw new Error(
          `ip_address ${q(value)} is not an address certtool accepts (no brackets or zone); ${fix}`,
        );
      }
      try {
        return normalizeIpAddress(value, keyword);
      } catch (e) {
        throw new Error(`ip_address ${reason(e)}; ${fix}`);
      }
    }
    case "email":
      if (!EMAIL.test(value)) throw new Error(`email ${q(value)} is not an e-mail address (name@domain)`);
      return value;
    case "uri":
      if (!URI.test(value))
        throw new Error(`uri ${q(value)} is not a URI (scheme:rest, e.g. https://example.org/)`);
      return value;
    case "serial":
      return canonicalSerial(value);
    case "expiration_days": {
      if (value === "-1") {
        throw new Error(
          "expiration_days = -1 (certtool's 'no well-defined expiration', 9999-12-31) is not supported; " +
            "give the validity as a positive number of days",
        );
      }
      const n = /^[+-]?\d+$/.test(value) ? Number(value) : NaN;
      if (!Number.isSafeInteger(n) || n <= 0 || n > INT32_MAX) {
        throw new Error(`expiration_days must be a positive whole number of days, got ${q(value)}`);
      }
      return String(n);
    }
    case "path_len": {
      const n = /^[+-]?\d+$/.test(value) ? Number(value) : NaN;
      if (!Number.isSafeInteger(n) || n < -1 || n > INT32_MAX) {
        throw new Error(`path_len must be a whole number, 0 or more (or -1 for no limit), got ${q(value)}`);
      }
      return String(n);
    }
  }
  throw new Error(`${keyword} is not a value keyword`);
}

function canonicalSerial(value: string): string {
  const usage = "write it in decimal (e.g. 1963) or in hex with a 0x prefix (e.g. 0x07ab)";
  let hex: string;
  if (/^0x[0-9a-fA-F]+$/.test(value)) {
    if ((value.length - 2) % 2 !== 0) {
      throw new Error(
        `serial ${q(value)} has an odd number of hex digits, which certtool rejects; write 0x0${value.slice(2)}`,
      );
    }
    hex = value.slice(2);
  } else if (/^\d+$/.test(value)) {
    const n = BigInt(value);
    if (n >= 2n ** 63n - 1n) {
      throw new Error(
        `serial ${q(value)} is too large for certtool's decimal form; write it in hex with a 0x prefix`,
      );
    }
    hex = n.toString(16);
  } else {
    throw new Error(`serial must be a number, got ${q(value)}; ${usage}`);
  }
  try {
    return normalizeSerial(hex, "serial");
  } catch (e) {
    throw new Error(`serial ${q(value)}: ${reason(e)}`);
  }
}

/**
 * Combinations certtool accepts but silently drops part of when it issues (certtool.c): e-mail SANs when
 * `tls_www_server` is set, and `encryption_key` on a CA that is not also a TLS server.
 */
function certtoolIgnores(
  ca: boolean,
  server: boolean,
  encryption: boolean,
  emails: boolean,
): { keyword: string; message: string } | undefined {
  if (emails && server) {
    return {
      keyword: "email",
      message:
        "certtool leaves email out of the certificate when tls_www_server is set; remove the email lines or tls_www_server",
    };
  }
  if (encryption && ca && !server) {
    return {
      keyword: "encryption_key",
      message:
        "certtool leaves encryption_key out of a CA certificate (unless tls_www_server is set); remove encryption_key",
    };
  }
  return undefined;
}

/** A line's keyword and the text after it, split the way certtool's reader does; undefined for blank/comment lines. */
function readKeyword(line: string): { keyword: string; rest: string } | undefined {
  const s = line.replace(/^[ \t\v\f]+/, "");
  if (s === "" || s.startsWith("#")) return undefined;
  const m = /^[A-Za-z_][A-Za-z0-9_:^-]*/.exec(s);
  if (!m) {
    const token = s.split(/\s/)[0];
    throw new Error(
      `expected a keyword such as cn = ..., got ${q(token)}; certtool stops reading the template at this line`,
    );
  }
  // certtool lets ':' into keywords but gives a trailing one back as the separator ("cn: x").
  const keyword = m[0].endsWith(":") ? m[0].slice(0, -1) : m[0];
  return { keyword, rest: s.slice(keyword.length).replace(/^[ \t]+/, "") };
}

/** The value after a value-taking keyword: separator skipped, quotes and the escaped quote resolved. */
function readValue(keyword: string, rest: string): string {
  if (rest.startsWith(":") || rest.startsWith("=")) rest = rest.slice(1).replace(/^[ \t]+/, "");
  const quote = rest[0];
  if (quote !== '"' && quote !== "'") {
    const value = rest.trim();
    if (value.includes("\\")) {
      throw new Error(
        `${keyword} value ${q(value)} contains a backslash, which certtool drops together with the character after it; remove it`,
      );
    }
    if (/(^|\s)#/.test(value)) {
      throw new Error(
        `${keyword} value ${q(value)} contains "#", which certtool keeps as part of an unquoted value; ` +
          `quote the value, or move the comment to its own line`,
      );
    }
    return value;
  }
  let value = "";
  for (let i = 1; i < rest.length; i++) {
    const c = rest[i];
    if (c === "\\") {
      if (rest[i + 1] !== quote) {
        throw new Error(
          `${keyword} value has a backslash escape other than \\${quote}; certtool drops the backslash together ` +
            `with the character after it, so a template cannot contain a backslash; remove it`,
        );
      }
      value += quote;
      i++;
    } else if (c === quote) {
      const after = rest.slice(i + 1).trim();
      if (after !== "" && !after.startsWith("#")) {
        throw new Error(
          `unexpected text ${q(after)} after the quoted value of ${keyword}; write one keyword per line`,
        );
      }
      return value.trim();
    } else {
      value += c;
    }
  }
  throw new Error(
    `unterminated ${quote} quote in the value of ${keyword}; close it on the same line ` +
      `(certtool would read on into the following lines)`,
  );
}

/** Throws the error for a keyword the parser does not accept: unsupported, wrong case, or unknown. */
function rejectKeyword(keyword: string): never {
  if (isUnsupported(keyword)) {
    const hint = UNSUPPORTED[keyword];
    throw new Error(
      `${keyword} is a certtool keyword pulumi-virt-pki does not support; remove it${hint ? ` (${hint})` : ""}`,
    );
  }
  const lower = keyword.toLowerCase();
  if (SUPPORTED_SET.has(lower) || isUnsupported(lower)) {
    throw new Error(
      `keyword ${q(keyword)} must be lower case (certtool silently ignores it); write ${q(lower)}`,
    );
  }
  const head = keyword.split(":")[0];
  if (head !== keyword && SUPPORTED_SET.has(head)) {
    throw new Error(
      `unknown keyword ${q(keyword)}: certtool reads a colon without a space after it as part of the keyword; ` +
        `write ${head} = ${keyword.slice(head.length + 1)}`,
    );
  }
  const guess = suggest(keyword);
  throw new Error(
    guess
      ? `unknown keyword ${q(keyword)}; did you mean ${q(guess)}?`
      : `unknown keyword ${q(keyword)}; remove it or use one of: ${SUPPORTED.join(", ")}`,
  );
}

/**
 * Parses a certtool template. Errors are `PkiError`s whose property is `template:<line>` and whose message
 * names the keyword and the fix. Lists keep the template's order; IPs are canonicalised and DNS names
 * lower-cased.
 */
export function parseCerttoolTemplate(text: string): CerttoolTemplate {
  if (typeof text !== "string") throw new PkiError("template", `must be a string, got ${typeof text}`);
  checkTextSize(text, "template", MAX_TEMPLATE_CHARS, "template");
  const subject: Record<string, unknown> = {};
  const lists: Record<ListField, string[]> = { dnsNames: [], ipAddresses: [], emailAddresses: [], uris: [] };
  const domainComponents: string[] = [];
  const flags = new Set<string>();
  const flagLines = new Map<string, number>();
  const listLines = new Map<ListField, number>();
  const seen = new Map<string, { line: number; keyword: string }>();
  let pathLength: number | undefined;
  let pathLine = 0;
  let expirationDays: number | undefined;
  let serialNumber: string | undefined;

  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const lineNo = index + 1;
    try {
      const line = lines[index];
      if (isPemOrBase64Line(line)) throw new Error(KEY_TEXT_LINE);
      if (line.includes("\r")) {
        throw new Error(
          "line ends in a carriage return (CRLF); certtool keeps it in the value, so save the template with LF line endings",
        );
      }
      const directive = readKeyword(line);
      if (directive === undefined) continue;
      const { keyword, rest } = directive;
      if (!SUPPORTED_SET.has(keyword)) rejectKeyword(keyword);
      if (FLAG_KEYWORDS.has(keyword)) {
        if (rest !== "" && !rest.startsWith("#")) {
          throw new Error(
            `${keyword} is a flag and takes no value (certtool ignores the value: even "${keyword} = no" sets it); ` +
              `write just ${keyword}, or remove the line`,
          );
        }
        if (!flags.has(keyword)) flagLines.set(keyword, lineNo);
        flags.add(keyword);
        continue;
      }
      const value = canonicalValue(keyword, readValue(keyword, rest));
      if (keyword === "dc") {
        domainComponents.push(value);
        continue;
      }
      const listField = LIST_KEYWORDS[keyword];
      if (listField !== undefined) {
        if (lists[listField].length === 0) listLines.set(listField, lineNo);
        lists[listField].push(value);
        continue;
      }
      const field = SUBJECT_KEYWORDS[keyword];
      const slot = field ?? keyword;
      const previous = seen.get(slot);
      if (previous) {
        const as = previous.keyword === keyword ? "" : ` as ${previous.keyword}`;
        throw new Error(`${keyword} appears again (first on line ${previous.line}${as}); keep only one`);
      }
      seen.set(slot, { line: lineNo, keyword });
      if (field !== undefined) subject[field] = value;
      else if (keyword === "serial") serialNumber = value;
      else if (keyword === "expiration_days") expirationDays = Number(value);
      else if (keyword === "path_len") {
        pathLength = value === "-1" ? undefined : Number(value);
        pathLine = lineNo;
      }
    } catch (e) {
      // A line that holds text like a key's gets no detail: any detail would quote part of it.
      throw new PkiError(
        `template:${lineNo}`,
        looksLikeKeyMaterial(lines[index]) ? KEY_TEXT_LINE : reason(e),
      );
    }
  }

  const ignored = certtoolIgnores(
    flags.has("ca"),
    flags.has("tls_www_server"),
    flags.has("encryption_key"),
    lists.emailAddresses.length > 0,
  );
  if (ignored) {
    const line =
      ignored.keyword === "email" ? listLines.get("emailAddresses") : flagLines.get(ignored.keyword);
    throw new PkiError(`template:${line}`, ignored.message);
  }
  if (pathLength !== undefined && !flags.has("ca")) {
    throw new PkiError(
      `template:${pathLine}`,
      "path_len only applies to a CA certificate; add ca, or remove path_len",
    );
  }
  if (domainComponents.length > 0) subject.domainComponents = domainComponents;
  const usages = new Set([...flags].map((f) => KEY_USAGE_KEYWORDS[f]));
  const purposes = new Set([...flags].map((f) => EKU_KEYWORDS[f]));
  const out: CerttoolTemplate = {
    subject: subject as Subject,
    ...lists,
    ca: flags.has("ca"),
    keyUsages: KEY_USAGES.filter((u) => usages.has(u)),
    extendedKeyUsages: EKU_ORDER.filter((u) => purposes.has(u)),
  };
  if (pathLength !== undefined) out.pathLength = pathLength;
  if (expirationDays !== undefined) out.expirationDays = expirationDays;
  if (serialNumber !== undefined) out.serialNumber = serialNumber;
  return out;
}

/** A value as certtool reads it back unchanged: bare when that is unambiguous, else double-quoted. */
function quoteValue(value: string): string {
  if (/^[^\s"'#\\](?:[^"'#\\]*[^\s"'#\\])?$/.test(value)) return value;
  return `"${value.replace(/"/g, '\\"')}"`;
}

function keywordFor<T>(table: Readonly<Record<string, T>>, wanted: T): string {
  return Object.keys(table).find((k) => table[k] === wanted) as string;
}

/**
 * Writes a certtool template for `t`: subject, serial and validity, alternative names, then basic
 * constraints, key usage and key purpose flags. certtool accepts the result and `parseCerttoolTemplate`
 * reads it back to an equal object (values are written in canonical form). Throws a `PkiError` naming the
 * field for a value certtool cannot carry (a backslash, a control character) or that is invalid.
 */
export function formatCerttoolTemplate(t: CerttoolTemplate): string {
  if (t === null || typeof t !== "object")
    throw new PkiError("template", "must be a CerttoolTemplate object");
  const lines: string[] = [];
  const put = (property: string, keyword: string, value: string) => {
    if (typeof value !== "string") throw new PkiError(property, `must be a string, got ${typeof value}`);
    if (value.includes("\\")) {
      throw new PkiError(
        property,
        `${q(value)} contains a backslash, which a certtool template cannot express`,
      );
    }
    let canonical: string;
    try {
      canonical = canonicalValue(keyword, value.trim());
    } catch (e) {
      throw new PkiError(property, reason(e));
    }
    lines.push(`${keyword} = ${quoteValue(canonical)}`);
  };
  const subject = t.subject ?? {};
  for (const key of Object.keys(subject)) {
    if (!Object.values(SUBJECT_KEYWORDS).includes(key as keyof Subject)) {
      throw new PkiError(`subject.${key}`, "unknown subject field");
    }
  }
  const single: [keyof Subject, string][] = [
    ["country", "country"],
    ["state", "state"],
    ["locality", "locality"],
    ["organization", "organization"],
    ["organizationalUnit", "unit"],
    ["commonName", "cn"],
  ];
  for (const [field, keyword] of single) {
    const v = subject[field];
    if (v !== undefined) put(`subject.${field}`, keyword, v as string);
  }
  (subject.domainComponents ?? []).forEach((dc, i) => put(`subject.domainComponents[${i}]`, "dc", dc));
  if (subject.emailAddress !== undefined) put("subject.emailAddress", "pkcs9_email", subject.emailAddress);

  if (t.serialNumber !== undefined) {
    let hex: string;
    try {
      hex = normalizeSerial(t.serialNumber, "serialNumber");
    } catch (e) {
      throw new PkiError("serialNumber", reason(e));
    }
    lines.push(`serial = 0x${hex}`);
  }
  if (t.expirationDays !== undefined) put("expirationDays", "expiration_days", String(t.expirationDays));

  for (const keyword of Object.keys(LIST_KEYWORDS)) {
    const field = LIST_KEYWORDS[keyword];
    const list = t[field] ?? [];
    if (!Array.isArray(list)) throw new PkiError(field, "must be a list of strings");
    list.forEach((v, i) => put(`${field}[${i}]`, keyword, v));
  }

  const ignored = certtoolIgnores(
    t.ca === true,
    (t.extendedKeyUsages ?? []).includes("serverAuth"),
    (t.keyUsages ?? []).includes("keyEncipherment"),
    (t.emailAddresses ?? []).length > 0,
  );
  if (ignored)
    throw new PkiError(ignored.keyword === "email" ? "emailAddresses" : "keyUsages", ignored.message);
  if (t.ca) lines.push("ca");
  if (t.pathLength !== undefined) {
    if (!t.ca)
      throw new PkiError("pathLength", "only applies to a CA certificate; set ca, or leave pathLength out");
    if (!Number.isSafeInteger(t.pathLength) || t.pathLength < 0) {
      throw new PkiError("pathLength", `must be a whole number, 0 or more, got ${q(t.pathLength)}`);
    }
    put("pathLength", "path_len", String(t.pathLength));
  }
  const usages = t.keyUsages ?? [];
  usages.forEach((u, i) => {
    if (!KEY_USAGES.includes(u))
      throw new PkiError(`keyUsages[${i}]`, `unknown key usage ${q(u)}; use one of ${KEY_USAGES.join(", ")}`);
  });
  for (const u of KEY_USAGES) if (usages.includes(u)) lines.push(keywordFor(KEY_USAGE_KEYWORDS, u));
  const ekus = t.extendedKeyUsages ?? [];
  ekus.forEach((u, i) => {
    if (!EKU_ORDER.includes(u)) {
      throw new PkiError(
        `extendedKeyUsages[${i}]`,
        `unknown extended key usage ${q(u)}; use serverAuth or clientAuth`,
      );
    }
  });
  for (const u of EKU_ORDER) if (ekus.includes(u)) lines.push(keywordFor(EKU_KEYWORDS, u));
  return `${lines.join("\n")}\n`;
}
