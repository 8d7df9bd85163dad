/** Check/diff/create/update/read/delete for CertificateRevocationList. Pure; see common.ts. */
import {
  checkRevocationReason,
  createCrl,
  Crl,
  inspectCrl,
  DEFAULT_CRL_NEXT_UPDATE_HOURS,
  defaultCrlRenewBeforeHours,
  REVOCATION_REASONS,
  RevocationReason,
} from "../pki/crl";
import { PkiError } from "../pki/errors";
import { checkIssuerAccepted } from "../pki/acceptance";
import { loadIssuer } from "../pki/issuer";
import { inspectCertificate } from "../pki/inspect";
import { isoSecond, mergeRevocations, RevocationEntry, WantedRevocation } from "../pki/revocations";
import { normalizeSerial } from "../pki/serial";
import { checkHours, wholeSeconds } from "../pki/validity";
import { checkRevokedCount } from "../pki/crl";
import {
  changedKeys,
  CheckResult,
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

/**
 * One revocation as the resource takes it: a serial or a certificate, with an optional reason, and
 * optionally the original revocation date and the certificate's notAfter (taken from `certPem` when given).
 */
export interface RevocationInput {
  serialNumber?: string;
  certPem?: string;
  reason?: RevocationReason;
  revocationDate?: string;
  notAfter?: string;
}

/** The CRL resource's inputs after check. */
export interface CrlInputs {
  ca: { certPem: string; keyPem: string };
  revoked?: RevocationInput[];
  nextUpdateHours?: number;
  renewBeforeHours?: number;
  /**
   * The planned nextUpdate, ISO 8601: set by check (never by the program), signed exactly by create and
   * update; a due re-sign shows as a change of it. Absent in inputs checked against a version-1 state.
   */
  nextUpdate?: string;
}

/**
 * Normalised revocations: serial hex (from the certificate when given), with the reason, the revocation
 * date and notAfter to the second (notAfter read from the certificate when given), sorted by serial. A
 * serial listed twice is refused (create would fail signing it).
 */
function normalizeRevoked(revoked: RevocationInput[] | undefined): WantedRevocation[] {
  checkRevokedCount(revoked);
  const seen = new Map<string, number>();
  return (revoked ?? [])
    .map((r, i) => {
      if (!r || (r.serialNumber === undefined) === (r.certPem === undefined)) {
        throw new PkiError(`revoked[${i}]`, "give exactly one of serialNumber or certPem");
      }
      if (r.reason !== undefined) checkRevocationReason(r.reason, `revoked[${i}].reason`);
      const cert =
        r.certPem !== undefined ? inspectCertificate(r.certPem, `revoked[${i}].certPem`) : undefined;
      const serialNumber = cert
        ? cert.serialNumber
        : normalizeSerial(r.serialNumber as string, `revoked[${i}].serialNumber`);
      const first = seen.get(serialNumber);
      if (first !== undefined) {
        throw new PkiError(
          `revoked[${i}]`,
          `serial ${serialNumber} is already listed as revoked[${first}]; list each certificate once`,
        );
      }
      seen.set(serialNumber, i);
      const notAfter = r.notAfter ?? cert?.notAfter;
      return compact({
        serialNumber,
        reason: r.reason,
        revocationDate:
          r.revocationDate !== undefined
            ? isoSecond(r.revocationDate, `revoked[${i}].revocationDate`)
            : undefined,
        notAfter: notAfter !== undefined ? isoSecond(notAfter, `revoked[${i}].notAfter`) : undefined,
      });
    })
    .sort((a, b) => a.serialNumber.localeCompare(b.serialNumber));
}

/** Reason names by RFC 5280 code, for reading back a CRL signed before the ledger was kept in state. */
const REASON_NAMES = Object.fromEntries(
  Object.entries(REVOCATION_REASONS).map(([name, code]) => [code, name as RevocationReason]),
);

/**
 * The ledger stored with a CRL. States written before it was kept have only the CRL itself: its entries,
 * with the dates and reasons it lists, are the ledger then.
 */
function storedLedger(state: Record<string, unknown>): RevocationEntry[] {
  if (Array.isArray(state.revokedCertificates)) return state.revokedCertificates as RevocationEntry[];
  if (typeof state.crlPem !== "string") return [];
  return inspectCrl(state.crlPem).revoked.map((e) =>
    compact({
      serialNumber: e.serialNumber,
      revocationDate: e.revocationDate,
      reason: e.reasonCode !== undefined ? REASON_NAMES[e.reasonCode] : undefined,
    }),
  );
}

function normalize(news: CrlInputs): Record<string, unknown> {
  const nextUpdateHours = news.nextUpdateHours ?? DEFAULT_CRL_NEXT_UPDATE_HOURS;
  return compact({
    ca: news.ca,
    issuer: issuerOf(news.ca),
    revoked: isKnown(news.revoked) ? normalizeRevoked(news.revoked) : news.revoked,
    nextUpdateHours,
    renewBeforeHours:
      news.renewBeforeHours ??
      (isKnown(nextUpdateHours) ? defaultCrlRenewBeforeHours(nextUpdateHours) : nextUpdateHours),
    nextUpdate: news.nextUpdate,
  });
}

/** Inputs whose change re-signs the CRL (besides its CA and its planned nextUpdate). */
const RESIGN_KEYS = ["revoked", "nextUpdateHours"];

/**
 * Validates and normalises CRL inputs, and plans its `nextUpdate` (see `planEnd`): kept while a re-sign
 * is not due (`now >= nextUpdate - renewBeforeHours`) and nothing else re-signs it; fresh (now +
 * nextUpdateHours) when due, or when the revocations, nextUpdateHours or the CA changed. `now` @default now
 */
export function check(olds: Record<string, unknown>, news: CrlInputs, now: Date = new Date()): CheckResult {
  const failures = collectFailures(
    [
      () => {
        if (!news.ca)
          throw new PkiError(
            "ca",
            "the issuing CA is required: a CertificateAuthority or { certPem, keyPem }",
          );
        if (!isKnown(news.ca)) return;
        loadIssuer(news.ca, "ca");
        checkIssuerAccepted(news.ca, "ca", now);
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
    ],
    news,
  );
  if (failures.length) return { failures };
  const inputs = normalize({ ...news, nextUpdate: undefined });
  const hours = inputs.nextUpdateHours;
  const nextUpdate = planEnd({
    olds,
    key: "nextUpdate",
    renewBeforeHours: inputs.renewBeforeHours,
    frozen: false,
    reissue:
      changedKeys(olds, inputs, RESIGN_KEYS).length > 0 ||
      issuerChanged((olds.ca as { certPem?: unknown } | undefined)?.certPem, news.ca),
    now,
    fresh: () =>
      typeof hours === "number"
        ? wholeSeconds(
            new Date(Math.floor(now.getTime() / 1000) * 1000 + Math.round(hours * 3_600_000)),
          ).toISOString()
        : undefined,
  });
  return { inputs: compact({ ...inputs, nextUpdate }) };
}

function toState(
  inputs: Record<string, unknown>,
  crl: Crl,
  caCertPem: string,
  ledger: RevocationEntry[],
): Record<string, unknown> {
  // renewBeforeHours is policy: never stored among the outputs, so changing it is no change (see diff).
  const { ca, renewBeforeHours, ...rest } = inputs;
  void ca;
  void renewBeforeHours;
  return {
    __stateVersion: STATE_VERSION,
    ...rest,
    caCertPem,
    crlPem: crl.crlPem,
    crlNumber: crl.crlNumber,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    revokedSerials: crl.revokedSerials,
    revokedCertificates: ledger,
  };
}

/**
 * Signs with the ledger merged: the wanted revocations keep the dates they were first listed with, and
 * earlier entries stay until their certificates expire (see `mergeRevocations`).
 */
function sign(
  inputs: Record<string, unknown>,
  previous?: { ledger: RevocationEntry[]; crlNumber: number },
): Record<string, unknown> {
  const ca = inputs.ca as CrlInputs["ca"];
  const now = new Date();
  const byTime = Math.floor(now.getTime() / 1000);
  const ledger = mergeRevocations(previous?.ledger ?? [], (inputs.revoked as WantedRevocation[]) ?? [], now);
  const crl = createCrl({
    issuer: ca,
    revoked: ledger.map((e) => ({
      serialNumber: e.serialNumber,
      revocationDate: e.revocationDate,
      reason: e.reason,
    })),
    nextUpdateHours: inputs.nextUpdateHours as number,
    nextUpdate: typeof inputs.nextUpdate === "string" ? inputs.nextUpdate : undefined,
    thisUpdate: now,
    // CRL numbers must grow: time-based, and never below the previous one plus one.
    crlNumber: previous !== undefined ? Math.max(byTime, previous.crlNumber + 1) : byTime,
  });
  return toState(inputs, crl, ca.certPem, ledger);
}

/** Signs the first CRL. */
export async function create(inputs: CrlInputs): Promise<{ id: string; outs: Record<string, unknown> }> {
  const outs = sign(normalize(inputs));
  return { id: `crl-${outs.crlNumber}`, outs };
}

/**
 * A changed revocation list, nextUpdateHours or CA is an in-place update (re-signed with a higher CRL
 * number). So is a re-sign that check planned (a new `nextUpdate`: due, shown as `~ nextUpdate`): an
 * update, never a replacement, because a replacement would start from its inputs alone and lose the
 * ledger (the original dates and the entries kept until their certificates expire). `renewBeforeHours`
 * alone is no change. Inputs checked against a version-1 state carry no planned nextUpdate; then a due
 * re-sign is decided from the stored dates as before.
 */
export function diff(_id: string, oldState: Record<string, unknown>, news: CrlInputs): DiffResult {
  const olds = upgradeState(oldState, "CertificateRevocationList");
  const n = normalize(news);
  const updates = changedKeys(olds, n, RESIGN_KEYS);
  if (issuerChanged(olds.caCertPem, news.ca)) updates.push("ca");
  const resign =
    endChanged(n.nextUpdate, olds.nextUpdate) ??
    renewalDue(
      olds.thisUpdate,
      olds.nextUpdate,
      typeof n.renewBeforeHours === "number" ? n.renewBeforeHours : 0,
    );
  return { changes: updates.length > 0 || resign };
}

/**
 * Re-signs with the new revocations or CA merged into the ledger, with a CRL number above the previous
 * one, and the planned nextUpdate.
 */
export async function update(
  _id: string,
  oldState: Record<string, unknown>,
  news: CrlInputs,
): Promise<{ outs: Record<string, unknown> }> {
  const olds = upgradeState(oldState, "CertificateRevocationList");
  return {
    outs: sign(normalize(news), { ledger: storedLedger(olds), crlNumber: olds.crlNumber as number }),
  };
}

/** Refresh: the state (upgraded) is the truth; no inputs are returned, so the engine keeps the stored ones. */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown> }> {
  return { id, props: upgradeState(state, "CertificateRevocationList") };
}

/** Nothing outside the state to remove. */
export async function remove(_id: string, state: Record<string, unknown>): Promise<void> {
  upgradeState(state, "CertificateRevocationList");
}
