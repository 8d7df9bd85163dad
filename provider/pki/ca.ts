/** Certificate authorities: self-signed roots, intermediates under a parent CA, and imported CAs. */
import * as der from "./asn1";
import { signCertificate } from "./certificate";
import { PkiError } from "./errors";
import {
  authorityKeyIdentifier,
  basicConstraints,
  Extension,
  keyUsage,
  OID,
  readBasicConstraints,
  subjectKeyIdentifier,
} from "./extensions";
import { IssuerCredentials, LoadedIssuer, loadIssuer } from "./issuer";
import {
  DEFAULT_KEY_SPEC,
  generateKey,
  keyIdentifier,
  KeySpec,
  keySpecOf,
  loadPrivateKey,
  parseKeySpec,
  spkiDer,
  toPkcs8Pem,
} from "./keys";
import { normalizeSubject, Subject, subjectToAsn1 } from "./names";
import { CertificateFacts, factsOf } from "./result";
import { newSerialNumber, refuseSerialArgument, refuseTemplateSerial } from "./serial";
import { parseCerttoolTemplate } from "./template";
import { checkHours, computeValidity, DEFAULT_CA_VALIDITY_HOURS, Validity } from "./validity";
import { findExtension, parseCertificateDer } from "./x509";
import { quoteInput } from "./quote";

/** Arguments of `createCertificateAuthority`. Give `subject` or a certtool `template`, not both. */
export interface CreateCertificateAuthorityArgs {
  /**
   * The CA's subject, e.g. `{ commonName: "Libvirt Project" }`.
   * @default none: give `subject` or `template`
   */
  readonly subject?: Subject;
  /**
   * A certtool template (`cn = ...`, `ca`, `cert_signing_key`) instead of `subject`; it must contain `ca`.
   * @default none: the CA is described by `subject`
   */
  readonly template?: string;
  /** Type of a newly generated key. @default "rsa-3072" */
  readonly keySpec?: KeySpec;
  /**
   * Use this existing private key instead of generating one.
   * @default none: a key of `keySpec` is generated
   */
  readonly keyPem?: string;
  /** Lifetime in hours. @default 87600 (10 years), or the template's expiration_days */
  readonly validityHours?: number;
  /** basicConstraints pathLenConstraint: how many intermediate CAs may follow. @default 0 */
  readonly pathLength?: number;
  /** Sign this CA with a parent CA (an intermediate) instead of self-signing. @default self-signed */
  readonly parent?: IssuerCredentials;
  /** With `parent`: end with the parent instead of failing when the CA would outlive it. @default false */
  readonly truncateToIssuer?: boolean;
  /** Policy: refuse validity longer than this many hours. @default no limit */
  readonly maxValidityHours?: number;
  /** Issuance time. @default now */
  readonly now?: Date;
  /** End exactly here (the resource's planned end), bounded like the default end. @default now + validityHours */
  readonly notAfter?: Date | string;
}

/** A CA: certificate, key and chain, plus its facts. */
export interface CertificateAuthority extends CertificateFacts {
  /** The CA private key, PKCS#8 PEM. Secret. */
  readonly keyPem: string;
  /** This CA's certificate followed by its parents' up to the root, PEM. */
  readonly chainPem: string;
  /**
   * The path length constraint written into the certificate (undefined: unlimited).
   * @default none: unlimited (an imported CA without a pathLenConstraint)
   */
  readonly pathLength?: number;
}

/** Throws unless `value` is a basicConstraints path length, 0 to 16. */
export function checkPathLength(value: unknown, property: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 16) {
    throw new PkiError(property, `must be a whole number from 0 to 16, got ${quoteInput(value)}`);
  }
  return value;
}

/** A CA request after its inputs are merged, range-checked and checked against its parent. */
export interface CaRequest {
  /** The CA's subject. */
  readonly subject: Subject;
  /** The basicConstraints path length to write. */
  readonly pathLength: number;
  /** The loaded parent, for an intermediate. @default none: a self-signed root */
  readonly parent?: LoadedIssuer;
  /** The validity window it gets. */
  readonly validity: Validity;
}

/**
 * Everything `createCertificateAuthority` checks before it makes a key and signs: subject or template,
 * serial policy, path length (also against the parent's), validity (against policy and the parent's
 * chain). The resource's check runs this too, so what passes check does not fail in create.
 */
export function resolveCaRequest(
  args: Omit<CreateCertificateAuthorityArgs, "keyPem" | "keySpec">,
): CaRequest {
  let subject: Subject;
  let validityHours = args.validityHours;
  let pathLength = args.pathLength;
  refuseSerialArgument(args);
  if (args.template !== undefined) {
    if (args.subject !== undefined) {
      throw new PkiError("template", "give either template or subject, not both");
    }
    const t = parseCerttoolTemplate(args.template);
    refuseTemplateSerial(t.serialNumber);
    if (!t.ca) throw new PkiError("template", "a CA template must contain the `ca` keyword");
    if (t.dnsNames.length || t.ipAddresses.length || t.extendedKeyUsages.length) {
      throw new PkiError(
        "template",
        "a CA template must not contain dns_name, ip_address or tls_www_* lines",
      );
    }
    subject = normalizeSubject(t.subject, "template");
    if (validityHours === undefined && t.expirationDays !== undefined) {
      validityHours = checkHours(t.expirationDays * 24, "template", true, "expiration_days * 24");
    }
    pathLength ??= t.pathLength;
  } else {
    subject = normalizeSubject(args.subject, "subject");
  }
  pathLength = checkPathLength(pathLength ?? 0, "pathLength");
  const parent = args.parent ? loadIssuer(args.parent, "parent") : undefined;
  if (parent && parent.pathLength !== undefined && parent.pathLength <= pathLength) {
    throw new PkiError(
      "pathLength",
      parent.pathLength === 0
        ? "the parent CA allows 0 more CA levels below it (its pathLength is 0), so it cannot sign this CA; " +
            "give the parent a larger pathLength, or issue from a CA that allows intermediates"
        : `the parent CA allows ${parent.pathLength} more CA level(s) below it, so this CA's pathLength must be below ${parent.pathLength}`,
    );
  }
  const validity = computeValidity({
    validityHours: validityHours ?? DEFAULT_CA_VALIDITY_HOURS,
    now: args.now,
    issuerNotAfter: parent?.chainNotAfter,
    truncateToIssuer: args.truncateToIssuer,
    maxValidityHours: args.maxValidityHours,
    notAfter: args.notAfter !== undefined ? new Date(args.notAfter) : undefined,
  });
  return { subject, pathLength, parent, validity };
}

/** Creates a CA: self-signed root, or an intermediate signed by `parent`. The key never leaves as anything but PEM. */
export async function createCertificateAuthority(
  args: CreateCertificateAuthorityArgs,
): Promise<CertificateAuthority> {
  const now = args.now ?? new Date();
  const { subject, pathLength, parent, validity } = resolveCaRequest({ ...args, now });
  const key =
    args.keyPem !== undefined
      ? loadPrivateKey(args.keyPem, "keyPem")
      : (await generateKey(parseKeySpec(args.keySpec ?? DEFAULT_KEY_SPEC))).privateKey;
  const spki = spkiDer(key);
  const subjectName = subjectToAsn1(subject);
  const ownKeyId = keyIdentifier(spki);
  const extensions: Extension[] = [
    basicConstraints(true, pathLength),
    keyUsage(["keyCertSign", "cRLSign"], true),
    subjectKeyIdentifier(ownKeyId),
    authorityKeyIdentifier(parent ? parent.keyId : ownKeyId),
  ];
  const certDer = signCertificate(
    {
      serialNumber: newSerialNumber(now),
      issuer: parent ? parent.cert.subject : subjectName,
      subject: subjectName,
      validity,
      spki,
      extensions,
    },
    parent ? parent.key : key,
  );
  const cert = parseCertificateDer(certDer);
  const certPem = der.derToPem(certDer, "CERTIFICATE");
  return {
    ...factsOf(cert, keySpecOf(key)),
    keyPem: toPkcs8Pem(key),
    chainPem: certPem + (parent ? parent.chainPem : ""),
    pathLength,
  };
}

/** Arguments of `importCertificateAuthority`. */
export interface ImportCertificateAuthorityArgs {
  /** The CA certificate, optionally followed by its chain to the root (PEM). */
  readonly certPem: string;
  /** Its private key (PEM). Secret. */
  readonly keyPem: string;
}

/** Takes an existing CA (e.g. made by certtool, or an intermediate of a corporate CA) after checking cert and key match. */
export function importCertificateAuthority(args: ImportCertificateAuthorityArgs): CertificateAuthority {
  const issuer = loadIssuer(args, "import");
  const bc = findExtension(issuer.cert, OID.basicConstraints);
  return {
    ...factsOf(issuer.cert, keySpecOf(issuer.key)),
    keyPem: toPkcs8Pem(issuer.key),
    chainPem: issuer.chainPem,
    pathLength: bc ? readBasicConstraints(bc.value).pathLength : undefined,
  };
}
