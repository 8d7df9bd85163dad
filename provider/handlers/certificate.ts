/** Check/diff/create/update/read/delete for ServerCertificate and ClientCertificate. Pure; see common.ts. */
import { PkiError } from "../pki/errors";
import { isoSecond } from "../pki/revocations";
import { checkIssuerAccepted } from "../pki/acceptance";
import { loadIssuer } from "../pki/issuer";
import { parseKeySpec } from "../pki/keys";
import {
  issueCertificate,
  IssuedCertificate,
  LeafProfile,
  resolveCsrLeafRequest,
  resolveLeafRequest,
} from "../pki/leaf";
import { normalizeAltNames } from "../pki/altnames";
import { normalizeSubject, Subject } from "../pki/names";
import { parseAndVerifyCsr } from "../pki/csr";
import { checkHours, computeValidity, DEFAULT_LEAF_VALIDITY_HOURS, isValidHours } from "../pki/validity";
import {
  changedKeys,
  CheckResult,
  checkRenewWindow,
  collectFailures,
  compact,
  DiffResult,
  endChanged,
  isKnown,
  issuerChanged,
  planEnd,
  renewalDue,
  STATE_VERSION,
  upgradeState,
  issuerOf,
} from "./common";

/** Default renewal window of a leaf: 30 days before it expires. */
export const DEFAULT_LEAF_RENEW_BEFORE_HOURS = 720;

/** A leaf certificate resource's inputs after check. `profile` is set by the resource class. */
export interface CertificateInputs {
  ca: { certPem: string; keyPem: string; chainPem?: string };
  /** Set by check from `ca` (see `issuerOf`): what a preview shows when the CA changes. */
  issuer?: string;
  profile: LeafProfile;
  subject?: Subject;
  template?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  keySpec?: string;
  csrPem?: string;
  validityHours?: number;
  renewBeforeHours?: number;
  /** false: never re-issued for renewal (a revoked certificate must not come back with a new serial). */
  autoRenew?: boolean;
  /** true: the certificate is revoked and frozen: no input, CA or renewal ever re-issues it. */
  revoked?: boolean;
  truncateToIssuer?: boolean;
  maxValidityHours?: number;
  /**
   * The planned end, ISO 8601: set by check (never by the program), issued exactly by create. A due
   * renewal shows as a change of this input. Absent in inputs checked against a version-1 state.
   */
  notAfter?: string;
}

/** Options of a check: the time it plans at, and whether its caller re-issues the certificate anyway. */
export interface LeafCheckOptions {
  /** The current time. @default now */
  readonly now?: Date;
  /** The certificate is re-issued whatever this check finds (HostIdentities: its roles changed). @default false */
  readonly reissue?: boolean;
}

/** Renewal policy: inputs that never change the certificate, so never stored among its outputs. */
// truncateToIssuer is policy too: it decides the end of the NEXT issuance (the stored certificate's end is
// already within its CA's, or check would have refused it), so changing it re-issues nothing.
const POLICY_KEYS = ["renewBeforeHours", "autoRenew", "truncateToIssuer"] as const;

/** Inputs whose change re-issues the certificate. */
const REISSUE_KEYS = [
  "profile",
  "subject",
  "template",
  "dnsNames",
  "ipAddresses",
  "keySpec",
  "csrPem",
  "validityHours",
  "maxValidityHours",
];

function normalize(news: CertificateInputs): CertificateInputs {
  const names =
    isKnown(news.dnsNames) && isKnown(news.ipAddresses)
      ? normalizeAltNames({ dnsNames: news.dnsNames ?? [], ipAddresses: news.ipAddresses ?? [] })
      : undefined;
  return compact({
    ca: news.ca,
    issuer: issuerOf(news.ca),
    profile: news.profile,
    subject:
      news.subject !== undefined && isKnown(news.subject) ? normalizeSubject(news.subject) : news.subject,
    template: news.template,
    dnsNames: names ? (names.dnsNames.length ? names.dnsNames : undefined) : news.dnsNames,
    ipAddresses: names ? (names.ipAddresses.length ? names.ipAddresses : undefined) : news.ipAddresses,
    keySpec:
      news.csrPem !== undefined
        ? undefined
        : isKnown(news.keySpec)
          ? parseKeySpec(news.keySpec)
          : news.keySpec,
    csrPem: news.csrPem,
    validityHours: news.validityHours ?? DEFAULT_LEAF_VALIDITY_HOURS,
    renewBeforeHours: news.renewBeforeHours ?? DEFAULT_LEAF_RENEW_BEFORE_HOURS,
    autoRenew: news.autoRenew === false ? false : undefined,
    revoked: news.revoked === true ? true : undefined,
    truncateToIssuer: news.truncateToIssuer,
    maxValidityHours: news.maxValidityHours,
    notAfter: news.notAfter,
  }) as CertificateInputs;
}

/** An empty list as create sees it after normalisation: absent. */
function noneIfEmpty<T>(list: T[] | undefined): T[] | undefined {
  return Array.isArray(list) && list.length === 0 ? undefined : list;
}

/**
 * Validates and normalises leaf inputs (unknown values in a preview are left unparsed), and plans the
 * certificate's end (`notAfter`, see `planEnd`): kept while renewal is not due, or the certificate is
 * revoked or `autoRenew: false`; fresh (now + validity, bounded by the CA's chain as create bounds it)
 * when due or when the certificate is re-issued anyway (a re-issue input or the CA changed).
 */
export function check(
  olds: Record<string, unknown>,
  news: CertificateInputs,
  options: LeafCheckOptions = {},
): CheckResult {
  const now = options.now ?? new Date();
  let fresh: string | undefined; // the end create would give it now, once everything it needs is known
  const structuredKnown = [news.subject, news.template, news.dnsNames, news.ipAddresses, news.csrPem].every(
    isKnown,
  );
  let requestedHours: number | undefined; // the validity the request resolves to (a template's expiration_days)
  const failures = collectFailures(
    [
      () => {
        if (!news.ca)
          throw new PkiError(
            "ca",
            "the issuing CA is required: a CertificateAuthority or { certPem, keyPem }",
          );
      },
      () => {
        if (news.csrPem !== undefined && news.keySpec !== undefined) {
          throw new PkiError("keySpec", "a CSR brings its own key; remove keySpec or csrPem");
        }
      },
      () => {
        if (!structuredKnown) return;
        // The request exactly as create resolves it (with a CSR: its subject and names when none are given).
        const args = {
          profile: news.profile,
          template: news.template,
          subject: news.subject,
          dnsNames: noneIfEmpty(news.dnsNames),
          ipAddresses: noneIfEmpty(news.ipAddresses),
          validityHours: news.validityHours,
        };
        requestedHours = (
          news.csrPem !== undefined
            ? resolveCsrLeafRequest(args, parseAndVerifyCsr(news.csrPem, "csrPem"))
            : resolveLeafRequest(args)
        ).validityHours;
      },
      () => isKnown(news.keySpec) && news.keySpec !== undefined && parseKeySpec(news.keySpec),
      () =>
        isKnown(news.validityHours) &&
        news.validityHours !== undefined &&
        checkHours(news.validityHours, "validityHours"),
      () =>
        isKnown(news.renewBeforeHours) &&
        news.renewBeforeHours !== undefined &&
        checkHours(news.renewBeforeHours, "renewBeforeHours", false),
      () =>
        isKnown(news.maxValidityHours) &&
        news.maxValidityHours !== undefined &&
        checkHours(news.maxValidityHours, "maxValidityHours"),
      () =>
        checkRenewWindow(
          news.validityHours ?? DEFAULT_LEAF_VALIDITY_HOURS,
          news.renewBeforeHours ?? DEFAULT_LEAF_RENEW_BEFORE_HOURS,
        ),
      () => {
        if (!news.ca || !isKnown(news.ca)) return;
        const issuer = loadIssuer(news.ca, "ca");
        // A revoked certificate is frozen: never issued again, so its CA (kept by ignoreChanges after a
        // rotation, in no CA file any more) is not asked about: it may well have expired.
        if (news.revoked !== true) checkIssuerAccepted(news.ca, "ca", now);
        if (!isKnown(news.validityHours) || !isKnown(news.maxValidityHours)) return;
        if (!isKnown(news.truncateToIssuer)) return;
        // A bad number is reported by its own check above, once.
        if (news.validityHours !== undefined && !isValidHours(news.validityHours)) return;
        if (news.maxValidityHours !== undefined && !isValidHours(news.maxValidityHours)) return;
        const validity = computeValidity({
          validityHours: requestedHours ?? news.validityHours ?? DEFAULT_LEAF_VALIDITY_HOURS,
          now,
          issuerNotAfter: issuer.chainNotAfter,
          truncateToIssuer: news.truncateToIssuer,
          maxValidityHours: news.maxValidityHours,
        });
        if (structuredKnown && isKnown(news.profile)) fresh = validity.notAfter.toISOString();
      },
    ],
    news,
  );
  if (failures.length) return { failures };
  const inputs = normalize({ ...news, notAfter: undefined });
  const oldCa = (olds.ca as { certPem?: unknown } | undefined)?.certPem;
  const notAfter = planEnd({
    olds,
    key: "notAfter",
    renewBeforeHours: inputs.renewBeforeHours,
    frozen: inputs.revoked === true || inputs.autoRenew === false,
    reissue:
      options.reissue === true ||
      changedKeys(olds, inputs as unknown as Record<string, unknown>, REISSUE_KEYS).length > 0 ||
      issuerChanged(oldCa, news.ca),
    now,
    fresh: () => fresh,
  });
  return { inputs: compact({ ...inputs, notAfter }) as Record<string, unknown> };
}

function toState(
  inputs: CertificateInputs,
  cert: IssuedCertificate,
  revokedAt?: string,
): Record<string, unknown> {
  const { ca, ...rest } = inputs;
  void ca; // the CA's key never enters this resource's state
  for (const k of POLICY_KEYS) delete (rest as Record<string, unknown>)[k]; // policy: see diff
  return compact({
    __stateVersion: STATE_VERSION,
    ...rest,
    certPem: cert.certPem,
    keyPem: cert.keyPem,
    caCertPem: cert.caCertPem,
    caChainPem: cert.caChainPem,
    serialNumber: cert.serialNumber,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprintSha256: cert.fingerprintSha256,
    subjectDn: cert.subjectDn,
    distinguishedName: cert.distinguishedName,
    issuerDn: cert.issuerDn,
    keySpec: inputs.csrPem !== undefined ? undefined : cert.keySpec,
    certificateDnsNames: cert.altNames.dnsNames,
    certificateIpAddresses: cert.altNames.ipAddresses,
    revokedAt,
  });
}

/**
 * Issues the certificate, ending exactly at the planned `notAfter` when given. With a CSR no private key
 * exists in state.
 */
export async function create(raw: CertificateInputs): Promise<{ id: string; outs: Record<string, unknown> }> {
  const inputs = normalize(raw);
  const cert = await issueCertificate({
    issuer: inputs.ca,
    profile: inputs.profile,
    subject: inputs.subject,
    template: inputs.template,
    dnsNames: inputs.dnsNames,
    ipAddresses: inputs.ipAddresses,
    keySpec: inputs.csrPem === undefined && inputs.keySpec ? parseKeySpec(inputs.keySpec) : undefined,
    csrPem: inputs.csrPem,
    validityHours: inputs.validityHours,
    truncateToIssuer: inputs.truncateToIssuer,
    maxValidityHours: inputs.maxValidityHours,
    notAfter: inputs.notAfter,
  });
  return {
    id: cert.serialNumber,
    outs: toState(inputs, cert, inputs.revoked ? isoSecond(new Date(), "revokedAt") : undefined),
  };
}

/**
 * Replacement (create-before-delete) when the certificate's content changes, when the issuing CA's
 * certificate changed (renewed or rotated: listed as `ca`), or when check planned another end than the
 * certificate's (renewal: listed as `notAfter` when it is the only cause; inputs checked against a
 * version-1 state carry no planned end, and then renewal is decided from the stored dates as before).
 * Renewal policy (`renewBeforeHours`,
 * `autoRenew`, `truncateToIssuer`) alone is no change: a "same" step stores it, and no output goes unknown in a preview. A
 * revoked certificate (`revoked: true`) is never replaced, whatever changed: a new serial would not be in
 * the CRL, and the revoked one would be issued again in effect. Marking or un-marking it is the one
 * in-place update (it records or clears `revokedAt`); in a preview that update shows the certificate's
 * outputs as unknown, like any update of a dynamic resource. Removing the mark with another changed
 * re-issue input re-issues it.
 */
export function diff(_id: string, oldState: Record<string, unknown>, news: CertificateInputs): DiffResult {
  const olds = upgradeState(oldState, "Certificate");
  const n = normalize(news) as unknown as Record<string, unknown>;
  const marked = (olds.revoked === true) !== (n.revoked === true);
  if (n.revoked === true) return { changes: marked };
  const replaces = changedKeys(olds, n, REISSUE_KEYS);
  if (issuerChanged(olds.caCertPem, news.ca)) replaces.push("ca");
  const renew =
    endChanged(n.notAfter, olds.notAfter) ??
    (n.autoRenew !== false &&
      renewalDue(
        olds.notBefore,
        olds.notAfter,
        typeof n.renewBeforeHours === "number" ? n.renewBeforeHours : DEFAULT_LEAF_RENEW_BEFORE_HOURS,
      ));
  // Listed when renewal is the cause; with another cause the new end is its consequence (shown as an input).
  if (renew && replaces.length === 0) replaces.push("notAfter");
  return { changes: replaces.length > 0 || marked, ...(replaces.length ? { replaces } : {}) };
}

/**
 * In-place update: the revoked mark changed. Marking it revoked records `revokedAt` (once: the original
 * date stays when it is marked again); un-marking clears it. Nothing else of the state moves.
 */
export async function update(
  _id: string,
  oldState: Record<string, unknown>,
  news: CertificateInputs,
): Promise<{ outs: Record<string, unknown> }> {
  const outs = { ...upgradeState(oldState, "Certificate") };
  if (news.revoked === true) {
    outs.revoked = true;
    outs.revokedAt = typeof outs.revokedAt === "string" ? outs.revokedAt : isoSecond(new Date(), "revokedAt");
  } else {
    delete outs.revoked;
    delete outs.revokedAt;
  }
  return { outs };
}

/**
 * Refresh: nothing lives outside the state, so the state (upgraded) is the truth. No inputs are returned:
 * the engine then keeps the stored inputs (rebuilt ones would lack the CA's key and the policy), so a
 * refresh followed by an up is a no-op.
 */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown> }> {
  return { id, props: upgradeState(state, "Certificate") };
}

/** Nothing outside the state to remove; the version is checked. */
export async function remove(_id: string, state: Record<string, unknown>): Promise<void> {
  upgradeState(state, "Certificate");
}
