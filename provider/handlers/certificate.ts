/** Check/diff/create/update/read/delete for ServerCertificate and ClientCertificate. Pure; see common.ts. */
import { PkiError } from "../pki/errors";
import { isoSecond } from "../pki/revocations";
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
  isKnown,
  issuerChanged,
  pick,
  renewAtOf,
  renewalDue,
  STATE_VERSION,
  storedRenewBefore,
  upgradeState,
  withRenewalWindow,
} from "./common";

/** Default renewal window of a leaf: 30 days before it expires. */
export const DEFAULT_LEAF_RENEW_BEFORE_HOURS = 720;

/** A leaf certificate resource's inputs after check. `profile` is set by the resource class. */
export interface CertificateInputs {
  ca: { certPem: string; keyPem: string; chainPem?: string };
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
}

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
  "truncateToIssuer",
  "maxValidityHours",
];

function normalize(news: CertificateInputs): CertificateInputs {
  const names =
    isKnown(news.dnsNames) && isKnown(news.ipAddresses)
      ? normalizeAltNames({ dnsNames: news.dnsNames ?? [], ipAddresses: news.ipAddresses ?? [] })
      : undefined;
  return compact({
    ca: news.ca,
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
  }) as CertificateInputs;
}

/** An empty list as create sees it after normalisation: absent. */
function noneIfEmpty<T>(list: T[] | undefined): T[] | undefined {
  return Array.isArray(list) && list.length === 0 ? undefined : list;
}

/** Validates and normalises leaf inputs; unknown values (preview) are left unparsed. */
export function check(_olds: Record<string, unknown>, news: CertificateInputs): CheckResult {
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
        if (!isKnown(news.validityHours) || !isKnown(news.maxValidityHours)) return;
        if (!isKnown(news.truncateToIssuer)) return;
        // A bad number is reported by its own check above, once.
        if (news.validityHours !== undefined && !isValidHours(news.validityHours)) return;
        if (news.maxValidityHours !== undefined && !isValidHours(news.maxValidityHours)) return;
        computeValidity({
          validityHours: requestedHours ?? news.validityHours ?? DEFAULT_LEAF_VALIDITY_HOURS,
          issuerNotAfter: issuer.chainNotAfter,
          truncateToIssuer: news.truncateToIssuer,
          maxValidityHours: news.maxValidityHours,
        });
      },
    ],
    news,
  );
  return failures.length ? { failures } : { inputs: normalize(news) as unknown as Record<string, unknown> };
}

function toState(
  inputs: CertificateInputs,
  cert: IssuedCertificate,
  revokedAt?: string,
): Record<string, unknown> {
  const { ca, ...rest } = inputs;
  void ca; // the CA's key never enters this resource's state
  const renewBeforeHours = inputs.renewBeforeHours ?? DEFAULT_LEAF_RENEW_BEFORE_HOURS;
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
    renewAt: renewAtOf(cert.notAfter, renewBeforeHours),
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

/** Issues the certificate. With a CSR no private key exists in state. */
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
  });
  return {
    id: cert.serialNumber,
    outs: toState(inputs, cert, inputs.revoked ? isoSecond(new Date(), "revokedAt") : undefined),
  };
}

/**
 * Replacement (create-before-delete) when the certificate's content changes, when the issuing CA's
 * certificate changed (renewed or rotated: listed as `ca`), or when renewal is due (listed as `notAfter`).
 * A new renewal window alone is an in-place update. A revoked certificate (`revoked: true`) is never
 * replaced, whatever changed: a new serial would not be in the CRL, and the revoked one would be issued
 * again in effect. Its changed re-issue inputs are not shown as a change. Removing the mark re-issues.
 */
export function diff(_id: string, oldState: Record<string, unknown>, news: CertificateInputs): DiffResult {
  const olds = upgradeState(oldState, "Certificate");
  const n = normalize(news) as unknown as Record<string, unknown>;
  const updates = changedKeys(olds, n, ["renewBeforeHours", "autoRenew", "revoked"]);
  if (n.revoked === true) return { changes: updates.length > 0 };
  const replaces = changedKeys(olds, n, REISSUE_KEYS);
  if (issuerChanged(olds.caCertPem, news.ca)) replaces.push("ca");
  const renewBefore =
    typeof n.renewBeforeHours === "number" ? n.renewBeforeHours : DEFAULT_LEAF_RENEW_BEFORE_HOURS;
  if (n.autoRenew !== false && renewalDue(olds.notBefore, olds.notAfter, renewBefore))
    replaces.push("notAfter");
  return { changes: replaces.length + updates.length > 0, ...(replaces.length ? { replaces } : {}) };
}

/**
 * In-place update: the renewal window, autoRenew or the revoked mark changed. Marking it revoked records
 * `revokedAt` (once: the original date stays when it is marked again); un-marking clears it.
 */
export async function update(
  _id: string,
  oldState: Record<string, unknown>,
  news: CertificateInputs,
): Promise<{ outs: Record<string, unknown> }> {
  const olds = upgradeState(oldState, "Certificate");
  const outs = withRenewalWindow(olds, news.renewBeforeHours ?? DEFAULT_LEAF_RENEW_BEFORE_HOURS);
  if (news.autoRenew === false) outs.autoRenew = false;
  else delete outs.autoRenew;
  if (news.revoked === true) {
    outs.revoked = true;
    outs.revokedAt = typeof olds.revokedAt === "string" ? olds.revokedAt : isoSecond(new Date(), "revokedAt");
  } else {
    delete outs.revoked;
    delete outs.revokedAt;
  }
  return { outs };
}

/** Refresh: the state is the truth; renewAt is recomputed. */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown>; inputs: Record<string, unknown> }> {
  const s = upgradeState(state, "Certificate");
  // Inputs as stored; the issuing CA is represented by its certificate (its key is never in this state).
  const inputs = {
    ...pick(s, [...REISSUE_KEYS, "renewBeforeHours", "autoRenew", "revoked"]),
    ca: { certPem: s.caCertPem },
  };
  return { id, props: withRenewalWindow(s, storedRenewBefore(s, DEFAULT_LEAF_RENEW_BEFORE_HOURS)), inputs };
}

/** Nothing outside the state to remove; the version is checked. */
export async function remove(_id: string, state: Record<string, unknown>): Promise<void> {
  upgradeState(state, "Certificate");
}
