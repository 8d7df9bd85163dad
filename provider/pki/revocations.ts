/**
 * The revocation ledger a CRL keeps: every serial it has listed, with its original revocation date, its
 * reason and the certificate's notAfter. Re-signing merges the wanted revocations into the ledger, so an
 * entry keeps its first date, and an entry that is no longer asked for stays listed until the certificate
 * it revokes has expired (RFC 5280 5.1.2.6: an entry may only go once the certificate is past notAfter).
 */
import { quoteInput } from "./quote";
import { PkiError } from "./errors";
import type { RevocationReason } from "./crl";
import { compareSerials, normalizeSerial } from "./serial";

/** One revoked certificate as the ledger keeps it. */
export interface RevocationEntry {
  /** Serial number, normalised hex. */
  readonly serialNumber: string;
  /** When it was revoked, ISO 8601 (to the second): the date the CRL lists. */
  readonly revocationDate: string;
  /** Why. @default no reason code (unspecified) */
  readonly reason?: RevocationReason;
  /** The revoked certificate's notAfter, ISO 8601. @default unknown: the entry is kept as long as the CRL exists */
  readonly notAfter?: string;
}

/** A revocation asked for by the inputs: the date and notAfter only when known. */
export interface WantedRevocation {
  /** Serial number, normalised hex. */
  readonly serialNumber: string;
  /** The revocation date for a serial the ledger does not hold yet (once listed, its date stays). @default now */
  readonly revocationDate?: string;
  /** Why. @default unspecified */
  readonly reason?: RevocationReason;
  /** The certificate's notAfter. @default the ledger's, else unknown */
  readonly notAfter?: string;
}

/** A date as ISO 8601 to the second (CRL times have no fractions), or a PkiError naming the property. */
export function isoSecond(value: string | Date, property: string): string {
  const d = value instanceof Date ? value : typeof value === "string" ? new Date(value) : new Date(NaN);
  if (Number.isNaN(d.getTime())) {
    throw new PkiError(
      property,
      `${quoteInput(value)} is not a date; give ISO 8601, e.g. 2026-01-31T12:00:00Z`,
    );
  }
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString();
}

/**
 * The ledger after a re-sign at `now`: each wanted revocation, with the date it already has in the ledger
 * (the first listing is the original: a later input cannot move it), else the input's date, else now; the
 * input's reason; then each earlier entry the inputs no longer name, kept until its
 * certificate's notAfter has passed. A `certificateHold` entry is the one that may be lifted: it goes as
 * soon as the inputs drop it. Sorted by serial.
 */
export function mergeRevocations(
  ledger: readonly RevocationEntry[],
  wanted: readonly WantedRevocation[],
  now: Date,
): RevocationEntry[] {
  const previous = new Map(ledger.map((e) => [normalizeSerial(e.serialNumber, "entries"), e]));
  const at = isoSecond(now, "now");
  const out = new Map<string, RevocationEntry>();
  for (const w of wanted) {
    const before = previous.get(w.serialNumber);
    out.set(
      w.serialNumber,
      compactEntry({
        serialNumber: w.serialNumber,
        revocationDate: before?.revocationDate ?? w.revocationDate ?? at,
        reason: w.reason,
        notAfter: w.notAfter ?? before?.notAfter,
      }),
    );
  }
  for (const [serial, e] of previous) {
    if (out.has(serial) || e.reason === "certificateHold") continue;
    if (e.notAfter !== undefined && new Date(e.notAfter).getTime() <= now.getTime()) continue;
    out.set(serial, compactEntry({ ...e, serialNumber: serial }));
  }
  return [...out.values()].sort((a, b) => compareSerials(a.serialNumber, b.serialNumber));
}

function compactEntry(e: RevocationEntry): RevocationEntry {
  return Object.fromEntries(
    Object.entries(e).filter(([, v]) => v !== undefined),
  ) as unknown as RevocationEntry;
}
