/** Check/diff/create/update/read/delete for the CertificateAuthority resource. Pure; see common.ts. */
import {
  checkPathLength,
  createCertificateAuthority,
  importCertificateAuthority,
  resolveCaRequest,
  CertificateAuthority as CaResult,
} from "../pki/ca";
import { PkiError } from "../pki/errors";
import { loadIssuer } from "../pki/issuer";
import { parseKeySpec } from "../pki/keys";
import { normalizeSubject, Subject } from "../pki/names";
import { parseCerttoolTemplate } from "../pki/template";
import { checkHours, DEFAULT_CA_VALIDITY_HOURS } from "../pki/validity";
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

/** Default renewal window of a CA: 30 days before it expires. */
export const DEFAULT_CA_RENEW_BEFORE_HOURS = 720;

/** PEM credentials of another CA (a parent, or one to import). */
export interface CaCredentialsInput {
  certPem: string;
  keyPem: string;
  chainPem?: string;
}

/** The CA resource's inputs after check. */
export interface CaInputs {
  subject?: Subject;
  template?: string;
  keySpec?: string;
  validityHours?: number;
  renewBeforeHours?: number;
  pathLength?: number;
  parent?: CaCredentialsInput;
  import?: CaCredentialsInput;
  maxValidityHours?: number;
  truncateToIssuer?: boolean;
}

/** Inputs whose change re-issues the CA. */
const REISSUE_KEYS = [
  "subject",
  "template",
  "keySpec",
  "validityHours",
  "pathLength",
  "maxValidityHours",
  "truncateToIssuer",
];

function normalize(news: CaInputs): CaInputs {
  const imported = news.import !== undefined;
  return compact({
    subject:
      news.subject !== undefined && isKnown(news.subject) ? normalizeSubject(news.subject) : news.subject,
    template: news.template,
    keySpec: imported ? undefined : isKnown(news.keySpec) ? parseKeySpec(news.keySpec) : news.keySpec,
    validityHours: imported ? undefined : (news.validityHours ?? DEFAULT_CA_VALIDITY_HOURS),
    renewBeforeHours: news.renewBeforeHours ?? DEFAULT_CA_RENEW_BEFORE_HOURS,
    pathLength: imported ? undefined : (news.pathLength ?? 0),
    parent: news.parent,
    import: news.import,
    maxValidityHours: news.maxValidityHours,
    truncateToIssuer: news.truncateToIssuer,
  });
}

/** Validates and normalises CA inputs; unknown values (preview) are left unparsed. */
export function check(_olds: Record<string, unknown>, news: CaInputs): CheckResult {
  // With every input create reads known, create's own checks run (resolveCaRequest) instead of the
  // per-input ones, so what passes check does not fail in create and nothing is reported twice.
  const whole =
    news.import === undefined &&
    (news.subject === undefined) !== (news.template === undefined) &&
    [
      news.subject,
      news.template,
      news.validityHours,
      news.pathLength,
      news.parent,
      news.maxValidityHours,
      news.truncateToIssuer,
    ].every(isKnown);
  // Either create's own checks (resolveCaRequest), or, while some of their inputs are unknown, the
  // per-input checks of the inputs already known.
  const requestChecks = whole
    ? [
        () =>
          resolveCaRequest({
            subject: news.subject,
            template: news.template,
            validityHours: news.validityHours,
            pathLength: news.pathLength,
            parent: news.parent,
            truncateToIssuer: news.truncateToIssuer,
            maxValidityHours: news.maxValidityHours,
          }),
      ]
    : [
        () => isKnown(news.subject) && news.subject !== undefined && normalizeSubject(news.subject),
        () => {
          if (typeof news.template === "string" && isKnown(news.template)) {
            if (!parseCerttoolTemplate(news.template).ca) {
              throw new PkiError("template", "a CA template must contain the `ca` keyword");
            }
          }
        },
        () =>
          isKnown(news.validityHours) &&
          news.validityHours !== undefined &&
          checkHours(news.validityHours, "validityHours"),
        () =>
          news.pathLength !== undefined &&
          isKnown(news.pathLength) &&
          checkPathLength(news.pathLength, "pathLength"),
        () =>
          isKnown(news.maxValidityHours) &&
          news.maxValidityHours !== undefined &&
          checkHours(news.maxValidityHours, "maxValidityHours"),
        () => news.parent !== undefined && isKnown(news.parent) && loadIssuer(news.parent, "parent"),
      ];
  const failures = collectFailures(
    [
      () => {
        if (news.import !== undefined) {
          const clash = (
            ["subject", "template", "keySpec", "parent", "validityHours", "pathLength"] as const
          ).find((k) => news[k] !== undefined && news[k] !== null);
          if (clash) throw new PkiError(clash, `an imported CA is used as it is; remove ${clash} or import`);
          if (isKnown(news.import)) importCertificateAuthority(news.import);
          return;
        }
        if (news.subject !== undefined && news.template !== undefined) {
          throw new PkiError("template", "give either template or subject, not both");
        }
        if (news.subject === undefined && news.template === undefined) {
          throw new PkiError(
            "subject",
            'a CA needs a subject (e.g. { commonName: "Libvirt Project" }) or a certtool template',
          );
        }
      },
      () => isKnown(news.keySpec) && parseKeySpec(news.keySpec),
      () =>
        isKnown(news.renewBeforeHours) &&
        news.renewBeforeHours !== undefined &&
        checkHours(news.renewBeforeHours, "renewBeforeHours", false),
      () =>
        checkRenewWindow(
          news.validityHours ?? DEFAULT_CA_VALIDITY_HOURS,
          news.renewBeforeHours ?? DEFAULT_CA_RENEW_BEFORE_HOURS,
        ),
      ...requestChecks,
    ],
    news,
  );
  return failures.length ? { failures } : { inputs: normalize(news) as Record<string, unknown> };
}

/** The stored state: inputs without any other CA's key, plus the CA's certificate, key and facts. */
function toState(inputs: CaInputs, ca: CaResult): Record<string, unknown> {
  const renewBeforeHours = inputs.renewBeforeHours ?? DEFAULT_CA_RENEW_BEFORE_HOURS;
  const { parent, import: imported, ...rest } = inputs;
  return compact({
    __stateVersion: STATE_VERSION,
    ...rest,
    parentCertPem: parent?.certPem,
    importCertPem: imported?.certPem,
    certPem: ca.certPem,
    keyPem: ca.keyPem,
    chainPem: ca.chainPem,
    serialNumber: ca.serialNumber,
    notBefore: ca.notBefore,
    notAfter: ca.notAfter,
    renewAt: renewAtOf(ca.notAfter, renewBeforeHours),
    fingerprintSha256: ca.fingerprintSha256,
    subjectDn: ca.subjectDn,
    issuerDn: ca.issuerDn,
    keySpec: ca.keySpec,
    pathLength: ca.pathLength,
  });
}

/** Creates (or imports) the CA. */
export async function create(raw: CaInputs): Promise<{ id: string; outs: Record<string, unknown> }> {
  const inputs = normalize(raw);
  const ca = inputs.import
    ? importCertificateAuthority(inputs.import)
    : await createCertificateAuthority({
        subject: inputs.subject,
        template: inputs.template,
        keySpec: inputs.keySpec ? parseKeySpec(inputs.keySpec) : undefined,
        validityHours: inputs.validityHours,
        pathLength: inputs.pathLength,
        parent: inputs.parent,
        truncateToIssuer: inputs.truncateToIssuer,
        maxValidityHours: inputs.maxValidityHours,
      });
  return { id: ca.serialNumber, outs: toState(inputs, ca) };
}

/**
 * Replacement when anything that shapes the certificate changed, when the parent CA's certificate
 * changed (renewed or rotated), or when the CA is inside its renewal window (listed as `notAfter`).
 * A new renewal window alone is an in-place update.
 */
export function diff(_id: string, oldState: Record<string, unknown>, news: CaInputs): DiffResult {
  const olds = upgradeState(oldState, "CertificateAuthority");
  const n = normalize(news) as Record<string, unknown>;
  const imported = olds.importCertPem !== undefined || news.import !== undefined;
  const replaces = imported
    ? issuerChanged(olds.importCertPem, news.import)
      ? ["import"]
      : []
    : changedKeys(olds, n, REISSUE_KEYS);
  if (!imported && issuerChanged(olds.parentCertPem, news.parent)) replaces.push("parent");
  const renewBefore =
    typeof n.renewBeforeHours === "number" ? n.renewBeforeHours : DEFAULT_CA_RENEW_BEFORE_HOURS;
  if (!imported && renewalDue(olds.notBefore, olds.notAfter, renewBefore)) replaces.push("notAfter");
  const updates = changedKeys(olds, n, ["renewBeforeHours"]);
  return { changes: replaces.length + updates.length > 0, ...(replaces.length ? { replaces } : {}) };
}

/** In-place update: only the renewal window changed, so only renewAt moves. */
export async function update(
  _id: string,
  oldState: Record<string, unknown>,
  news: CaInputs,
): Promise<{ outs: Record<string, unknown> }> {
  const olds = upgradeState(oldState, "CertificateAuthority");
  return { outs: withRenewalWindow(olds, news.renewBeforeHours ?? DEFAULT_CA_RENEW_BEFORE_HOURS) };
}

/** Refresh: the state is its own truth (nothing lives outside it); renewAt is recomputed. */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown>; inputs: Record<string, unknown> }> {
  const s = upgradeState(state, "CertificateAuthority");
  // Inputs as stored, without any key: a parent or imported CA is represented by its certificate.
  const inputs = pick(s, [...REISSUE_KEYS, "renewBeforeHours"]);
  if (s.parentCertPem) inputs.parent = { certPem: s.parentCertPem };
  if (s.importCertPem) inputs.import = { certPem: s.importCertPem };
  return { id, props: withRenewalWindow(s, storedRenewBefore(s, DEFAULT_CA_RENEW_BEFORE_HOURS)), inputs };
}

/** Nothing to clean up outside the state; the state's version is still checked so a newer shape is not silently dropped. */
export async function remove(_id: string, state: Record<string, unknown>): Promise<void> {
  upgradeState(state, "CertificateAuthority");
}
