/**
 * Preview-time acceptance: predicts whether libvirt 9.0 (Debian bookworm, 9.0.0-4+deb12u2) or QEMU 7.2
 * (Debian bookworm, 1:7.2+dfsg-7+deb12u18, which carries the 7.2.22 stable backport) would accept a set of
 * TLS credentials, with GnuTLS 3.7.9's matching rules underneath. Every rule cites the source it copies:
 *
 * - `virnettlscontext.c` = libvirt-9.0.0/src/rpc/virnettlscontext.c
 * - `virfile.c` = libvirt-9.0.0/src/util/virfile.c
 * - `tlscredsx509.c` = qemu-7.2.0/crypto/tlscredsx509.c with debian/patches/v7.2.22.diff applied
 * - `tlssession.c` = qemu-7.2.0/crypto/tlssession.c
 * - `gnutls:<file>` = gnutls-3.7.9/lib/<file>
 *
 * Messages are the programs' own format strings with the `%s` filled; problems this module adds from
 * GnuTLS's handshake code (which logs no message of its own) say so.
 */
import { domainToASCII } from "node:url";
import { isIPv4, isIPv6 } from "node:net";
import { X509Certificate } from "node:crypto";
import * as der from "./asn1";
import { normalizeIpAddress } from "./altnames";
import { OID, readKeyUsage, readSubjectAltName, readSubjectKeyIdentifier } from "./extensions";
import { readAuthorityKeyIdentifier, readBasicConstraints } from "./extensions";
import { loadPrivateKey, spkiDer } from "./keys";
import { compatDistinguishedName, nameFromAsn1 } from "./names";
import { findExtension, parseCertificateDer, parseCertificatePem, ParsedCertificate } from "./x509";
import { PkiError } from "./errors";
import { digestKey, Memo } from "./memo";
import { checkTextSize, MAX_TRUST_BUNDLE_CHARS } from "./limits";
import { looksLikeKeyMaterial, quoteInput } from "./quote";

/** Whose rules: libvirt's daemon and clients (9.0), or QEMU's `tls-creds-x509` objects (7.2). */
export type TlsConsumer = "libvirt" | "qemu";
/** Which side of the connection the credentials are for. */
export type TlsRole = "server" | "client";

/** The installed file names used in messages, as the daemon would print them. */
export interface TlsCredentialFiles {
  /** The CA file. @default libvirt `/etc/pki/CA/cacert.pem`; QEMU `/etc/pki/qemu/ca-cert.pem` */
  readonly caCert?: string;
  /** The certificate file. @default libvirt `/etc/pki/libvirt/{server,client}cert.pem`; QEMU `/etc/pki/qemu/{server,client}-cert.pem` */
  readonly cert?: string;
  /** The key file. @default libvirt `/etc/pki/libvirt/private/{server,client}key.pem`; QEMU `/etc/pki/qemu/{server,client}-key.pem` */
  readonly key?: string;
}

/** The arguments of {@link checkTlsCredentials}. */
export interface CheckTlsCredentialsArgs {
  /** libvirt = libvirt 9.0's rules; qemu = QEMU 7.2's (as patched in Debian bookworm). */
  readonly consumer: TlsConsumer;
  /** Whether the certificate is a server's or a client's. */
  readonly role: TlsRole;
  /** The CA file as installed: one or more PEM certificates. */
  readonly caCertPem: string;
  /** The certificate file as installed; only its first certificate is the credential. */
  readonly certPem: string;
  /** The private key; when given it must be the certificate's. @default not checked */
  readonly keyPem?: string;
  /** For a server: every name or address clients use to reach it, matched as GnuTLS does. @default none checked */
  readonly serverNames?: readonly string[];
  /**
   * For a client: the server's `tls_allowed_dn_list` (libvirt, `g_pattern_match_simple` globs) or the DN
   * globs of QEMU's `authz-list` (`fnmatch`). @default no allow list
   */
  readonly allowedDnList?: readonly string[];
  /** The time to check at. @default now */
  readonly now?: Date;
  /** The file names to print in messages. @default the consumer's default paths for the role */
  readonly files?: TlsCredentialFiles;
}

/** One thing the consumer would refuse (`error`) or log a warning about (`warning`). */
export interface TlsProblem {
  /** `error`: the daemon refuses to start or the connection is refused; `warning`: logged, works. */
  readonly severity: "error" | "warning";
  /** The consumer's own message where it has one, with the file names filled in. */
  readonly message: string;
}

/** The result of {@link checkTlsCredentials}. */
export interface TlsCredentialsVerdict {
  /** `reject` when any problem is an error, `warn` when there are only warnings, else `accept`. */
  readonly verdict: "accept" | "warn" | "reject";
  /** Every problem found, in the order the consumer checks them. */
  readonly problems: TlsProblem[];
}

/** CA certificates libvirt and QEMU import from the CA file for their start-up check (virnettlscontext.c:542, tlscredsx509.c:457). */
export const TLS_MAX_CA_CERTS = 16;
/** Largest certificate or CA file libvirt reads for its start-up check, in bytes (virnettlscontext.c:489, :524). */
export const LIBVIRT_MAX_CERT_FILE_BYTES = 1 << 16;

const KP_ANY = "2.5.29.37.0";
/** Extensions GnuTLS understands; an unknown critical one fails verification (gnutls:x509/supported_exts.gperf, x509/verify.c:99). */
const GNUTLS_SUPPORTED_EXTS = new Set([
  "2.5.29.14",
  "2.5.29.15",
  "2.5.29.17",
  "2.5.29.18",
  "2.5.29.19",
  "2.5.29.30",
  "2.5.29.31",
  "2.5.29.35",
  "2.5.29.37",
  "1.3.6.1.5.5.7.1.1",
  "1.3.6.1.5.5.7.1.14",
  "1.3.6.1.5.5.7.1.24",
  "2.5.29.32",
  "2.5.29.54",
]);
/**
 * Signature algorithms GnuTLS 3.7.9 treats as insecure for certificates (gnutls:algorithms/sign.c:35-350; Debian
 * builds without ALLOW_SHA1): MD2, MD5, SHA-1 (RSA, DSA, ECDSA) and RIPEMD-160.
 */
const INSECURE_CERT_SIGNATURES = new Set([
  "1.2.840.113549.1.1.2",
  "1.2.840.113549.1.1.4",
  "1.3.14.3.2.25",
  "1.2.840.113549.1.1.5",
  "1.3.14.3.2.29",
  "1.2.840.10040.4.3",
  "1.3.14.3.2.27",
  "1.2.840.10045.4.1",
  "1.3.36.3.3.1.2",
]);

function defaultFiles(consumer: TlsConsumer, role: TlsRole): Required<TlsCredentialFiles> {
  if (consumer === "libvirt") {
    return {
      caCert: "/etc/pki/CA/cacert.pem",
      cert: `/etc/pki/libvirt/${role}cert.pem`,
      key: `/etc/pki/libvirt/private/${role}key.pem`,
    };
  }
  return {
    caCert: "/etc/pki/qemu/ca-cert.pem",
    cert: `/etc/pki/qemu/${role}-cert.pem`,
    key: `/etc/pki/qemu/${role}-key.pem`,
  };
}

// A fleet asks about the same CA file for every host and layout, and the combined QEMU layout about the same
// certificate and key twice. The memos hold immutable results (parsed public certificates, verification results,
// public keys), keyed by digest.
type PemCertificates = ({ cert: ParsedCertificate } | { malformed: true })[];
const parsedFiles = new Memo<PemCertificates>(64);
const verified = new WeakMap<ParsedCertificate, WeakMap<ParsedCertificate, boolean>>();
const keySpkis = new Memo<Buffer | Error>(64);
/** Texts longer than this (16 CA certificates of 4 KB) are parsed each time, not kept. */
const MEMO_MAX_TEXT = 64 * 1024;

/** The certificate blocks GnuTLS's PEM reader finds: `-----BEGIN CERTIFICATE` or `-----BEGIN X509 CERTIFICATE` (gnutls:x509/x509.c:3960). */
function gnutlsPemCertificates(text: string): PemCertificates {
  // Keyed by digest (a text may hold a key by mistake; nothing of it is kept), and only for texts of a usual size.
  if (text.length > MEMO_MAX_TEXT) return parsePemCertificates(text);
  return parsedFiles.get(digestKey(text), () => parsePemCertificates(text));
}

function parsePemCertificates(text: string): PemCertificates {
  return der
    .pemBlocks(text)
    .filter((b) => b.label === "CERTIFICATE" || b.label === "X509 CERTIFICATE")
    .map((b) => {
      try {
        return { cert: parseCertificateDer(b.der) };
      } catch {
        return { malformed: true as const };
      }
    });
}

/** Extensions of a certificate as GnuTLS's getters return them. */
interface CertFacts {
  /** `gnutls_x509_crt_get_basic_constraints`: true/false for the CA flag, undefined when absent. */
  readonly ca: boolean | undefined;
  /** keyUsage bits, undefined when absent. */
  readonly keyUsage: ReadonlySet<string> | undefined;
  readonly keyUsageCritical: boolean;
  /** extendedKeyUsage OIDs (empty when absent) and whether the extension is critical. */
  readonly purposes: readonly string[];
  readonly purposesCritical: boolean;
}

function facts(cert: ParsedCertificate): CertFacts {
  const bc = findExtension(cert, OID.basicConstraints);
  const ku = findExtension(cert, OID.keyUsage);
  const eku = findExtension(cert, OID.extKeyUsage);
  return {
    ca: bc ? readBasicConstraints(bc.value).ca : undefined,
    keyUsage: ku ? new Set(readKeyUsage(ku.value)) : undefined,
    keyUsageCritical: ku?.critical ?? false,
    purposes: eku ? der.children(eku.value).map((n) => der.oidText(n)) : [],
    purposesCritical: eku?.critical ?? false,
  };
}

/** Collects problems; `fail` records an error and returns false so checks can stop as the C code does. */
class Problems {
  readonly list: TlsProblem[] = [];
  error(message: string): false {
    if (!this.list.some((p) => p.severity === "error" && p.message === message))
      this.list.push({ severity: "error", message });
    return false;
  }
  warn(message: string): void {
    if (!this.list.some((p) => p.message === message)) this.list.push({ severity: "warning", message });
  }
}

/** virNetTLSContextCheckCertTimes (virnettlscontext.c:121-157) and qcrypto_tls_creds_check_cert_times (tlscredsx509.c:37-74): same words. */
function checkTimes(
  p: Problems,
  cert: ParsedCertificate,
  file: string,
  isServer: boolean,
  isCA: boolean,
  nowSeconds: number,
): boolean {
  const who = isCA ? "CA" : isServer ? "server" : "client";
  // gnutls_x509_crt_get_expiration_time(cert) < now: time_t seconds.
  if (Math.floor(cert.notAfter.getTime() / 1000) < nowSeconds)
    return p.error(`The ${who} certificate ${file} has expired`);
  if (Math.floor(cert.notBefore.getTime() / 1000) > nowSeconds)
    return p.error(`The ${who} certificate ${file} is not yet active`);
  return true;
}

/** virNetTLSContextCheckCertBasicConstraints (virnettlscontext.c:160-200), tlscredsx509.c:77-126: same words. */
function checkBasicConstraints(
  p: Problems,
  f: CertFacts,
  file: string,
  isServer: boolean,
  isCA: boolean,
): boolean {
  if (f.ca === true && !isCA) {
    return p.error(
      `The certificate ${file} basic constraints show a CA, but we need one for a ${isServer ? "server" : "client"}`,
    );
  }
  if (f.ca === false && isCA) return p.error(`The certificate ${file} basic constraints do not show a CA`);
  if (f.ca === undefined && isCA)
    return p.error(`The certificate ${file} is missing basic constraints for a CA`);
  return true;
}

/**
 * virNetTLSContextCheckCertKeyUsage (virnettlscontext.c:203-264): a missing keyUsage counts as what is needed;
 * a CA needs keyCertSign, a leaf digitalSignature and keyEncipherment; an error when keyUsage is critical, a
 * VIR_WARN otherwise. QEMU (tlscredsx509.c:129-177, after v7.2.22.diff) asks a leaf only for digitalSignature,
 * and only when critical, with no warning: upstream QEMU dropped the keyEncipherment rule (10.1) and 7.2.22 (in
 * Debian bookworm's QEMU) backports that, while libvirt 9.0 keeps it. Whether a newer libvirt drops it is not checked here.
 */
function checkKeyUsage(
  p: Problems,
  consumer: TlsConsumer,
  f: CertFacts,
  file: string,
  isCA: boolean,
): boolean {
  if (f.keyUsage === undefined) return true;
  const needs: [string, string][] = isCA
    ? [["keyCertSign", "certificate signing"]]
    : consumer === "libvirt"
      ? [
          ["digitalSignature", "digital signature"],
          ["keyEncipherment", "key encipherment"],
        ]
      : [["digitalSignature", "digital signature"]];
  for (const [bit, words] of needs) {
    if (f.keyUsage.has(bit)) continue;
    const message = `Certificate ${file} usage does not permit ${words}`;
    if (f.keyUsageCritical) return p.error(message);
    if (consumer === "libvirt") p.warn(message);
  }
  return true;
}

/**
 * virNetTLSContextCheckCertKeyPurpose (virnettlscontext.c:267-350). Note libvirt 9.0's test at :316 is
 * `STRNEQ(buffer, GNUTLS_KP_ANY)`: any purpose other than serverAuth, clientAuth and anyExtendedKeyUsage
 * allows both uses, and anyExtendedKeyUsage allows neither. QEMU (tlscredsx509.c:180-270) reads it the
 * intended way (anyExtendedKeyUsage allows both, others nothing), says "use with" and never warns.
 */
function checkKeyPurpose(
  p: Problems,
  consumer: TlsConsumer,
  f: CertFacts,
  file: string,
  isServer: boolean,
): boolean {
  let allowServer = f.purposes.length === 0;
  let allowClient = allowServer;
  for (const oid of f.purposes) {
    if (oid === OID.serverAuth) allowServer = true;
    else if (oid === OID.clientAuth) allowClient = true;
    else if (consumer === "libvirt" ? oid !== KP_ANY : oid === KP_ANY) allowServer = allowClient = true;
  }
  if (isServer ? allowServer : allowClient) return true;
  const side = isServer ? "server" : "client";
  const message =
    consumer === "libvirt"
      ? `Certificate ${file} purpose does not allow use for with a TLS ${side}`
      : `Certificate ${file} purpose does not allow use with a TLS ${side}`;
  if (f.purposesCritical) return p.error(message);
  if (consumer === "libvirt") p.warn(message);
  return true;
}

/** virNetTLSContextCheckCert (virnettlscontext.c:401-424), qcrypto_tls_creds_check_cert (tlscredsx509.c:273-308). */
function checkCert(
  p: Problems,
  consumer: TlsConsumer,
  cert: ParsedCertificate,
  file: string,
  isServer: boolean,
  isCA: boolean,
  nowSeconds: number,
): boolean {
  const f = facts(cert);
  return (
    checkTimes(p, cert, file, isServer, isCA, nowSeconds) &&
    checkBasicConstraints(p, f, file, isServer, isCA) &&
    checkKeyUsage(p, consumer, f, file, isCA) &&
    (isCA || checkKeyPurpose(p, consumer, f, file, isServer))
  );
}

/** gnutls:x509/verify.c:259-305 is_issuer: raw issuer DN equals raw subject DN, and AKI equals SKI when both exist. */
function isIssuer(cert: ParsedCertificate, issuer: ParsedCertificate): boolean {
  if (!der.toDer(cert.issuer).equals(der.toDer(issuer.subject))) return false;
  const aki = findExtension(cert, OID.authorityKeyIdentifier);
  const akid = aki ? readAuthorityKeyIdentifier(aki.value) : undefined;
  const ski = findExtension(issuer, OID.subjectKeyIdentifier);
  if (akid === undefined || ski === undefined) return true;
  return akid === readSubjectKeyIdentifier(ski.value);
}

function verifiesWith(cert: ParsedCertificate, issuer: ParsedCertificate): boolean {
  let byIssuer = verified.get(cert);
  if (byIssuer === undefined) verified.set(cert, (byIssuer = new WeakMap()));
  let ok = byIssuer.get(issuer);
  if (ok === undefined) {
    try {
      ok = new X509Certificate(cert.der).verify(issuer.publicKey);
    } catch {
      ok = false;
    }
    byIssuer.set(issuer, ok);
  }
  return ok;
}

/**
 * The reason libvirt and QEMU print for `gnutls_x509_crt_list_verify` with flags 0 (virnettlscontext.c:447-465,
 * tlscredsx509.c:335-358), from GnuTLS's verify_crt (gnutls:x509/verify.c:628-860), or undefined when it
 * verifies: no issuer → SIGNER_NOT_FOUND; issuer not a CA, keyUsage without keyCertSign, a bad signature or an
 * unknown critical extension → INVALID; a SHA-1/MD5 signature on a certificate not self-issued → INSECURE_ALGORITHM
 * (checked last, so its reason wins).
 */
function verifyStatus(
  cert: ParsedCertificate,
  cas: readonly ParsedCertificate[],
  libvirt: boolean,
): string | undefined {
  const dot = libvirt ? "." : "";
  const issuer = cas.find((ca) => isIssuer(cert, ca));
  let reason: string | undefined;
  if (issuer === undefined) {
    reason = `The certificate hasn't got a known issuer${dot}`;
  } else {
    const f = facts(issuer);
    const badExt = (c: ParsedCertificate) =>
      c.extensions.some((e) => e.critical && !GNUTLS_SUPPORTED_EXTS.has(e.oid));
    if (
      f.ca !== true ||
      (f.keyUsage !== undefined && !f.keyUsage.has("keyCertSign")) ||
      !verifiesWith(cert, issuer) ||
      badExt(issuer) ||
      badExt(cert)
    ) {
      reason = `The certificate is not trusted${dot}`;
    }
  }
  if (INSECURE_CERT_SIGNATURES.has(cert.signatureAlgorithm) && !isIssuer(cert, cert)) {
    reason = "The certificate uses an insecure algorithm";
  }
  return reason;
}

/** gnutls:str.c:692-705 hostname_compare_ascii: ASCII case-insensitive equality. */
function compareAscii(certName: string, hostname: string): boolean {
  return certName.length === hostname.length && certName.toUpperCase() === hostname.toUpperCase();
}

const isPrint = (s: string) => /^[\x20-\x7e]*$/.test(s);

/**
 * gnutls:str.c:719-758 _gnutls_hostname_compare: a leading `*` is a wildcard when the name has two dots
 * or more after it and does not end in a dot; it matches a (part of a) single label.
 */
function hostnameCompare(certName: string, hostname: string): boolean {
  if (!isPrint(certName)) return certName === hostname;
  if (!certName.startsWith("*")) return compareAscii(certName, hostname);
  const last = certName.lastIndexOf(".");
  if (last < 0 || certName.indexOf(".") === last || last === certName.length - 1) return false;
  const rest = certName.slice(1);
  for (let i = 0; ; i++) {
    if (compareAscii(rest, hostname.slice(i))) return true;
    if (i >= hostname.length || hostname[i] === ".") return false;
  }
}

/** gnutls:x509/verify.c:1091-1146 _gnutls_check_key_purpose(cert, TLS_WWW_SERVER, 0): no EKU, serverAuth or any. */
function allowsServerPurpose(f: CertFacts): boolean {
  return f.purposes.length === 0 || f.purposes.some((o) => o === OID.serverAuth || o === KP_ANY);
}

/**
 * `gnutls_x509_crt_check_hostname` as GnuTLS 3.7.9 does it (gnutls:x509/hostname-verify.c:152-290): an IPv4
 * text, or any text with a `:` that parses as IPv6, is compared with iPAddress SANs only; a name (IDNA-mapped)
 * with dNSName SANs (those with a NUL or non-printable character skipped), and with the single CN only when
 * there is no dNSName or iPAddress SAN and the purposes allow a TLS server.
 */
export function gnutlsCheckHostname(certPem: string, hostname: string): boolean {
  return checkHostname(parseCertificatePem(certPem, "certPem"), hostname);
}

function checkHostname(cert: ParsedCertificate, hostname: string): boolean {
  const sanExt = findExtension(cert, OID.subjectAltName);
  const sans = sanExt ? readSubjectAltName(sanExt.value) : undefined;
  if (isIPv4(hostname) || (hostname.includes(":") && isIPv6(hostname))) {
    const want = normalizeIpAddress(hostname);
    return (sans?.ipAddresses ?? []).includes(want);
  }
  // gnutls_idna_map (IDNA2008 via libidn2); Node's UTS #46 mapping gives the same A-labels for ordinary names.
  const mapped = isPrint(hostname) ? hostname : domainToASCII(hostname) || hostname;
  const dnsNames = sans?.dnsNames ?? [];
  for (const name of dnsNames) {
    if (name.includes("\u0000") || !isPrint(name)) continue;
    if (hostnameCompare(name, mapped)) return true;
  }
  const haveIp = (sans?.ipAddresses.length ?? 0) > 0;
  if (dnsNames.length > 0 || haveIp || !allowsServerPurpose(facts(cert))) return false;
  const cns = nameFromAsn1(cert.subject).filter((a) => a.type === "CN");
  if (cns.length !== 1) return false;
  const cn = cns[0].value;
  if (cn.includes("\u0000") || !isPrint(cn)) return false;
  return hostnameCompare(cn, mapped);
}

/** One element of a glob: any run (`*`), one character (`?`, or a bracket set), or one literal character. */
type GlobToken = { star: true } | { one: (c: string) => boolean };

/**
 * Matches tokens against text (by code point) in O(|tokens| x |text|): on a mismatch, the last `*` takes one
 * more character. One backtrack point suffices for `*`/`?`/sets (a later `*` subsumes earlier choices), so a
 * hostile pattern like `******x` cannot take exponential time as a backtracking regular expression would.
 */
function globMatch(tokens: readonly GlobToken[], text: string): boolean {
  const t = [...text];
  let ti = 0;
  let pi = 0;
  let starP = -1;
  let starT = 0;
  while (ti < t.length) {
    const tok = tokens[pi];
    if (tok !== undefined && "star" in tok) {
      starP = pi++;
      starT = ti;
    } else if (tok !== undefined && tok.one(t[ti])) {
      pi++;
      ti++;
    } else if (starP >= 0) {
      pi = starP + 1;
      ti = ++starT;
    } else return false;
  }
  while (pi < tokens.length && "star" in tokens[pi]) pi++;
  return pi === tokens.length;
}

/** GLib's `g_pattern_match_simple` (libvirt's DN list, virnettlscontext.c:358): `*` any run, `?` one character, nothing else special. */
export function gPatternMatchSimple(pattern: string, text: string): boolean {
  const tokens: GlobToken[] = [...pattern].map((c) =>
    c === "*" ? { star: true as const } : c === "?" ? { one: () => true } : { one: (x: string) => x === c },
  );
  return globMatch(tokens, text);
}

/** POSIX `fnmatch(pattern, text, 0)` (QEMU's authz-list glob rules): `*`, `?`, bracket expressions with `!`/`^` and ranges, `\` escapes. */
export function fnmatch(pattern: string, text: string): boolean {
  const chars = [...pattern];
  const tokens: GlobToken[] = [];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === "*") tokens.push({ star: true });
    else if (c === "?") tokens.push({ one: () => true });
    else if (c === "\\" && i + 1 < chars.length) {
      const lit = chars[++i];
      tokens.push({ one: (x) => x === lit });
    } else if (c === "[") {
      let j = i + 1;
      let negate = false;
      if (chars[j] === "!" || chars[j] === "^") {
        negate = true;
        j++;
      }
      const singles: string[] = [];
      const ranges: [string, string][] = [];
      let first = true;
      while (j < chars.length && (chars[j] !== "]" || first)) {
        first = false;
        let d = chars[j];
        if (d === "\\" && j + 1 < chars.length) d = chars[++j];
        if (chars[j + 1] === "-" && j + 2 < chars.length && chars[j + 2] !== "]") {
          let hi = chars[j + 2];
          j += 2;
          if (hi === "\\" && j + 1 < chars.length) hi = chars[++j];
          ranges.push([d, hi]);
        } else singles.push(d);
        j++;
      }
      if (j >= chars.length) tokens.push({ one: (x) => x === "[" });
      else {
        const inSet = (x: string) =>
          singles.includes(x) ||
          ranges.some(
            ([lo, hi]) => x.codePointAt(0)! >= lo.codePointAt(0)! && x.codePointAt(0)! <= hi.codePointAt(0)!,
          );
        tokens.push({ one: (x) => inSet(x) !== negate });
        i = j;
      }
    } else tokens.push({ one: (x) => x === c });
  }
  return globMatch(tokens, text);
}

/**
 * Predicts whether libvirt 9.0 or QEMU 7.2 (Debian bookworm) accepts TLS credentials: the start-up check
 * (virNetTLSContextSanityCheckCredentials / qcrypto_tls_creds_x509_sanity_check: the CA and certificate
 * files' limits, times, basicConstraints, keyUsage, extendedKeyUsage, the certificate against the CA file),
 * the key, what the peer checks at connection time (host names for a server, the DN allow list for a
 * client), and what GnuTLS refuses in the handshake (a keyUsage without digitalSignature). `reject` exactly
 * when the daemon refuses to start or the connection is refused; `warn` when it logs a warning and works.
 * Versions differ: plain upstream QEMU 7.2.0 still required keyEncipherment for a critical keyUsage;
 * Debian's 7.2 (7.2.22 backport) and newer QEMU do not; libvirt 9.0 does.
 */
export function checkTlsCredentials(args: CheckTlsCredentialsArgs): TlsCredentialsVerdict {
  checkArgs(args);
  const { consumer, role } = args;
  const libvirt = consumer === "libvirt";
  const isServer = role === "server";
  const files = { ...defaultFiles(consumer, role), ...(args.files ?? {}) };
  const nowSeconds = Math.floor((args.now ?? new Date()).getTime() / 1000);
  const p = new Problems();

  // The certificate file: virNetTLSContextLoadCertFromFile reads at most 64 KiB (virnettlscontext.c:489,
  // virfile.c:1492-1534: EOVERFLOW) and imports the first PEM certificate only (:495, tlscredsx509.c:397).
  let leaf: ParsedCertificate | undefined;
  const certBlocks = gnutlsPemCertificates(args.certPem);
  if (libvirt && Buffer.byteLength(args.certPem, "utf8") > LIBVIRT_MAX_CERT_FILE_BYTES) {
    p.error(`Failed to read file '${files.cert}': Value too large for defined data type`);
  } else if (certBlocks.length === 0 || "malformed" in certBlocks[0]) {
    const reason =
      certBlocks.length === 0 ? "Base64 unexpected header error." : "ASN1 parser: Error in DER parsing.";
    p.error(
      libvirt
        ? `Unable to import ${role} certificate ${files.cert}`
        : `Unable to import ${role} certificate ${files.cert}: ${reason}`,
    );
  } else {
    leaf = certBlocks[0].cert;
  }

  const cas = readCaFile(p, libvirt, args.caCertPem, files.caCert);

  // Start-up checks in their order (virnettlscontext.c:562-573, tlscredsx509.c:490-510).
  if (leaf !== undefined) checkCert(p, consumer, leaf, files.cert, isServer, false, nowSeconds);
  for (const ca of cas) checkCert(p, consumer, ca, files.caCert, isServer, true, nowSeconds);
  if (leaf !== undefined && cas.length > 0) {
    const reason = verifyStatus(leaf, cas, libvirt);
    if (reason !== undefined) {
      p.error(`Our own certificate ${files.cert} failed validation against ${files.caCert}: ${reason}`);
      const extra = certBlocks.slice(1).filter((b) => "cert" in b && isIssuer(leaf, b.cert));
      if (extra.length > 0) {
        p.warn(
          `${files.cert} holds the issuing CA after the certificate, but only the first certificate of that file ` +
            `is checked: put intermediate CAs in ${files.caCert} (not a message of libvirt or QEMU)`,
        );
      }
    }
  }

  // The key: gnutls_certificate_set_x509_key_file (virnettlscontext.c:642-651, tlscredsx509.c:601-610) refuses
  // a key that is not the certificate's with GNUTLS_E_CERTIFICATE_KEY_MISMATCH (gnutls:errors.c:48).
  if (args.keyPem !== undefined && leaf !== undefined) {
    let reason: string | undefined;
    const keyPem = args.keyPem;
    const spki = keySpkis.get(digestKey(keyPem), () => {
      try {
        return spkiDer(loadPrivateKey(keyPem, "keyPem"));
      } catch (e) {
        return e as Error;
      }
    });
    if (spki instanceof Error) reason = `${spki.message} (GnuTLS's own reason is not predicted)`;
    else if (!spki.equals(leaf.spki)) reason = "The certificate and the given key do not match.";
    if (reason !== undefined) {
      p.error(
        libvirt
          ? `Unable to set x509 key and certificate: ${files.key}, ${files.cert}: ${reason}`
          : `Cannot load certificate '${files.cert}' & key '${files.key}': ${reason}`,
      );
    }
  }

  // Connection-time checks: reported even when start-up already fails, so every problem is listed at once.
  if (leaf !== undefined) {
    checkHandshake(p, consumer, leaf, certBlocks, role, files.cert, nowSeconds);
    if (isServer) {
      for (const name of args.serverNames ?? []) {
        if (!checkHostname(leaf, name)) {
          // virnettlscontext.c:389-395 (certFile is "[session]"), tlssession.c:369-374.
          p.error(
            libvirt
              ? `Certificate [session] owner does not match the hostname ${shownName(name)}`
              : `Certificate does not match the hostname ${shownName(name)}`,
          );
        }
      }
    } else if (args.allowedDnList !== undefined) {
      // The peer DN is gnutls_x509_crt_get_dn's text (virnettlscontext.c:1010, tlssession.c:343).
      const dn = compatDistinguishedName(nameFromAsn1(leaf.subject));
      if (libvirt && !args.allowedDnList.some((glob) => gPatternMatchSimple(glob, dn))) {
        // virNetTLSContextCheckCertDNACL, virnettlscontext.c:353-375. An empty list `[]` refuses everyone: it is
        // read as an empty, non-NULL array (virconf.c:922-936, remote_daemon_config.c:298).
        p.error(
          "Client's Distinguished Name is not on the list of allowed clients (tls_allowed_dn_list).  " +
            "Use 'virt-pki-query-dn clientcert.pem' to view the Distinguished Name field in the client " +
            "certificate, or run this daemon with --verbose option.",
        );
      } else if (!libvirt && !args.allowedDnList.some((glob) => fnmatch(glob, dn))) {
        // tlssession.c:354-366 with an authz-list of glob rules, policy deny (authz/list.c).
        p.error(`TLS x509 authz check for ${dn} is denied`);
      }
    }
  }
  return verdictOf(p);
}

/**
 * The CA file, read as libvirt and QEMU read it (virnettlscontext.c:524, tlscredsx509.c:449): libvirt reads at
 * most 64 KiB; at most 16 certificates are imported by gnutls_x509_crt_list_import without FAIL_IF_EXCEED, which
 * silently ignores the rest (gnutls:x509/x509.c:3972). Returns the imported certificates.
 */
function readCaFile(p: Problems, libvirt: boolean, caCertPem: string, file: string): ParsedCertificate[] {
  const caBlocks = gnutlsPemCertificates(caCertPem);
  if (libvirt && Buffer.byteLength(caCertPem, "utf8") > LIBVIRT_MAX_CERT_FILE_BYTES) {
    p.error(`Failed to read file '${file}': Value too large for defined data type`);
    return [];
  }
  if (caBlocks.length === 0 || caBlocks.slice(0, TLS_MAX_CA_CERTS).some((b) => "malformed" in b)) {
    p.error(`Unable to import CA certificate list ${file}`);
    return [];
  }
  if (caBlocks.length > TLS_MAX_CA_CERTS) {
    p.warn(
      `${file} holds ${caBlocks.length} certificates: only the first ${TLS_MAX_CA_CERTS} are checked ` +
        "at start-up and can verify this host's own certificate (not a message of libvirt or QEMU)",
    );
  }
  return caBlocks.slice(0, TLS_MAX_CA_CERTS).map((b) => (b as { cert: ParsedCertificate }).cert);
}

/** The arguments of {@link checkTlsCaFile}. */
export interface CheckTlsCaFileArgs {
  /** The CA file as it would be installed: one or more PEM certificates. */
  readonly caCertPem: string;
  /** Whose rules (they differ only in libvirt's 64 KiB file limit and its keyUsage warning). @default "libvirt" */
  readonly consumer?: TlsConsumer;
  /** The time to check at. @default now */
  readonly now?: Date;
  /**
   * Warn about every certificate that expires before this time (say, the next planned renewal): from its end on,
   * libvirtd and QEMU refuse to start with this file. @default no warning
   */
  readonly validUntil?: Date;
  /** What `validUntil` is, for the warning. @default "the time asked" */
  readonly validUntilReason?: string;
  /** The file name to print in messages. @default libvirt `/etc/pki/CA/cacert.pem`; QEMU `/etc/pki/qemu/ca-cert.pem` */
  readonly file?: string;
}

/**
 * The CA file's part of libvirt's and QEMU's start-up check, alone: what a CA brought from elsewhere (imported,
 * a parent, another stack's) must pass before anything it signs is installed. Its limits, and for every imported
 * certificate its times, basicConstraints CA:TRUE and keyUsage keyCertSign (virnettlscontext.c:566-573,
 * tlscredsx509.c:498-507), in the programs' words; plus, with `validUntil`, a warning for each certificate
 * ending before that time. Pure and offline.
 */
export function checkTlsCaFile(args: CheckTlsCaFileArgs): TlsCredentialsVerdict {
  if (args === null || typeof args !== "object") throw new PkiError("args", "expected an object");
  const consumer = args.consumer ?? "libvirt";
  if (consumer !== "libvirt" && consumer !== "qemu")
    throw new PkiError("consumer", `must be "libvirt" or "qemu", got ${quoteInput(consumer)}`);
  if (typeof args.caCertPem !== "string")
    throw new PkiError("caCertPem", `must be a PEM text, got ${typeof args.caCertPem}`);
  checkTextSize(args.caCertPem, "caCertPem", MAX_TRUST_BUNDLE_CHARS, "PEM text");
  for (const field of ["now", "validUntil"] as const) {
    const t: unknown = args[field];
    if (t !== undefined && (!(t instanceof Date) || Number.isNaN(t.getTime())))
      throw new PkiError(field, "must be a valid Date");
  }
  const file = args.file ?? defaultFiles(consumer, "server").caCert;
  const nowSeconds = Math.floor((args.now ?? new Date()).getTime() / 1000);
  const p = new Problems();
  const cas = readCaFile(p, consumer === "libvirt", args.caCertPem, file);
  for (const ca of cas) {
    if (!checkCert(p, consumer, ca, file, false, true, nowSeconds)) continue;
    if (args.validUntil !== undefined && ca.notAfter.getTime() < args.validUntil.getTime()) {
      const subject = shownName(compatDistinguishedName(nameFromAsn1(ca.subject))).replace(/^"(.*)"$/, "$1");
      p.warn(
        `The CA certificate ${subject} in ${file} expires at ${ca.notAfter.toISOString()}, before ` +
          `${args.validUntilReason ?? "the time asked"} (${args.validUntil.toISOString()}): from then on libvirtd ` +
          "and QEMU refuse to start with this CA file (not a message of libvirt or QEMU)",
      );
    }
  }
  return verdictOf(p);
}

/**
 * Refuses, with a `PkiError` on `<property>.certPem` (or `.chainPem`), an issuing CA that libvirt or QEMU would
 * refuse in their CA file now (see {@link checkTlsCaFile}): expired, not yet active, not a CA, keyUsage without
 * keyCertSign. Checked where a CA enters from elsewhere (an import, a parent, PEM given to a leaf or a CRL),
 * so nothing it signs reaches a host. (Its only warnings, a chain of more than 16 certificates or a
 * non-critical keyUsage without keyCertSign, are refused or irrelevant where it is used: `loadIssuer`.)
 */
export function checkIssuerAccepted(
  issuer: { certPem?: unknown; chainPem?: unknown },
  property: string,
  now: Date = new Date(),
): void {
  for (const field of ["certPem", "chainPem"] as const) {
    const pem = issuer[field];
    if (typeof pem !== "string" || pem === "") continue;
    const error = checkTlsCaFile({ caCertPem: pem, now }).problems.find((x) => x.severity === "error");
    if (error !== undefined) {
      throw new PkiError(`${property}.${field}`, `libvirt and QEMU would refuse this CA: ${error.message}`);
    }
  }
}

/** `reject` when any problem is an error, `warn` when there are only warnings, else `accept`. */
function verdictOf(p: Problems): TlsCredentialsVerdict {
  return {
    verdict: p.list.some((x) => x.severity === "error") ? "reject" : p.list.length > 0 ? "warn" : "accept",
    problems: p.list,
  };
}

/**
 * A name as the programs print it when it is a plain host name or address (printable, no spaces, at most 253
 * characters); anything else quoted and escaped by `quoteInput` (key material and long texts are not repeated),
 * so a value cannot forge log lines or leak a secret through a message.
 */
function shownName(name: string): string {
  return /^[\x21-\x7e]{1,253}$/.test(name) && !/["'\\]/.test(name) && !looksLikeKeyMaterial(name)
    ? name
    : quoteInput(name);
}

/** Longest name in `serverNames` or entry in `allowedDnList`, and most entries of either (far above any real use). */
const MAX_NAME_CHARS = 4096;
const MAX_NAMES = 4096;

/** Refuses arguments of the wrong type or size with a PkiError naming the field (texts are never echoed). */
function checkArgs(args: CheckTlsCredentialsArgs): void {
  if (args === null || typeof args !== "object") throw new PkiError("args", "expected an object");
  if (args.consumer !== "libvirt" && args.consumer !== "qemu")
    throw new PkiError("consumer", `must be "libvirt" or "qemu", got ${quoteInput(args.consumer)}`);
  if (args.role !== "server" && args.role !== "client")
    throw new PkiError("role", `must be "server" or "client", got ${quoteInput(args.role)}`);
  for (const field of ["caCertPem", "certPem", "keyPem"] as const) {
    const value: unknown = args[field];
    if (value === undefined && field === "keyPem") continue;
    if (typeof value !== "string") throw new PkiError(field, `must be a PEM text, got ${typeof value}`);
    checkTextSize(value, field, MAX_TRUST_BUNDLE_CHARS, "PEM text");
  }
  for (const field of ["serverNames", "allowedDnList"] as const) {
    const list: unknown = args[field];
    if (list !== undefined && (!Array.isArray(list) || list.some((x) => typeof x !== "string")))
      throw new PkiError(field, "must be a list of strings");
    if (Array.isArray(list)) {
      if (list.length > MAX_NAMES)
        throw new PkiError(field, `holds ${list.length} entries, more than ${MAX_NAMES}`);
      const long = (list as string[]).findIndex((x) => x.length > MAX_NAME_CHARS);
      if (long >= 0) throw new PkiError(`${field}[${long}]`, `is longer than ${MAX_NAME_CHARS} characters`);
    }
  }
  if (args.now !== undefined && (!(args.now instanceof Date) || Number.isNaN(args.now.getTime())))
    throw new PkiError("now", "must be a valid Date");
}

/**
 * What the start-up check passes but a connection never survives:
 * - GnuTLS refuses to sign the handshake with a certificate whose keyUsage is present, not empty, and lacks
 *   digitalSignature, critical or not (gnutls:tls-sig.c:43-70 `_gnutls_check_key_usage_for_sig`): a client
 *   never sends such a certificate (gnutls:auth/cert.c:213, :250), a TLS 1.3 server never selects it
 *   (auth/cert.c:1573), and an EC or EdDSA key has no key exchange without a signature at all.
 * - The peer checks the times of every certificate sent after the first (the rest of the certificate file)
 *   as CA certificates (virnettlscontext.c:1003, tlssession.c:323-336).
 */
function checkHandshake(
  p: Problems,
  consumer: TlsConsumer,
  leaf: ParsedCertificate,
  certBlocks: ReturnType<typeof gnutlsPemCertificates>,
  role: TlsRole,
  certFile: string,
  nowSeconds: number,
): void {
  const f = facts(leaf);
  // A critical keyUsage without digitalSignature is already refused at start-up, in the consumer's words.
  const usage = f.keyUsage;
  if (usage !== undefined && !f.keyUsageCritical && usage.size > 0 && !usage.has("digitalSignature")) {
    const type = leaf.publicKey.asymmetricKeyType ?? "unknown";
    const why =
      role === "client"
        ? "a TLS client must sign the handshake"
        : type === "rsa"
          ? "a TLS 1.3 server must sign the handshake, and libvirt and QEMU peers negotiate TLS 1.3"
          : `a ${type} key has no key exchange without a signature`;
    p.error(
      `Certificate ${certFile} usage does not permit digital signature, so no TLS handshake can complete: ` +
        `${why} (GnuTLS: Key usage violation in certificate has been detected.; not a message of libvirt or QEMU)`,
    );
  }
  for (const block of certBlocks.slice(1)) {
    if (!("cert" in block)) continue;
    const c = block.cert;
    const expired = Math.floor(c.notAfter.getTime() / 1000) < nowSeconds;
    const early = Math.floor(c.notBefore.getTime() / 1000) > nowSeconds;
    if (consumer === "libvirt") {
      if (expired) p.error("The CA certificate [session] has expired");
      else if (early) p.error("The CA certificate [session] is not yet active");
    } else if (expired) p.error("The certificate has expired");
    else if (early) p.error("The certificate is not yet activated");
  }
}
