/**
 * Subject alternative names: normalisation (so cosmetic edits do not re-issue a certificate) and DER
 * encoding of the GeneralNames libvirt, QEMU and GnuTLS match against.
 */
import { isIPv4, isIPv6 } from "node:net";
import * as forge from "node-forge";
import * as der from "./asn1";
import { PkiError } from "./errors";
import { quoteInput } from "./quote";

/** The alternative names of a certificate, each list normalised, sorted and de-duplicated. */
export interface AltNames {
  /** DNS names, lower case, no trailing dot. A leading `*.` wildcard label is allowed. */
  readonly dnsNames: string[];
  /** IPv4 and IPv6 addresses in canonical text form. */
  readonly ipAddresses: string[];
  /** RFC 822 e-mail addresses. */
  readonly emailAddresses: string[];
  /** URIs. */
  readonly uris: string[];
}

/** forge's IP helpers exist at run time but are missing from @types/node-forge. */
const forgeIp = forge.util as unknown as {
  bytesFromIP(ip: string): string | null;
  bytesToIP(bytes: string): string;
};

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Lower-cases and validates a DNS name; the error names `property` and says what a valid name is. */
export function normalizeDnsName(name: string, property = "dnsNames"): string {
  if (typeof name !== "string") throw new PkiError(property, `must be a string, got ${typeof name}`);
  const n = name.trim().toLowerCase().replace(/\.$/, "");
  const labels = n.split(".");
  const bad = (why: string) =>
    new PkiError(
      property,
      `${quoteInput(name)} is not a valid DNS name (${why}); use letters, digits and hyphens`,
    );
  if (n === "") throw bad("empty");
  if (n.length > 253) throw bad("longer than 253 characters");
  if (isIPv4(n)) throw bad("it is an IP address: put it in ipAddresses");
  labels.forEach((label, i) => {
    if (i === 0 && label === "*" && labels.length > 2) return;
    if (!LABEL.test(label)) throw bad(`label ${quoteInput(label)}`);
  });
  return n;
}

/** Validates an IPv4 or IPv6 address and returns its canonical text (IPv6 compressed, lower case). */
export function normalizeIpAddress(ip: string, property = "ipAddresses"): string {
  const t = typeof ip === "string" ? ip.trim().replace(/^\[(.*)\]$/, "$1") : "";
  // A zone (fe80::1%eth0) names a link, not an address a certificate can hold (Node's isIPv6 accepts it).
  if (t.includes("%")) {
    throw new PkiError(property, `${quoteInput(ip)} has a zone (%...); give the address without it`);
  }
  if (isIPv4(t))
    return t
      .split(".")
      .map((o) => String(Number(o)))
      .join(".");
  if (isIPv6(t)) return new URL(`http://[${t}]/`).hostname.slice(1, -1);
  throw new PkiError(property, `${quoteInput(ip)} is not an IPv4 or IPv6 address`);
}

function normalizeList(
  values: readonly string[] | undefined,
  property: string,
  one: (v: string, p: string) => string,
): string[] {
  if (values === undefined || values === null) return [];
  if (!Array.isArray(values)) throw new PkiError(property, "must be a list of strings");
  return [...new Set(values.map((v, i) => one(v, `${property}[${i}]`)))].sort();
}

/** Normalises every list: trims, lower-cases DNS names, canonicalises IPs, sorts and removes duplicates. */
export function normalizeAltNames(input: Partial<AltNames>, prefix = ""): AltNames {
  return {
    dnsNames: normalizeList(input.dnsNames, `${prefix}dnsNames`, normalizeDnsName),
    ipAddresses: normalizeList(input.ipAddresses, `${prefix}ipAddresses`, normalizeIpAddress),
    emailAddresses: normalizeList(input.emailAddresses, `${prefix}emailAddresses`, (v, p) => {
      if (typeof v !== "string" || !/^[^@\s]+@[^@\s]+$/.test(v.trim())) {
        throw new PkiError(p, `${quoteInput(v)} is not an e-mail address`);
      }
      return v.trim();
    }),
    uris: normalizeList(input.uris, `${prefix}uris`, (v, p) => {
      if (typeof v !== "string" || !/^[a-z][a-z0-9+.-]*:\S+$/i.test(v.trim())) {
        throw new PkiError(p, `${quoteInput(v)} is not a URI (scheme:rest)`);
      }
      return v.trim();
    }),
  };
}

/** Whether there is any alternative name at all. */
export function hasAltNames(names: AltNames): boolean {
  return (
    names.dnsNames.length + names.ipAddresses.length + names.emailAddresses.length + names.uris.length > 0
  );
}

/** Raw bytes of an IP address for an iPAddress GeneralName. */
export function ipToBytes(ip: string): string {
  const bytes = forgeIp.bytesFromIP(ip);
  if (bytes === null || bytes === undefined)
    throw new PkiError("ipAddresses", `${quoteInput(ip)} is not an IP`);
  return bytes;
}

function generalName(tag: number, bytes: string): der.Asn1 {
  return forge.asn1.create(forge.asn1.Class.CONTEXT_SPECIFIC, tag, false, bytes);
}

/** DER GeneralNames for a SAN extension: DNS names, then IPs, then e-mails, then URIs. */
export function altNamesToAsn1(names: AltNames): der.Asn1 {
  return der.seq([
    ...names.dnsNames.map((n) => generalName(2, n)),
    ...names.ipAddresses.map((ip) => generalName(7, ipToBytes(ip))),
    ...names.emailAddresses.map((e) => generalName(1, e)),
    ...names.uris.map((u) => generalName(6, u)),
  ]);
}

/** Reads GeneralNames (a SAN extension's value) back to AltNames. */
export function altNamesFromAsn1(node: der.Asn1): AltNames {
  const out = {
    dnsNames: [] as string[],
    ipAddresses: [] as string[],
    emailAddresses: [] as string[],
    uris: [] as string[],
  };
  for (const gn of der.children(node)) {
    const v = gn.value as string;
    if (gn.type === 2) out.dnsNames.push(v);
    else if (gn.type === 7) out.ipAddresses.push(normalizeIpAddress(forgeIp.bytesToIP(v)));
    else if (gn.type === 1) out.emailAddresses.push(v);
    else if (gn.type === 6) out.uris.push(v);
  }
  return out;
}
