/**
 * Reading certificates back: a summary of every field operators ask about, key/certificate matching
 * (Ganeti's X509_check_private_key), chain verification and host name checks. Host matching and
 * signature checks use Node's native `X509Certificate`.
 */
import { X509Certificate } from "node:crypto";
import { AltNames, normalizeIpAddress } from "./altnames";
import { fingerprintSha256 } from "./certificate";
import { PkiError } from "./errors";
import {
  KeyUsage,
  OID,
  readAuthorityKeyIdentifier,
  readBasicConstraints,
  readExtendedKeyUsage,
  readKeyUsage,
  readSubjectAltName,
  readSubjectKeyIdentifier,
} from "./extensions";
import { keyMatchesSpki } from "./issuer";
import { KeySpec, keySpecOf, loadPrivateKey } from "./keys";
import {
  compatDistinguishedName,
  nameFromAsn1,
  rfc4514DistinguishedName,
  Subject,
  attributesToSubject,
} from "./names";
import { MAX_TRUST_BUNDLE_CHARS } from "./limits";
import { findExtension, parseCertificateBundle, parseCertificatePem, ParsedCertificate } from "./x509";
import { quoteInput } from "./quote";

/** Everything `inspectCertificate` reports. */
export interface CertificateSummary extends AltNames {
  /** Subject DN, GnuTLS compat form (encoded order): what `tls_allowed_dn_list` and `virt-pki-query-dn` use. */
  readonly subjectDn: string;
  /** Subject DN, RFC 4514 form (reversed), as `certtool -i` prints it. */
  readonly subjectDnRfc4514: string;
  /** Subject as structured fields. */
  readonly subject: Subject;
  /** Issuer DN, compat form. */
  readonly issuerDn: string;
  /** Issuer DN, RFC 4514 form. */
  readonly issuerDnRfc4514: string;
  /** Serial number, lower-case hex. */
  readonly serialNumber: string;
  /** Start of validity, ISO 8601. */
  readonly notBefore: string;
  /** End of validity, ISO 8601. */
  readonly notAfter: string;
  /** keyUsage bits (empty when the extension is absent). */
  readonly keyUsages: KeyUsage[];
  /** Whether keyUsage is marked critical. */
  readonly keyUsageCritical: boolean;
  /** extendedKeyUsage purposes (`serverAuth`, `clientAuth`, or dotted OIDs). */
  readonly extendedKeyUsages: string[];
  /** basicConstraints CA flag. */
  readonly isCa: boolean;
  /** basicConstraints pathLenConstraint, when present. @default none: no pathLenConstraint (unlimited) */
  readonly pathLength?: number;
  /** subjectKeyIdentifier, hex. @default none: the certificate has no subjectKeyIdentifier */
  readonly subjectKeyIdentifier?: string;
  /** authorityKeyIdentifier keyIdentifier, hex. @default none: the certificate has no such keyIdentifier */
  readonly authorityKeyIdentifier?: string;
  /** SHA-256 fingerprint, `AB:CD:...`. */
  readonly fingerprintSha256: string;
  /** Subject key type and size. */
  readonly keySpec: KeySpec;
  /** Signature algorithm OID. */
  readonly signatureAlgorithm: string;
  /** Whether issuer and subject are the same name. */
  readonly selfIssued: boolean;
}

/** Summarises the first certificate in a PEM text. */
export function inspectCertificate(certPem: string, property = "certPem"): CertificateSummary {
  return summarize(parseCertificatePem(certPem, property));
}

function summarize(cert: ParsedCertificate): CertificateSummary {
  const subjectAttrs = nameFromAsn1(cert.subject);
  const issuerAttrs = nameFromAsn1(cert.issuer);
  const ext = (oid: string) => findExtension(cert, oid);
  const bc = ext(OID.basicConstraints);
  const constraints = bc ? readBasicConstraints(bc.value) : { ca: false, pathLength: undefined };
  const ku = ext(OID.keyUsage);
  const eku = ext(OID.extKeyUsage);
  const san = ext(OID.subjectAltName);
  const ski = ext(OID.subjectKeyIdentifier);
  const aki = ext(OID.authorityKeyIdentifier);
  const names = san
    ? readSubjectAltName(san.value)
    : { dnsNames: [], ipAddresses: [], emailAddresses: [], uris: [] };
  return {
    subjectDn: compatDistinguishedName(subjectAttrs),
    subjectDnRfc4514: rfc4514DistinguishedName(subjectAttrs),
    subject: attributesToSubject(subjectAttrs),
    issuerDn: compatDistinguishedName(issuerAttrs),
    issuerDnRfc4514: rfc4514DistinguishedName(issuerAttrs),
    serialNumber: cert.serialNumber,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    ...names,
    keyUsages: ku ? readKeyUsage(ku.value) : [],
    keyUsageCritical: ku ? ku.critical : false,
    extendedKeyUsages: eku ? readExtendedKeyUsage(eku.value) : [],
    isCa: constraints.ca,
    ...(constraints.pathLength !== undefined ? { pathLength: constraints.pathLength } : {}),
    ...(ski ? { subjectKeyIdentifier: readSubjectKeyIdentifier(ski.value) } : {}),
    ...(aki && readAuthorityKeyIdentifier(aki.value)
      ? { authorityKeyIdentifier: readAuthorityKeyIdentifier(aki.value) }
      : {}),
    fingerprintSha256: fingerprintSha256(cert.der),
    keySpec: keySpecOf(cert.publicKey, "certPem"),
    signatureAlgorithm: cert.signatureAlgorithm,
    selfIssued: cert.issuer && compatDistinguishedName(issuerAttrs) === compatDistinguishedName(subjectAttrs),
  };
}

/** Whether `keyPem` is the private key of the certificate (Ganeti's X509_check_private_key). */
export function certificateMatchesKey(certPem: string, keyPem: string): boolean {
  const cert = parseCertificatePem(certPem, "certPem");
  return keyMatchesSpki(loadPrivateKey(keyPem, "keyPem"), cert.spki);
}

/** The result of `verifyChain`. */
export interface ChainVerification {
  /** Whether the certificate chains to a trusted CA and every certificate is valid at `now`. */
  readonly ok: boolean;
  /** Why not, when not ok. @default none when ok */
  readonly reason?: string;
  /** Subject DNs from the certificate up to the trust anchor, when ok. */
  readonly path: string[];
}

const MAX_CHAIN_DEPTH = 8;

/**
 * Verifies that the first certificate of `certPem` chains to one of the CAs in `trustedPem`, through
 * any intermediates in `certPem` or `intermediatesPem`: signatures, issuer names, CA flags, path
 * lengths and validity at `now`. A quick check for programs; real consumers (openssl, GnuTLS) are the
 * final word and the tests use them.
 */
export function verifyChain(
  certPem: string,
  trustedPem: string,
  options: { intermediatesPem?: string; now?: Date } = {},
): ChainVerification {
  const now = options.now ?? new Date();
  const [leaf, ...rest] = parseCertificateBundle(certPem, "certPem").map((c) => new X509Certificate(c.der));
  const pool = [
    ...rest,
    ...(options.intermediatesPem
      ? parseCertificateBundle(options.intermediatesPem, "intermediatesPem")
      : []
    ).map((c) => new X509Certificate(c.der)),
  ];
  const anchors = parseCertificateBundle(trustedPem, "trustedPem", MAX_TRUST_BUNDLE_CHARS).map(
    (c) => new X509Certificate(c.der),
  );
  const path = [leaf];
  const valid = (c: X509Certificate) =>
    now.getTime() >= new Date(c.validFrom).getTime() && now.getTime() <= new Date(c.validTo).getTime();
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    const current = path[path.length - 1];
    if (!valid(current))
      return {
        ok: false,
        reason: `${current.subject.replace(/\n/g, ",")} is not valid at ${now.toISOString()}`,
        path: [],
      };
    const anchor = anchors.find((a) => current.checkIssued(a) && current.verify(a.publicKey));
    if (anchor) {
      if (!anchor.ca) return { ok: false, reason: "the trusted certificate is not a CA", path: [] };
      if (anchor.fingerprint256 !== current.fingerprint256 && !valid(anchor)) {
        return { ok: false, reason: "the trusted CA is not valid now", path: [] };
      }
      const fullPath = anchor.fingerprint256 === current.fingerprint256 ? path : [...path, anchor];
      const lengthError = checkPathLengths(fullPath);
      if (lengthError) return { ok: false, reason: lengthError, path: [] };
      return { ok: true, path: fullPath.map((c) => c.subject.replace(/\n/g, ",")) };
    }
    const next = pool.find((p) => current.checkIssued(p) && current.verify(p.publicKey) && !path.includes(p));
    if (!next)
      return { ok: false, reason: "no trusted CA or intermediate issued this certificate", path: [] };
    if (!next.ca) return { ok: false, reason: "an intermediate in the chain is not a CA", path: [] };
    path.push(next);
  }
  return { ok: false, reason: `the chain is longer than ${MAX_CHAIN_DEPTH}`, path: [] };
}

function checkPathLengths(path: X509Certificate[]): string | undefined {
  for (let i = 1; i < path.length; i++) {
    const info = inspectCertificate(path[i].toString());
    const casBelow = i - 1;
    if (info.pathLength !== undefined && casBelow > info.pathLength) {
      return `${info.subjectDn} allows ${info.pathLength} CA(s) below it, the chain has ${casBelow}`;
    }
  }
  return undefined;
}

/**
 * Whether the certificate is valid for `hostOrIp` the way GnuTLS's `gnutls_x509_crt_check_hostname`
 * (used by libvirt and QEMU clients) decides it: IPs against IP SANs, names against DNS SANs, and the
 * CN only when the certificate has no DNS SAN.
 */
export function matchesHost(certPem: string, hostOrIp: string): boolean {
  const cert = new X509Certificate(parseCertificatePem(certPem, "certPem").der);
  let ip: string | undefined;
  try {
    ip = normalizeIpAddress(hostOrIp);
  } catch {
    ip = undefined;
  }
  if (ip !== undefined) return cert.checkIP(ip) !== undefined;
  return (
    cert.checkHost(hostOrIp, { subject: "default", wildcards: true, partialWildcards: false }) !== undefined
  );
}

/** When renewal becomes due: `notAfter` minus the renewal window. */
export function renewAtFor(notAfter: string | Date, renewBeforeHours: number): Date {
  return new Date(new Date(notAfter).getTime() - renewBeforeHours * 3_600_000);
}

/** A renewal decision. */
export interface RenewalDecision {
  /** Whether the certificate should be re-issued now. */
  readonly due: boolean;
  /** When renewal becomes due: notAfter minus the renewal window, ISO 8601. */
  readonly renewAt: string;
  /** A sentence saying why it is or is not due, for previews and logs. */
  readonly reason: string;
}

/**
 * Decides whether a certificate is due for renewal at `now`: due once `now >= notAfter - renewBeforeHours`
 * (and when it has expired, or is not yet valid because it was issued for the future).
 */
export function renewal(
  cert: string | { notBefore: string | Date; notAfter: string | Date },
  now: Date,
  renewBeforeHours: number,
): RenewalDecision {
  if (typeof renewBeforeHours !== "number" || !Number.isFinite(renewBeforeHours) || renewBeforeHours < 0) {
    throw new PkiError("renewBeforeHours", `must be 0 or more hours, got ${quoteInput(renewBeforeHours)}`);
  }
  const info = typeof cert === "string" ? inspectCertificate(cert) : cert;
  const notAfter = new Date(info.notAfter);
  const notBefore = new Date(info.notBefore);
  const renewAt = renewAtFor(notAfter, renewBeforeHours);
  const at = renewAt.toISOString();
  if (now.getTime() >= notAfter.getTime()) {
    return { due: true, renewAt: at, reason: `expired at ${notAfter.toISOString()}` };
  }
  if (now.getTime() >= renewAt.getTime()) {
    return {
      due: true,
      renewAt: at,
      reason: `expires ${notAfter.toISOString()}, within the ${renewBeforeHours}h renewal window (due since ${at})`,
    };
  }
  if (now.getTime() < notBefore.getTime()) {
    return {
      due: true,
      renewAt: at,
      reason: `not valid until ${notBefore.toISOString()} (clock or issuance error)`,
    };
  }
  return { due: false, renewAt: at, reason: `valid until ${notAfter.toISOString()}; renewal due at ${at}` };
}
