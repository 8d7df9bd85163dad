/**
 * What an install shows of its files' contents outside the secret stdin: the triggers a preview prints,
 * the generation, the manifest the host prints (kept in state as the command's stdout) and the `files`
 * output. For a file that is not secret that is its sha256. For a secret file (a private key, `keys.psk`,
 * a `custom` file with `secret: true`) a plain sha256 would let anyone who reads the state try guesses
 * (a VNC password "hunter2" is found at once), so it is an HMAC-SHA256 under the install's digest key, which
 * reveals nothing without that key. The plain sha256 travels only on the secret stdin, where the host
 * checks the bytes it received against it.
 *
 * The digest key must be secret, have high entropy, and stay the same while the file stays the same, so
 * an unchanged plan keeps its triggers (no replacement on every preview). It is derived from:
 * - `digestKey`, when given: a secret of the program's (at least 32 characters, e.g. 32 random bytes as
 *   hex from a `PreSharedKeys` or `random.RandomBytes` resource), the same on every run;
 * - otherwise the install's own key material: every private key and `keys.psk` it installs (the secret
 *   files of the other layouts), high-entropy secrets that are inputs already. They change when a key is
 *   re-issued; the install is replaced then anyway (the key file's own line changed), and the other
 *   secret files' lines show new digests of unchanged content in that one preview.
 * A random key kept in state would need one more resource per install; a key derived from the secret
 * file itself would be a dictionary hash again. An install whose only secrets are `custom` files (low
 * entropy, chosen by people) has no key material of its own and needs `digestKey`. Pure.
 */
import { createHash, createHmac } from "node:crypto";
import { PkiError } from "../../provider/pki/errors";
import { InstallPlan } from "./layouts";

/** The shortest `digestKey` accepted (characters). */
export const MIN_DIGEST_KEY_LENGTH = 32;

/** Domain label of the digest key derivation (changing it changes every secret file's digest). */
const LABEL = "pulumi-virt-pki install digest key 1";

/** Checks a `digestKey` value without ever repeating it. */
export function checkDigestKey(value: unknown, property = "digestKey"): void {
  if (typeof value !== "string" || value.length < MIN_DIGEST_KEY_LENGTH) {
    throw new PkiError(
      property,
      `must be a secret string of at least ${MIN_DIGEST_KEY_LENGTH} characters (e.g. 32 random bytes as hex); ` +
        "it keys the digests that triggers and the host's manifest show of secret files",
    );
  }
}

/**
 * The digest key of an install (see the module comment), or undefined when it has no secret file.
 * Throws a {@link PkiError} on `digestKey` when a secret file needs one and nothing can key it.
 */
export function digestKeyOf(plan: InstallPlan, digestKey?: string): Buffer | undefined {
  const secret = plan.files.filter((f) => f.secret);
  if (secret.length === 0) return undefined;
  const h = createHash("sha256").update(`${LABEL}\0`);
  if (digestKey !== undefined) {
    checkDigestKey(digestKey);
    return h.update("digestKey\0").update(digestKey, "utf8").digest();
  }
  const material = secret
    .filter((f) => f.layout !== "custom")
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (material.length === 0) {
    throw new PkiError(
      "digestKey",
      `${secret[0].path} is secret and this install has no private key to key the digest that previews, ` +
        "state and the host's manifest show of it (a plain sha256 of a short secret is reversed by trying " +
        `guesses); give digestKey: a secret of at least ${MIN_DIGEST_KEY_LENGTH} random characters, e.g. the ` +
        "keysPsk of a PreSharedKeys resource",
    );
  }
  h.update("keys\0");
  for (const f of material) h.update(`${f.path}\0`).update(f.content, "utf8").update("\0");
  return h.digest();
}

/**
 * Each file's shown digest, in the order of `plan.files`: the sha256 of a file that is not secret, the
 * HMAC-SHA256 of a secret file's content under {@link digestKeyOf}. 64 hex digits either way.
 */
export function shownDigests(plan: InstallPlan, digestKey?: string): string[] {
  // One install asks for them several times (generation, plan records, triggers, the command's digests,
  // the manifest check) with the same plan object: key and HMACs are computed once per plan and key.
  let byKey = shownCache.get(plan);
  if (byKey === undefined) shownCache.set(plan, (byKey = new Map()));
  const cached = byKey.get(digestKey);
  if (cached !== undefined) return [...cached];
  const key = digestKeyOf(plan, digestKey);
  const shown = plan.files.map((f) =>
    f.secret ? createHmac("sha256", key!).update(f.content, "utf8").digest("hex") : f.sha256,
  );
  byKey.set(digestKey, shown);
  return [...shown];
}

/** Shown digests by plan (plans are not changed once built) and digest key. */
const shownCache = new WeakMap<InstallPlan, Map<string | undefined, string[]>>();
