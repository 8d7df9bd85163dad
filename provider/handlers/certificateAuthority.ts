/** Check/diff/create/update/read/delete for the CertificateAuthority resource. Pure; see common.ts. */
import {
  checkPathLength,
  createCertificateAuthority,
  importCertificateAuthority,
  resolveCaRequest,
  CertificateAuthority as CaResult,
} from "../pki/ca";
import { PkiError } from "../pki/errors";
import { checkIssuerAccepted } from "../pki/acceptance";
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
  endChanged,
  isKnown,
  issuerChanged,
  planEnd,
  renewalDue,
  STATE_VERSION,
  upgradeState,
  issuerOf,
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
  /**
   * The planned end, ISO 8601: set by check (never by the program), issued exactly by create; a due
   * renewal shows as a change of it. Absent for an imported CA and in inputs checked against a version-1 state.
   */
  notAfter?: string;
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
    issuer: issuerOf(news.parent),
    import: news.import,
    maxValidityHours: news.maxValidityHours,
    truncateToIssuer: news.truncateToIssuer,
    notAfter: imported ? undefined : news.notAfter,
  });
}

/**
 * Validates and normalises CA inputs (unknown values in a preview are left unparsed), and plans the CA's
 * end (`notAfter`, see `planEnd`): kept while renewal is not due, fresh (now + validity, bounded by the
 * parent's chain as create bounds it) when due or when the CA is re-issued anyway. `now` @default now
 */
export function check(olds: Record<string, unknown>, news: CaInputs, now: Date = new Date()): CheckResult {
  let fresh: string | undefined; // the end create would give it now, once everything it needs is known
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
        () => {
          if (news.parent !== undefined) {
            loadIssuer(news.parent, "parent");
            checkIssuerAccepted(news.parent, "parent", now);
          }
          fresh = resolveCaRequest({
            subject: news.subject,
            template: news.template,
            validityHours: news.validityHours,
            pathLength: news.pathLength,
            parent: news.parent,
            truncateToIssuer: news.truncateToIssuer,
            maxValidityHours: news.maxValidityHours,
            now,
          }).validity.notAfter.toISOString();
        },
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
        () => {
          if (news.parent === undefined || !isKnown(news.parent)) return;
          loadIssuer(news.parent, "parent");
          checkIssuerAccepted(news.parent, "parent", now);
        },
      ];
  const failures = collectFailures(
    [
      () => {
        if (news.import !== undefined) {
          const clash = (
            ["subject", "template", "keySpec", "parent", "validityHours", "pathLength"] as const
          ).find((k) => news[k] !== undefined && news[k] !== null);
          if (clash) throw new PkiError(clash, `an imported CA is used as it is; remove ${clash} or import`);
          if (!isKnown(news.import)) return;
          importCertificateAuthority(news.import);
          checkIssuerAccepted(news.import, "import", now);
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
  if (failures.length) return { failures };
  const inputs = normalize({ ...news, notAfter: undefined }) as Record<string, unknown>;
  if (news.import !== undefined) return { inputs };
  const notAfter = planEnd({
    olds,
    key: "notAfter",
    renewBeforeHours: inputs.renewBeforeHours,
    frozen: false,
    reissue:
      changedKeys(olds, inputs, REISSUE_KEYS).length > 0 ||
      issuerChanged((olds.parent as { certPem?: unknown } | undefined)?.certPem, news.parent),
    now,
    fresh: () => fresh,
  });
  return { inputs: compact({ ...inputs, notAfter }) };
}

/** The stored state: inputs without any other CA's key, plus the CA's certificate, key and facts. */
function toState(inputs: CaInputs, ca: CaResult): Record<string, unknown> {
  // renewBeforeHours is policy: never stored among the outputs, so changing it is no change (see diff).
  const { parent, import: imported, renewBeforeHours, ...rest } = inputs;
  void renewBeforeHours;
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
    fingerprintSha256: ca.fingerprintSha256,
    subjectDn: ca.subjectDn,
    issuerDn: ca.issuerDn,
    keySpec: ca.keySpec,
    pathLength: ca.pathLength,
  });
}

/** Creates (or imports) the CA; a created CA ends exactly at the planned `notAfter` when given. */
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
        notAfter: inputs.notAfter,
      });
  return { id: ca.serialNumber, outs: toState(inputs, ca) };
}

/**
 * Replacement when anything that shapes the certificate changed, when the parent CA's certificate
 * changed (renewed or rotated), or when check planned another end than the CA's (renewal: listed as
 * `notAfter` when it is the only cause; inputs checked against a version-1 state carry no planned end,
 * and then renewal is decided from the stored dates as before). `renewBeforeHours` alone is no change:
 * a "same" step stores it, and the CA's outputs stay known in a preview, so nothing it signs shows a
 * replacement.
 */
export function diff(_id: string, oldState: Record<string, unknown>, news: CaInputs): DiffResult {
  const olds = upgradeState(oldState, "CertificateAuthority");
  const n = normalize(news) as Record<string, unknown>;
  const imported = olds.importCertPem !== undefined || news.import !== undefined;
  if (imported) {
    return issuerChanged(olds.importCertPem, news.import)
      ? { changes: true, replaces: ["import"] }
      : { changes: false };
  }
  const replaces = changedKeys(olds, n, REISSUE_KEYS);
  if (issuerChanged(olds.parentCertPem, news.parent)) replaces.push("parent");
  const renew =
    endChanged(n.notAfter, olds.notAfter) ??
    renewalDue(
      olds.notBefore,
      olds.notAfter,
      typeof n.renewBeforeHours === "number" ? n.renewBeforeHours : DEFAULT_CA_RENEW_BEFORE_HOURS,
    );
  // Listed when renewal is the cause; with another cause the new end is its consequence (shown as an input).
  if (renew && replaces.length === 0) replaces.push("notAfter");
  return { changes: replaces.length > 0, ...(replaces.length ? { replaces } : {}) };
}

/** Never called by the engine (diff reports replacements only); returns the state as it is, upgraded. */
export async function update(
  _id: string,
  oldState: Record<string, unknown>,
  _news: CaInputs,
): Promise<{ outs: Record<string, unknown> }> {
  return { outs: upgradeState(oldState, "CertificateAuthority") };
}

/**
 * Refresh: the state is its own truth (nothing lives outside it). No inputs are returned, so the engine
 * keeps the stored ones (rebuilt ones would lack the parent's or imported CA's key and the policy).
 */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown> }> {
  return { id, props: upgradeState(state, "CertificateAuthority") };
}

/** Nothing to clean up outside the state; the state's version is still checked so a newer shape is not silently dropped. */
export async function remove(_id: string, state: Record<string, unknown>): Promise<void> {
  upgradeState(state, "CertificateAuthority");
}
