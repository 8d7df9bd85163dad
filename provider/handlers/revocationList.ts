/** Check/diff/create/update/read/delete for CertificateRevocationList. Pure; see common.ts. */
import {
  createCrl,
  Crl,
  DEFAULT_CRL_NEXT_UPDATE_HOURS,
  REVOCATION_REASONS,
  RevocationReason,
} from "../pki/crl";
import { PkiError } from "../pki/errors";
import { loadIssuer } from "../pki/issuer";
import { inspectCertificate } from "../pki/inspect";
import { normalizeSerial } from "../pki/serial";
import { checkHours } from "../pki/validity";
import {
  changedKeys,
  CheckResult,
  collectFailures,
  unnamedWhereKeyText,
  compact,
  DiffResult,
  isKnown,
  issuerChanged,
  pick,
  renewalDue,
  STATE_VERSION,
  upgradeState,
} from "./common";

/** One revocation as the resource takes it: a serial or a certificate, with an optional reason. */
export interface RevocationInput {
  serialNumber?: string;
  certPem?: string;
  reason?: RevocationReason;
}

/** The CRL resource's inputs after check. */
export interface CrlInputs {
  ca: { certPem: string; keyPem: string };
  revoked?: RevocationInput[];
  nextUpdateHours?: number;
  renewBeforeHours?: number;
}

/** Default re-sign window: a CRL is re-signed once less than a third of its lifetime is left (56 h of 168). */
export function defaultCrlRenewBeforeHours(nextUpdateHours: number): number {
  return Math.round((nextUpdateHours / 3) * 100) / 100;
}

/** Normalised revocations: serial hex (from the certificate when given), sorted, with the reason. */
function normalizeRevoked(
  revoked: RevocationInput[] | undefined,
): { serialNumber: string; reason?: RevocationReason }[] {
  return (revoked ?? [])
    .map((r, i) => {
      if (!r || (r.serialNumber === undefined) === (r.certPem === undefined)) {
        throw new PkiError(`revoked[${i}]`, "give exactly one of serialNumber or certPem");
      }
      if (r.reason !== undefined && !(r.reason in REVOCATION_REASONS)) {
        throw new PkiError(
          `revoked[${i}].reason`,
          `unknown reason ${JSON.stringify(r.reason)}; use one of ${Object.keys(REVOCATION_REASONS).join(", ")}`,
        );
      }
      const serialNumber =
        r.certPem !== undefined
          ? inspectCertificate(r.certPem).serialNumber
          : normalizeSerial(r.serialNumber as string, `revoked[${i}].serialNumber`);
      return compact({ serialNumber, reason: r.reason });
    })
    .sort((a, b) => a.serialNumber.localeCompare(b.serialNumber));
}

function normalize(news: CrlInputs): Record<string, unknown> {
  const nextUpdateHours = news.nextUpdateHours ?? DEFAULT_CRL_NEXT_UPDATE_HOURS;
  return compact({
    ca: news.ca,
    revoked: isKnown(news.revoked) ? normalizeRevoked(news.revoked) : news.revoked,
    nextUpdateHours,
    renewBeforeHours: news.renewBeforeHours ?? defaultCrlRenewBeforeHours(nextUpdateHours),
  });
}

/** Validates and normalises CRL inputs. */
export function check(_olds: Record<string, unknown>, news: CrlInputs): CheckResult {
  const failures = collectFailures([
    () => {
      if (!news.ca)
        throw new PkiError("ca", "the issuing CA is required: a CertificateAuthority or { certPem, keyPem }");
      if (isKnown(news.ca)) loadIssuer(news.ca, "ca");
    },
    () => isKnown(news.revoked) && normalizeRevoked(news.revoked),
    () =>
      isKnown(news.nextUpdateHours) &&
      news.nextUpdateHours !== undefined &&
      checkHours(news.nextUpdateHours, "nextUpdateHours"),
    () => {
      const next = news.nextUpdateHours ?? DEFAULT_CRL_NEXT_UPDATE_HOURS;
      if (news.renewBeforeHours === undefined || !isKnown(news.renewBeforeHours)) return;
      checkHours(news.renewBeforeHours, "renewBeforeHours", false);
      if (news.renewBeforeHours >= next) {
        throw new PkiError("renewBeforeHours", `must be shorter than nextUpdateHours (${next}); lower it`);
      }
    },
  ]);
  return failures.length ? { failures: unnamedWhereKeyText(failures, news) } : { inputs: normalize(news) };
}

function toState(inputs: Record<string, unknown>, crl: Crl, caCertPem: string): Record<string, unknown> {
  const { ca, ...rest } = inputs;
  void ca;
  return {
    __stateVersion: STATE_VERSION,
    ...rest,
    caCertPem,
    crlPem: crl.crlPem,
    crlNumber: crl.crlNumber,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    revokedSerials: crl.revokedSerials,
  };
}

function sign(inputs: Record<string, unknown>, previousNumber?: number): Record<string, unknown> {
  const ca = inputs.ca as CrlInputs["ca"];
  const now = new Date();
  const byTime = Math.floor(now.getTime() / 1000);
  const crl = createCrl({
    issuer: ca,
    revoked: inputs.revoked as { serialNumber: string; reason?: RevocationReason }[],
    nextUpdateHours: inputs.nextUpdateHours as number,
    thisUpdate: now,
    // CRL numbers must grow: time-based, and never below the previous one plus one.
    crlNumber: previousNumber !== undefined ? Math.max(byTime, previousNumber + 1) : byTime,
  });
  return toState(inputs, crl, ca.certPem);
}

/** Signs the first CRL. */
export async function create(inputs: CrlInputs): Promise<{ id: string; outs: Record<string, unknown> }> {
  const outs = sign(normalize(inputs));
  return { id: `crl-${outs.crlNumber}`, outs };
}

/**
 * A changed revocation list or CA is an in-place update (re-signed with a higher CRL number). A CRL
 * inside its re-sign window is replaced, listed as `nextUpdate`, so the reason shows in the preview.
 */
export function diff(_id: string, oldState: Record<string, unknown>, news: CrlInputs): DiffResult {
  const olds = upgradeState(oldState, "CertificateRevocationList");
  const n = normalize(news);
  const updates = changedKeys(olds, n, ["revoked", "nextUpdateHours", "renewBeforeHours"]);
  if (issuerChanged(olds.caCertPem, news.ca)) updates.push("ca");
  const renewBefore = typeof n.renewBeforeHours === "number" ? n.renewBeforeHours : 0;
  const due = renewalDue(olds.thisUpdate, olds.nextUpdate, renewBefore);
  return { changes: updates.length > 0 || due, ...(due ? { replaces: ["nextUpdate"] } : {}) };
}

/** Re-signs with the new revocations or CA, with a CRL number above the previous one. */
export async function update(
  _id: string,
  oldState: Record<string, unknown>,
  news: CrlInputs,
): Promise<{ outs: Record<string, unknown> }> {
  const olds = upgradeState(oldState, "CertificateRevocationList");
  return { outs: sign(normalize(news), olds.crlNumber as number) };
}

/** Refresh: the state is the truth. */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown>; inputs: Record<string, unknown> }> {
  const s = upgradeState(state, "CertificateRevocationList");
  // Inputs as stored; the CA is represented by its certificate (its key is never in this state).
  const inputs = {
    ...pick(s, ["revoked", "nextUpdateHours", "renewBeforeHours"]),
    ca: { certPem: s.caCertPem },
  };
  return { id, props: s, inputs };
}

/** Nothing outside the state to remove. */
export async function remove(_id: string, state: Record<string, unknown>): Promise<void> {
  upgradeState(state, "CertificateRevocationList");
}
