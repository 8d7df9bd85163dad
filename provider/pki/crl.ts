/**
 * Certificate revocation lists (RFC 5280 v2). node-forge has no CRL writer, so the TBSCertList is
 * assembled here with forge's ASN.1 module and signed natively, like certificates.
 */
import * as forge from "node-forge";
import * as der from "./asn1";
import { PkiError } from "./errors";
import {
  authorityKeyIdentifier,
  extensionsFromAsn1,
  extensionsToAsn1,
  OID,
  readAuthorityKeyIdentifier,
} from "./extensions";
import { IssuerCredentials, loadIssuer } from "./issuer";
import { algorithmIdentifier, keySpecOf, signatureAlgorithmFor, signStructure } from "./keys";
import { compatDistinguishedName, nameFromAsn1 } from "./names";
import { normalizeSerial } from "./serial";
import { MAX_CRL_ENTRIES } from "./limits";
import { checkHours, wholeSeconds } from "./validity";
import { checkPublicPem } from "./x509";
import { quoteInput } from "./quote";

/** RFC 5280 CRLReason values by name (7 is unused in the standard). */
export const REVOCATION_REASONS = {
  /** 0: no reason given. */
  unspecified: 0,
  /** 1: the certificate's private key is known or suspected to be compromised. */
  keyCompromise: 1,
  /** 2: the issuing CA's key is known or suspected to be compromised. */
  cACompromise: 2,
  /** 3: the subject's name or other information in the certificate changed. */
  affiliationChanged: 3,
  /** 4: the certificate has been replaced by another. */
  superseded: 4,
  /** 5: the certificate is no longer needed for its purpose. */
  cessationOfOperation: 5,
  /** 6: suspended, not final (the CRL resource lifts it as soon as `revoked` no longer lists it). */
  certificateHold: 6,
  /** 8: for delta CRLs only: the entry (a held certificate's) is to be removed from the CRL. */
  removeFromCRL: 8,
  /** 9: a privilege the certificate granted has been withdrawn. */
  privilegeWithdrawn: 9,
  /** 10: an attribute authority is known or suspected to be compromised. */
  aACompromise: 10,
} as const;
/** A revocation reason name. */
export type RevocationReason = keyof typeof REVOCATION_REASONS;

/** One revoked certificate. */
export interface RevokedCertificate {
  /** Serial number (hex, colons allowed). */
  readonly serialNumber: string;
  /** When it was revoked. @default the CRL's thisUpdate */
  readonly revocationDate?: Date | string;
  /** Why. @default no reasonCode entry extension (unspecified) */
  readonly reason?: RevocationReason;
}

/** Default time to the next CRL update: 30 days, the same at every layer (resource, fleet, `pki`). */
export const DEFAULT_CRL_NEXT_UPDATE_HOURS = 720;

/** Default re-sign window: a CRL is re-signed once less than a third of its lifetime is left (240 h of 720). */
export function defaultCrlRenewBeforeHours(nextUpdateHours: number): number {
  return Math.round((nextUpdateHours / 3) * 100) / 100;
}

/** Arguments of `createCrl`. */
export interface CreateCrlArgs {
  /** The CA that signs the CRL (and issued the revoked certificates). */
  readonly issuer: IssuerCredentials;
  /** The revoked certificates. @default none (an empty CRL is still useful: it is what libvirt loads) */
  readonly revoked?: readonly RevokedCertificate[];
  /** CRL number (decimal). @default seconds since the Unix epoch at thisUpdate, so re-signing increases it */
  readonly crlNumber?: number;
  /** Issue time. @default now */
  readonly thisUpdate?: Date;
  /** Hours until nextUpdate. @default 720 (30 days, as the fleet) */
  readonly nextUpdateHours?: number;
  /** nextUpdate exactly (a resource's planned one); must be after thisUpdate. @default thisUpdate + nextUpdateHours */
  readonly nextUpdate?: Date | string;
}

/** A signed CRL. */
export interface Crl {
  /** The CRL, PEM (`X509 CRL`). */
  readonly crlPem: string;
  /** Its CRL number. */
  readonly crlNumber: number;
  /** thisUpdate, ISO 8601. */
  readonly thisUpdate: string;
  /** nextUpdate, ISO 8601. */
  readonly nextUpdate: string;
  /** Revoked serials, normalised hex, sorted. */
  readonly revokedSerials: string[];
}

/**
 * Throws unless `reason` is one of {@link REVOCATION_REASONS}' own names (`in` would also take
 * "toString" or "constructor", which encode as nonsense codes).
 */
export function checkRevocationReason(reason: unknown, property: string): asserts reason is RevocationReason {
  if (typeof reason !== "string" || !Object.hasOwn(REVOCATION_REASONS, reason)) {
    throw new PkiError(
      property,
      `unknown reason ${quoteInput(reason)}; use one of ${Object.keys(REVOCATION_REASONS).join(", ")}`,
    );
  }
}

/** Refuses a revocation list longer than `MAX_CRL_ENTRIES` (a CRL is signed, stored and installed whole). */
export function checkRevokedCount(revoked: unknown): void {
  if (Array.isArray(revoked) && revoked.length > MAX_CRL_ENTRIES) {
    throw new PkiError(
      "revoked",
      `lists ${revoked.length} certificates; at most ${MAX_CRL_ENTRIES} are accepted in one CRL`,
    );
  }
}

function toDate(value: Date | string, property: string): Date {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) throw new PkiError(property, `${quoteInput(value)} is not a date`);
  return d;
}

/** Creates and signs a v2 CRL with cRLNumber and authorityKeyIdentifier, and a reasonCode per entry when given. */
export function createCrl(args: CreateCrlArgs): Crl {
  const issuer = loadIssuer(args.issuer, "issuer");
  const thisUpdate = new Date(Math.floor((args.thisUpdate ?? new Date()).getTime() / 1000) * 1000);
  const hours = checkHours(args.nextUpdateHours ?? DEFAULT_CRL_NEXT_UPDATE_HOURS, "nextUpdateHours");
  // Whole seconds, as the CRL holds it.
  const nextUpdate = wholeSeconds(
    args.nextUpdate !== undefined
      ? toDate(args.nextUpdate, "nextUpdate")
      : new Date(thisUpdate.getTime() + Math.round(hours * 3_600_000)),
  );
  if (nextUpdate.getTime() <= thisUpdate.getTime()) {
    throw new PkiError("nextUpdate", `${nextUpdate.toISOString()} is not after thisUpdate`);
  }
  const crlNumber = args.crlNumber ?? Math.floor(thisUpdate.getTime() / 1000);
  if (!Number.isSafeInteger(crlNumber) || crlNumber < 0) {
    throw new PkiError("crlNumber", `must be a whole number of 0 or more, got ${crlNumber}`);
  }
  checkRevokedCount(args.revoked);
  const seen = new Set<string>();
  const entries = (args.revoked ?? []).map((r, i) => {
    const serial = normalizeSerial(r?.serialNumber, `revoked[${i}].serialNumber`);
    if (seen.has(serial))
      throw new PkiError(`revoked[${i}].serialNumber`, `serial ${serial} is listed twice`);
    seen.add(serial);
    if (r.reason !== undefined) checkRevocationReason(r.reason, `revoked[${i}].reason`);
    const date =
      r.revocationDate !== undefined ? toDate(r.revocationDate, `revoked[${i}].revocationDate`) : thisUpdate;
    return { serial, date, reason: r.reason };
  });
  entries.sort((a, b) => a.serial.length - b.serial.length || a.serial.localeCompare(b.serial));
  const entryNodes = entries.map((e) => {
    const items = [der.hexInt(e.serial), der.time(e.date)];
    if (e.reason !== undefined && e.reason !== "unspecified") {
      const code = forge.asn1.create(
        forge.asn1.Class.UNIVERSAL,
        forge.asn1.Type.ENUMERATED,
        false,
        String.fromCharCode(REVOCATION_REASONS[e.reason]),
      );
      items.push(extensionsToAsn1([{ oid: OID.reasonCode, critical: false, value: code }]));
    }
    return der.seq(items);
  });
  const alg = signatureAlgorithmFor(keySpecOf(issuer.key));
  const crlNumberNode = der.hexInt(crlNumber.toString(16));
  const tbs = der.seq([
    der.smallInt(1),
    algorithmIdentifier(alg),
    issuer.cert.subject,
    der.time(thisUpdate),
    der.time(nextUpdate),
    ...(entryNodes.length ? [der.seq(entryNodes)] : []),
    der.explicit(
      0,
      extensionsToAsn1([
        authorityKeyIdentifier(issuer.keyId),
        { oid: OID.cRLNumber, critical: false, value: crlNumberNode },
      ]),
    ),
  ]);
  return {
    crlPem: der.derToPem(signStructure(tbs, issuer.key), "X509 CRL"),
    crlNumber,
    thisUpdate: thisUpdate.toISOString(),
    nextUpdate: nextUpdate.toISOString(),
    revokedSerials: entries.map((e) => e.serial),
  };
}

/** What `inspectCrl` reads from a CRL. */
export interface CrlSummary {
  /** Issuer DN, compat form. */
  readonly issuerDn: string;
  /** thisUpdate, ISO 8601. */
  readonly thisUpdate: string;
  /** nextUpdate, ISO 8601 (undefined if absent). @default none: the CRL has no nextUpdate */
  readonly nextUpdate?: string;
  /** CRL number, if present. @default none: the CRL has no cRLNumber extension */
  readonly crlNumber?: number;
  /** Authority key identifier, hex, if present. @default none: the CRL has no authorityKeyIdentifier */
  readonly authorityKeyIdentifier?: string;
  /** Revoked serials with their dates and reason codes. */
  readonly revoked: {
    /** Serial number, hex. */
    serialNumber: string;
    /** Revocation date, ISO 8601. */
    revocationDate: string;
    /** The RFC 5280 reason code. @default none: the entry has no reasonCode extension (unspecified) */
    reasonCode?: number;
  }[];
}

/** Reads a PEM CRL (no signature check: use `openssl crl -verify` or `verifyCrl` for that). */
export function inspectCrl(pem: string, property = "crlPem"): CrlSummary {
  checkPublicPem(pem, property);
  try {
    const [tbs] = der.children(der.fromDer(der.pemToDer(pem, ["X509 CRL"], "CRL")));
    const parts = der.children(tbs);
    let i = parts[0].type === forge.asn1.Type.INTEGER ? 1 : 0;
    const issuer = parts[i + 1];
    const thisUpdate = der.readTime(parts[i + 2]);
    i += 3;
    let nextUpdate: Date | undefined;
    if (
      parts[i] &&
      (parts[i].type === forge.asn1.Type.UTCTIME || parts[i].type === forge.asn1.Type.GENERALIZEDTIME) &&
      parts[i].tagClass === forge.asn1.Class.UNIVERSAL
    ) {
      nextUpdate = der.readTime(parts[i]);
      i++;
    }
    const revoked: CrlSummary["revoked"] = [];
    if (
      parts[i] &&
      parts[i].tagClass === forge.asn1.Class.UNIVERSAL &&
      parts[i].type === forge.asn1.Type.SEQUENCE
    ) {
      for (const entry of der.children(parts[i])) {
        const [serial, date, exts] = der.children(entry);
        const reason = exts ? extensionsFromAsn1(exts).find((e) => e.oid === OID.reasonCode) : undefined;
        revoked.push({
          serialNumber: der.intHex(serial),
          revocationDate: der.readTime(date).toISOString(),
          ...(reason ? { reasonCode: (reason.value.value as string).charCodeAt(0) } : {}),
        });
      }
      i++;
    }
    let crlNumber: number | undefined;
    let aki: string | undefined;
    const extWrapper = parts[i];
    if (extWrapper && extWrapper.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC) {
      for (const ext of extensionsFromAsn1(der.children(extWrapper)[0])) {
        if (ext.oid === OID.cRLNumber) crlNumber = parseInt(der.intHex(ext.value), 16);
        if (ext.oid === OID.authorityKeyIdentifier) aki = readAuthorityKeyIdentifier(ext.value);
      }
    }
    return {
      issuerDn: compatDistinguishedName(nameFromAsn1(issuer)),
      thisUpdate: thisUpdate.toISOString(),
      ...(nextUpdate ? { nextUpdate: nextUpdate.toISOString() } : {}),
      ...(crlNumber !== undefined ? { crlNumber } : {}),
      ...(aki ? { authorityKeyIdentifier: aki } : {}),
      revoked,
    };
  } catch (e) {
    if (e instanceof PkiError) throw e;
    throw new PkiError(property, "expected a PEM CRL (-----BEGIN X509 CRL-----)");
  }
}
