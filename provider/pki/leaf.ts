/**
 * Leaf certificates for libvirt and QEMU endpoints: `server`, `client`, or the combined `server+client`
 * certificate QEMU's guide suggests for migration and NBD ("save them twice").
 */
import { isIP } from "node:net";
import * as der from "./asn1";
import { AltNames, hasAltNames, normalizeAltNames, normalizeDnsName, normalizeIpAddress } from "./altnames";
import { signCertificate } from "./certificate";
import { parseAndVerifyCsr, VerifiedCsr } from "./csr";
import { PkiError } from "./errors";
import {
  authorityKeyIdentifier,
  basicConstraints,
  ExtendedKeyUsage,
  Extension,
  extendedKeyUsage,
  KeyUsage,
  keyUsage,
  subjectAltName,
  subjectKeyIdentifier,
} from "./extensions";
import { IssuerCredentials, loadIssuer } from "./issuer";
import {
  DEFAULT_KEY_SPEC,
  generateEncodedKey,
  keyIdentifier,
  KeySpec,
  keySpecOf,
  loadPrivateKey,
  parseKeySpec,
  spkiDer,
  toPkcs8Pem,
} from "./keys";
import { attributesToSubject, checkDnListSubject, normalizeSubject, Subject, subjectToAsn1 } from "./names";
import { CertificateFacts, factsOf } from "./result";
import { newSerialNumber, refuseSerialArgument, refuseTemplateSerial } from "./serial";
import { parseCerttoolTemplate } from "./template";
import { checkHours, computeValidity, DEFAULT_LEAF_VALIDITY_HOURS } from "./validity";
import { parseCertificateDer } from "./x509";
import { quoteInput } from "./quote";

/** What a leaf certificate is for: TLS server, TLS client, or both in one certificate. */
export type LeafProfile = "server" | "client" | "server+client";

/** Every leaf profile. */
export const LEAF_PROFILES: readonly LeafProfile[] = ["server", "client", "server+client"];

/**
 * Arguments of `issueCertificate`: the issuing CA plus either structured fields or a certtool `template`.
 * The subject key comes from `keyPem`, a `csrPem`, or is generated (`keySpec`).
 */
export interface IssueCertificateArgs {
  /** The issuing CA. */
  readonly issuer: IssuerCredentials;
  /**
   * A certtool template (as in the libvirt and QEMU guides) instead of subject/names/profile.
   * @default none: the certificate is described by `subject`, the names and `profile`
   */
  readonly template?: string;
  /**
   * Subject DN. For servers the CN should be the host's FQDN.
   * @default none: required, unless a `template` is given or a `csrPem`, whose subject is then used
   */
  readonly subject?: Subject;
  /**
   * DNS subject alternative names. For servers the CN is added when missing.
   * @default none besides a server's CN; with `csrPem` and no subject, template or names, the CSR's
   */
  readonly dnsNames?: readonly string[];
  /**
   * IPv4/IPv6 subject alternative names.
   * @default none; with `csrPem` and no subject, template or names, the CSR's
   */
  readonly ipAddresses?: readonly string[];
  /**
   * E-mail subject alternative names.
   * @default none; with `csrPem` and no subject, template or names, the CSR's
   */
  readonly emailAddresses?: readonly string[];
  /**
   * URI subject alternative names.
   * @default none; with `csrPem` and no subject, template or names, the CSR's
   */
  readonly uris?: readonly string[];
  /** What the certificate is for. @default "server", or what the template's tls_www_* lines say */
  readonly profile?: LeafProfile;
  /** Type of a newly generated key. @default "rsa-3072" */
  readonly keySpec?: KeySpec;
  /**
   * Certify this existing private key instead of generating one.
   * @default none: a key of `keySpec` is generated (give at most one of `keyPem`, `csrPem`, `keySpec`)
   */
  readonly keyPem?: string;
  /**
   * Certify the key in this CSR (its signature is verified); no private key is returned.
   * @default none: the key is `keyPem`, or generated
   */
  readonly csrPem?: string;
  /** Lifetime in hours. @default 8760 (365 days, certtool's default), or the template's expiration_days */
  readonly validityHours?: number;
  /** End with the CA instead of failing when the certificate would outlive it. @default false */
  readonly truncateToIssuer?: boolean;
  /** Policy: refuse validity longer than this many hours (Ganeti: 168). @default no limit */
  readonly maxValidityHours?: number;
  /** Issuance time (a past time issues an already-expired certificate, for tests). @default now */
  readonly now?: Date;
  /** End exactly here (a resource's planned end), bounded like the default end. @default now + validityHours */
  readonly notAfter?: Date | string;
}

/** An issued leaf certificate. */
export interface IssuedCertificate extends CertificateFacts {
  /**
   * The private key, PKCS#8 PEM; absent when a CSR was signed. Secret.
   * @default none when a CSR was signed
   */
  readonly keyPem?: string;
  /** The issuing CA's certificate (PEM), what `cacert.pem` / `ca-cert.pem` hold. */
  readonly caCertPem: string;
  /** The issuer's chain (issuer first, up to the root), PEM. */
  readonly caChainPem: string;
  /** The profile it was issued with. */
  readonly profile: LeafProfile;
  /** Its alternative names as written. */
  readonly altNames: AltNames;
  /** The DN exactly as libvirt's `tls_allowed_dn_list` matches it (same as `subjectDn`). */
  readonly distinguishedName: string;
}

/** The leaf's request after template/CSR/structured inputs are merged and normalised. */
export interface LeafRequest {
  /** The normalised subject; it has a commonName. */
  readonly subject: Subject;
  /** The normalised alternative names, a server's CN among them. */
  readonly altNames: AltNames;
  /** What the certificate is for. */
  readonly profile: LeafProfile;
  /** Its lifetime in hours. */
  readonly validityHours: number;
}

const LEAF_FORBIDDEN_USAGES: readonly KeyUsage[] = ["keyCertSign", "cRLSign"];

function profileFromUsages(ekus: readonly ExtendedKeyUsage[]): LeafProfile | undefined {
  const s = ekus.includes("serverAuth");
  const c = ekus.includes("clientAuth");
  return s && c ? "server+client" : s ? "server" : c ? "client" : undefined;
}

/**
 * Merges and validates the structured or template inputs of a leaf into one normalised request.
 * `subjectProperty` names the input a structured subject came from in errors (`csrPem.subject` when it was
 * taken from a CSR). @default "subject"
 */
export function resolveLeafRequest(
  args: Omit<IssueCertificateArgs, "issuer">,
  subjectProperty = "subject",
): LeafRequest {
  const structured = ["subject", "dnsNames", "ipAddresses", "emailAddresses", "uris"] as const;
  refuseSerialArgument(args);
  if (args.template !== undefined) {
    const clash = structured.find((k) => args[k] !== undefined);
    if (clash) throw new PkiError(clash, `give either template or ${clash}, not both`);
    const t = parseCerttoolTemplate(args.template);
    refuseTemplateSerial(t.serialNumber);
    if (t.ca)
      throw new PkiError("template", "this template describes a CA (`ca`); use createCertificateAuthority");
    const bad = t.keyUsages.find((u) => LEAF_FORBIDDEN_USAGES.includes(u));
    if (bad)
      throw new PkiError(
        "template",
        `a leaf certificate cannot have ${bad} (remove cert_signing_key/crl_signing_key)`,
      );
    const profile = args.profile ?? profileFromUsages(t.extendedKeyUsages);
    if (!profile)
      throw new PkiError(
        "template",
        "say what the certificate is for: add tls_www_server and/or tls_www_client",
      );
    const hours =
      args.validityHours ??
      checkHours((t.expirationDays ?? 365) * 24, "template", true, "expiration_days * 24");
    return finish(t.subject, t, profile, hours, "template");
  }
  return finish(
    args.subject,
    args,
    args.profile ?? "server",
    args.validityHours ?? DEFAULT_LEAF_VALIDITY_HOURS,
    subjectProperty,
  );
}

/**
 * The request of a leaf that certifies a CSR's key: the CSR's subject when neither subject nor template
 * is given, and its requested alternative names when no names are given either.
 */
export function resolveCsrLeafRequest(
  args: Omit<IssueCertificateArgs, "issuer" | "csrPem">,
  csr: VerifiedCsr,
): LeafRequest {
  const noSubject = args.template === undefined && args.subject === undefined;
  const noNames = (["dnsNames", "ipAddresses", "emailAddresses", "uris"] as const).every(
    (k) => args[k] === undefined,
  );
  // The subject came from the CSR: errors name it (csrPem.subject.<field>), not a subject input never given.
  return resolveLeafRequest(
    {
      ...args,
      subject: noSubject ? attributesToSubject(csr.subjectAttributes) : args.subject,
      ...(noSubject && noNames ? csr.altNames : {}),
    },
    noSubject ? "csrPem.subject" : "subject",
  );
}

function finish(
  rawSubject: Subject | undefined,
  names: Partial<Record<keyof AltNames, readonly string[]>>,
  profile: LeafProfile,
  validityHours: number,
  subjectProperty: string,
): LeafRequest {
  if (!LEAF_PROFILES.includes(profile)) {
    throw new PkiError("profile", `unknown profile ${quoteInput(profile)}; use ${LEAF_PROFILES.join(", ")}`);
  }
  const subject = normalizeSubject(rawSubject, subjectProperty);
  if (!subject.commonName)
    throw new PkiError(`${subjectProperty}.commonName`, "a leaf certificate needs a commonName");
  // Clients' and hosts' DNs both go in tls_allowed_dn_list (hosts for migration).
  checkDnListSubject(subject, subjectProperty);
  let altNames = normalizeAltNames(names as Partial<AltNames>);
  if (profile !== "client") altNames = withCommonName(altNames, subject.commonName, subjectProperty);
  return { subject, altNames, profile, validityHours };
}

/** Servers get their CN as a SAN too: GnuTLS ignores the CN once any DNS SAN exists. */
function withCommonName(names: AltNames, cn: string, subjectProperty: string): AltNames {
  if (isIP(cn.replace(/^\[|\]$/g, ""))) {
    return normalizeAltNames({ ...names, ipAddresses: [...names.ipAddresses, normalizeIpAddress(cn)] });
  }
  let dns: string;
  try {
    dns = normalizeDnsName(cn, `${subjectProperty}.commonName`);
  } catch {
    throw new PkiError(
      `${subjectProperty}.commonName`,
      `${quoteInput(cn)} is not a host name; a server certificate's CN must be the name clients connect to`,
    );
  }
  return normalizeAltNames({ ...names, dnsNames: [...names.dnsNames, dns] });
}

/**
 * keyUsage for a leaf. RSA: digitalSignature + keyEncipherment, critical (what certtool writes and what
 * libvirt and QEMU 7 require of a critical keyUsage). ECDSA/Ed25519: digitalSignature only, as RFC 5480
 * and RFC 8410 allow, and NOT critical, because libvirt (and QEMU before 10.1) reject a critical keyUsage
 * without keyEncipherment but only warn about a non-critical one.
 */
export function leafKeyUsage(spec: KeySpec): Extension {
  return spec.startsWith("rsa")
    ? keyUsage(["digitalSignature", "keyEncipherment"], true)
    : keyUsage(["digitalSignature"], false);
}

function profileEkus(profile: LeafProfile): ExtendedKeyUsage[] {
  return profile === "server"
    ? ["serverAuth"]
    : profile === "client"
      ? ["clientAuth"]
      : ["serverAuth", "clientAuth"];
}

/** Issues a leaf certificate signed by `issuer`. Async because it may generate a key (off the event loop). */
export async function issueCertificate(args: IssueCertificateArgs): Promise<IssuedCertificate> {
  const issuer = loadIssuer(args.issuer, "issuer");
  const keySources = (["keyPem", "csrPem", "keySpec"] as const).filter((k) => args[k] !== undefined);
  if (keySources.length > 1) {
    throw new PkiError(
      keySources[1],
      `give only one of keyPem, csrPem and keySpec (got ${keySources.join(" and ")})`,
    );
  }
  let spki: Buffer;
  let keyPem: string | undefined;
  let spec: KeySpec;
  let request: LeafRequest;
  if (args.csrPem !== undefined) {
    const csr = parseAndVerifyCsr(args.csrPem, "csrPem");
    request = resolveCsrLeafRequest(args, csr);
    spki = csr.spki;
    spec = keySpecOf(csr.publicKey, "csrPem");
  } else {
    request = resolveLeafRequest(args);
    if (args.keyPem !== undefined) {
      const key = loadPrivateKey(args.keyPem, "keyPem");
      spki = spkiDer(key);
      spec = keySpecOf(key);
      keyPem = toPkcs8Pem(key);
    } else {
      spec = parseKeySpec(args.keySpec ?? DEFAULT_KEY_SPEC);
      ({ keyPem, spki } = await generateEncodedKey(spec));
    }
  }
  const now = args.now ?? new Date();
  const validity = computeValidity({
    validityHours: request.validityHours,
    now,
    issuerNotAfter: issuer.chainNotAfter,
    truncateToIssuer: args.truncateToIssuer,
    maxValidityHours: args.maxValidityHours,
    notAfter: args.notAfter !== undefined ? new Date(args.notAfter) : undefined,
  });
  const extensions: Extension[] = [
    basicConstraints(false),
    leafKeyUsage(spec),
    extendedKeyUsage(profileEkus(request.profile)),
    ...(hasAltNames(request.altNames) ? [subjectAltName(request.altNames)] : []),
    subjectKeyIdentifier(keyIdentifier(spki)),
    authorityKeyIdentifier(issuer.keyId),
  ];
  const certDer = signCertificate(
    {
      serialNumber: newSerialNumber(now),
      issuer: issuer.cert.subject,
      subject: subjectToAsn1(request.subject),
      validity,
      spki,
      extensions,
    },
    issuer.key,
  );
  const facts = factsOf(parseCertificateDer(certDer), spec);
  return {
    ...facts,
    ...(keyPem !== undefined ? { keyPem } : {}),
    caCertPem: der.derToPem(issuer.cert.der, "CERTIFICATE"),
    caChainPem: issuer.chainPem,
    profile: request.profile,
    altNames: request.altNames,
    distinguishedName: facts.subjectDn,
  };
}
