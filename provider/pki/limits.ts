/**
 * Size and range limits on every input, so any input is refused at check time with a clear error
 * instead of making a parser or the signer work without bound (a 10 MB template, a million PEM
 * headers) or failing later in create (a validity past the year 9999).
 */
import { PkiError } from "./errors";

/** Largest PEM text one field may hold (a certificate, a chain, a key, a CSR, a CRL): 64 KiB. */
export const MAX_PEM_CHARS = 64 * 1024;
/** Largest trust bundle `verifyChain` reads (a system CA bundle is about 200 KiB): 4 MiB. */
export const MAX_TRUST_BUNDLE_CHARS = 4 * 1024 * 1024;
/** Largest certtool template: 64 KiB. */
export const MAX_TEMPLATE_CHARS = 64 * 1024;
/** Largest `keys.psk` text: 1 MiB (the maximum number of users with the longest names and keys). */
export const MAX_PSK_TEXT_CHARS = 1024 * 1024;
/** Most users one `keys.psk` may hold. */
export const MAX_PSK_USERS = 4096;
/** Most revoked certificates one CRL may list. */
export const MAX_CRL_ENTRIES = 100_000;
/** Longest lifetime or window in hours: 100 years, far inside the year 9999 that X.509 times can express. */
export const MAX_HOURS = 100 * 366 * 24;

/** Refuses a text input longer than `max` characters, naming `property`; the text itself is never echoed. */
export function checkTextSize(value: unknown, property: string, max: number, what: string): void {
  if (typeof value === "string" && value.length > max) {
    throw new PkiError(
      property,
      `the ${what} is ${value.length} characters long; at most ${max} are accepted`,
    );
  }
}
