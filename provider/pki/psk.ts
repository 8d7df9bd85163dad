/**
 * QEMU TLS pre-shared keys: the `keys.psk` file `tls-creds-psk` reads, in the format `psktool` writes
 * (`username:hexkey`, one per line; 32 random bytes per key by default).
 */
import { randomBytes } from "node:crypto";
import { PkiError } from "./errors";
import { checkTextSize, MAX_PSK_TEXT_CHARS, MAX_PSK_USERS } from "./limits";
import { quoteInput } from "./quote";

/** Default PSK length in bytes, as psktool uses. */
export const DEFAULT_PSK_BYTES = 32;

/** One PSK user and key. */
export interface PreSharedKey {
  /** The PSK identity (QEMU's client default is `qemu`). */
  readonly username: string;
  /** The key, lower-case hex. Secret. */
  readonly keyHex: string;
}

function checkUsername(name: unknown, property: string): string {
  if (typeof name !== "string" || !/^[A-Za-z0-9._@+-]{1,128}$/.test(name)) {
    throw new PkiError(
      property,
      `${quoteInput(name)} is not a usable PSK username (letters, digits, . _ @ + -)`,
    );
  }
  return name;
}

/** Parses `keys.psk` content. Errors name the line but never echo a key. */
export function parsePreSharedKeys(text: string, property = "keysPsk"): PreSharedKey[] {
  checkTextSize(text, property, MAX_PSK_TEXT_CHARS, "keys.psk text");
  const out: PreSharedKey[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const m = /^([^:]+):([0-9a-fA-F]+)$/.exec(line.trim());
    if (!m || m[2].length % 2) throw new PkiError(`${property}:${i + 1}`, "expected username:hexkey");
    out.push({ username: checkUsername(m[1], `${property}:${i + 1}`), keyHex: m[2].toLowerCase() });
  });
  return out;
}

/**
 * Whether a text has the shape of `keys.psk` content: one or more `name:hexkey` lines (name without
 * whitespace or colon), each but the last ending in a newline. Checked line by line in linear time (the
 * single regex `^([^:\s]+:[0-9a-fA-F]+\n?)+$` backtracks exponentially on `a:0000000:0000000:...!`).
 */
export function isKeysPskText(text: unknown): boolean {
  if (typeof text !== "string" || text === "" || text.length > MAX_PSK_TEXT_CHARS) return false;
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  return lines.every((line) => /^[^:\s]+:[0-9a-fA-F]+$/.test(line));
}

/** Serialises keys as `keys.psk` content (newline-terminated lines). */
export function formatPreSharedKeys(keys: readonly PreSharedKey[]): string {
  return keys.map((k) => `${k.username}:${k.keyHex}\n`).join("");
}

/**
 * Builds `keys.psk` for `usernames`, keeping the key of every user already in `existing` (so adding a
 * user does not rotate the others) and generating `keyBytes` random bytes for new users.
 */
export function createPreSharedKeys(
  usernames: readonly string[],
  options: { existing?: string; keyBytes?: number } = {},
): {
  /** The `keys.psk` content. Secret. */
  keysPsk: string;
  /** The same keys, one per user in the order of `usernames`. */
  keys: PreSharedKey[];
} {
  if (!Array.isArray(usernames) || usernames.length === 0) {
    throw new PkiError("usernames", "give at least one PSK username (QEMU clients use `qemu` by default)");
  }
  if (usernames.length > MAX_PSK_USERS) {
    throw new PkiError(
      "usernames",
      `lists ${usernames.length} users; at most ${MAX_PSK_USERS} are accepted in one keys.psk`,
    );
  }
  const keyBytes = options.keyBytes ?? DEFAULT_PSK_BYTES;
  if (!Number.isInteger(keyBytes) || keyBytes < 16 || keyBytes > 64) {
    throw new PkiError("keyBytes", `must be a whole number from 16 to 64, got ${keyBytes}`);
  }
  const old = new Map(parsePreSharedKeys(options.existing ?? "").map((k) => [k.username, k.keyHex]));
  const seen = new Set<string>();
  const keys = usernames.map((u, i) => {
    const name = checkUsername(u, `usernames[${i}]`);
    if (seen.has(name)) throw new PkiError(`usernames[${i}]`, `${name} is listed twice`);
    seen.add(name);
    const keep = old.get(name);
    return {
      username: name,
      keyHex: keep && keep.length === keyBytes * 2 ? keep : randomBytes(keyBytes).toString("hex"),
    };
  });
  return { keysPsk: formatPreSharedKeys(keys), keys };
}
