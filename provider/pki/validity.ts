/** Validity windows: hours-based, back-dated for clock skew, bounded by the issuer and by policy. */
import { PkiError } from "./errors";
import { MAX_HOURS } from "./limits";
import { quoteInput } from "./quote";

/** notBefore is set this many minutes before issuance so hosts with a slow clock accept new certificates. */
export const BACKDATE_MINUTES = 5;
/** Default leaf validity: 365 days, certtool's batch default. */
export const DEFAULT_LEAF_VALIDITY_HOURS = 365 * 24;
/** Default CA validity: 10 years. */
export const DEFAULT_CA_VALIDITY_HOURS = 10 * 365 * 24;
/** Ganeti's policy limit for short-lived certificates: less than one week. */
export const GANETI_MAX_VALIDITY_HOURS = 168;

/** What to compute a validity window from. */
export interface ValidityOptions {
  /** Requested lifetime in hours, counted from issuance. Must be > 0. */
  readonly validityHours: number;
  /** Issuance time. @default the current time */
  readonly now?: Date;
  /** Minutes to back-date notBefore. @default 5 */
  readonly backdateMinutes?: number;
  /**
   * The earliest notAfter of the issuer and its chain: a certificate may not outlive any of them.
   * @default none: no issuer bound (a self-signed root)
   */
  readonly issuerNotAfter?: Date;
  /** Shorten the certificate to end with its issuer instead of failing. @default false */
  readonly truncateToIssuer?: boolean;
  /** Policy: reject validity longer than this many hours (e.g. 168 for Ganeti). @default no limit */
  readonly maxValidityHours?: number;
  /**
   * The planned end (what a resource's check planned): used as notAfter instead of `now + validityHours`,
   * still bounded by the issuer and by policy. @default now + validityHours
   */
  readonly notAfter?: Date;
}

/** A certificate's validity window. */
export interface Validity {
  /** Start of validity (back-dated). */
  readonly notBefore: Date;
  /** End of validity. */
  readonly notAfter: Date;
}

/**
 * Checks an hours value (validity, renewal window): a finite number up to `MAX_HOURS`, optionally > 0.
 * `what` names the value in the message when it is not the property itself (a template's expiration_days).
 */
export function checkHours(value: unknown, property: string, positive = true, what?: string): number {
  const label = what ? `${what} ` : "";
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new PkiError(property, `${label}must be a number of hours, got ${quoteInput(value)}`);
  }
  if (positive ? value <= 0 : value < 0) {
    throw new PkiError(
      property,
      `${label}must be ${positive ? "greater than 0" : "0 or more"} hours, got ${value}`,
    );
  }
  if (value > MAX_HOURS) {
    throw new PkiError(property, `${label}must be at most ${MAX_HOURS} hours (100 years), got ${value}`);
  }
  return value;
}

/** Whether `checkHours` accepts a value (for checks that must not report a bad value a second time). */
export function isValidHours(value: unknown, positive = true): boolean {
  try {
    checkHours(value, "hours", positive);
    return true;
  } catch {
    return false;
  }
}

/** A time truncated to the whole second (X.509 and CRL times carry no fractions). */
export function wholeSeconds(time: Date): Date {
  return new Date(Math.floor(time.getTime() / 1000) * 1000);
}

/** Computes notBefore/notAfter, enforcing the policy limit and the issuer's lifetime. */
export function computeValidity(opts: ValidityOptions): Validity {
  const hours = checkHours(opts.validityHours, "validityHours");
  if (opts.maxValidityHours !== undefined) {
    const max = checkHours(opts.maxValidityHours, "maxValidityHours");
    if (hours > max) {
      throw new PkiError(
        "validityHours",
        `${hours} hours exceeds the policy maximum of ${max} hours; lower it`,
      );
    }
  }
  const now = opts.now ?? new Date();
  const backdate = opts.backdateMinutes ?? BACKDATE_MINUTES;
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - backdate * 60_000);
  // Whole seconds: what an X.509 time holds, so a planned end and the issued one compare equal.
  let notAfter = wholeSeconds(
    opts.notAfter ?? new Date(Math.floor(now.getTime() / 1000) * 1000 + Math.round(hours * 3_600_000)),
  );
  if (Number.isNaN(notAfter.getTime())) throw new PkiError("notAfter", "the planned end is not a date");
  if (
    opts.notAfter &&
    opts.maxValidityHours !== undefined &&
    notAfter.getTime() - now.getTime() > opts.maxValidityHours * 3_600_000
  ) {
    throw new PkiError(
      "notAfter",
      `the planned end ${notAfter.toISOString()} is more than maxValidityHours (${opts.maxValidityHours}) from now`,
    );
  }
  if (opts.issuerNotAfter && notAfter.getTime() > opts.issuerNotAfter.getTime()) {
    if (!opts.truncateToIssuer) {
      throw new PkiError(
        "validityHours",
        `the certificate would end ${notAfter.toISOString()}, after its CA or a certificate in the CA's chain ` +
          `(${opts.issuerNotAfter.toISOString()}); ` +
          "shorten validityHours, renew the CA, or set truncateToIssuer to end with the CA",
      );
    }
    notAfter = new Date(opts.issuerNotAfter.getTime());
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new PkiError("validityHours", "the validity window is empty (the issuer has already expired?)");
  }
  return { notBefore, notAfter };
}
