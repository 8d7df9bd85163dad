/**
 * Time-ordered serial numbers. A serial is 16 octets: the issuance time in milliseconds since the Unix
 * epoch (6 octets, big-endian) followed by 10 octets (80 bits) from the CSPRNG. That gives
 *  - uniqueness without shared state: serials never repeat, even across a new CA (Ganeti's rule),
 *    because two issuances would need the same millisecond and the same 80 random bits;
 *  - RFC 5280 conformance: positive, at most 20 octets, more than 64 bits of randomness;
 *  - Ganeti's "minimum accepted serial": everything issued before time T has a serial lower than
 *    `minimumSerialForTime(T)`, so "revoke everything issued before T" is a serial comparison.
 */
import { randomBytes } from "node:crypto";
import { PkiError } from "./errors";
import { quoteInput } from "./quote";

const TIME_OCTETS = 6;
const RANDOM_OCTETS = 10;

/** A new serial as lower-case hex (32 digits) for issuance at `now`. */
export function newSerialNumber(now: Date = new Date()): string {
  const ms = now.getTime();
  if (!Number.isSafeInteger(ms) || ms < 0 || ms >= 2 ** 47) {
    throw new PkiError("now", "issuance time must be between 1970 and year 6429");
  }
  const time = Buffer.alloc(TIME_OCTETS);
  time.writeUIntBE(ms, 0, TIME_OCTETS);
  return Buffer.concat([time, randomBytes(RANDOM_OCTETS)]).toString("hex");
}

/** Normalises serial hex: lower case, no separators, no leading zero octets. */
export function normalizeSerial(serial: string, property = "serialNumber"): string {
  const hex =
    typeof serial === "string" ? serial.trim().toLowerCase().replace(/[:\s]/g, "").replace(/^0x/, "") : "";
  if (!/^[0-9a-f]+$/.test(hex))
    throw new PkiError(property, `${quoteInput(serial)} is not a hex serial number`);
  const even = hex.length % 2 ? `0${hex}` : hex;
  const trimmed = even.replace(/^(00)+(?=..)/, "");
  if (trimmed.length > 40) throw new PkiError(property, "serial numbers are at most 20 octets");
  if (/^0+$/.test(trimmed)) throw new PkiError(property, "serial numbers must be positive");
  return trimmed;
}

/** The issuance time encoded in a serial made by `newSerialNumber`, or undefined for other serials. */
export function serialIssuedAt(serial: string): Date | undefined {
  const hex = normalizeSerial(serial);
  if (
    hex.length !== 2 * (TIME_OCTETS + RANDOM_OCTETS) - 2 &&
    hex.length !== 2 * (TIME_OCTETS + RANDOM_OCTETS)
  ) {
    return undefined;
  }
  const padded = hex.padStart(2 * (TIME_OCTETS + RANDOM_OCTETS), "0");
  return new Date(parseInt(padded.slice(0, 2 * TIME_OCTETS), 16));
}

/** The smallest serial `newSerialNumber` can produce at time `t`: every serial issued before `t` is lower. */
export function minimumSerialForTime(t: Date): string {
  const time = Buffer.alloc(TIME_OCTETS);
  time.writeUIntBE(t.getTime(), 0, TIME_OCTETS);
  return normalizeSerial(Buffer.concat([time, Buffer.alloc(RANDOM_OCTETS)]).toString("hex"));
}

/** Compares two serials numerically: negative, zero or positive like `Array.prototype.sort`. */
export function compareSerials(a: string, b: string): number {
  const x = BigInt(`0x${normalizeSerial(a)}`);
  const y = BigInt(`0x${normalizeSerial(b)}`);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Serial numbers are always generated (`newSerialNumber`): a chosen serial is how two certificates of
 * one CA came to share serial `01`, and a CRL then revokes both. Refuses a `serialNumber` argument (from
 * JavaScript callers, which the types do not stop).
 */
export function refuseSerialArgument(args: object): void {
  if ((args as { serialNumber?: unknown }).serialNumber !== undefined) {
    throw new PkiError(
      "serialNumber",
      "serial numbers are always generated (time-ordered and random, so never reused); remove serialNumber",
    );
  }
}

/** Refuses a certtool template's `serial` line (see {@link refuseSerialArgument}). */
export function refuseTemplateSerial(templateSerial: string | undefined): void {
  if (templateSerial !== undefined) {
    throw new PkiError(
      "template",
      "serial numbers are always generated (time-ordered and random, so never reused); remove the template's serial line",
    );
  }
}
