/** Check/diff/create/update/read/delete for PreSharedKeys (QEMU keys.psk). Pure; see common.ts. */
import { createPreSharedKeys, DEFAULT_PSK_BYTES } from "../pki/psk";
import { PkiError } from "../pki/errors";
import {
  changedKeys,
  CheckResult,
  collectFailures,
  compact,
  DiffResult,
  isKnown,
  STATE_VERSION,
  upgradeState,
} from "./common";

/** The PreSharedKeys resource's inputs after check. */
export interface PskInputs {
  usernames: string[];
  keyBytes?: number;
}

/** Validates the usernames and key size. */
export function check(_olds: Record<string, unknown>, news: PskInputs): CheckResult {
  const failures = collectFailures(
    [
      () => {
        if (!isKnown(news.usernames)) return;
        if (!Array.isArray(news.usernames)) throw new PkiError("usernames", "must be a list of usernames");
        createPreSharedKeys(news.usernames, { keyBytes: news.keyBytes ?? DEFAULT_PSK_BYTES });
      },
    ],
    news,
  );
  return failures.length
    ? { failures }
    : { inputs: compact({ usernames: news.usernames, keyBytes: news.keyBytes ?? DEFAULT_PSK_BYTES }) };
}

function state(inputs: PskInputs, existing?: string): Record<string, unknown> {
  const { keysPsk } = createPreSharedKeys(inputs.usernames, { existing, keyBytes: inputs.keyBytes });
  return { __stateVersion: STATE_VERSION, usernames: inputs.usernames, keyBytes: inputs.keyBytes, keysPsk };
}

/** Generates a key per user. */
export async function create(inputs: PskInputs): Promise<{ id: string; outs: Record<string, unknown> }> {
  return { id: `psk-${inputs.usernames.join(",")}`, outs: state(inputs) };
}

/** Adding or removing users updates in place (other users keep their keys); a new key size replaces all keys. */
export function diff(_id: string, oldState: Record<string, unknown>, news: PskInputs): DiffResult {
  const olds = upgradeState(oldState, "PreSharedKeys");
  const n = { usernames: news.usernames, keyBytes: news.keyBytes ?? DEFAULT_PSK_BYTES };
  const replaces = changedKeys(olds, n, ["keyBytes"]);
  const updates = changedKeys(olds, n, ["usernames"]);
  return { changes: replaces.length + updates.length > 0, ...(replaces.length ? { replaces } : {}) };
}

/** Keeps the keys of users that stay, adds keys for new users. */
export async function update(
  _id: string,
  oldState: Record<string, unknown>,
  news: PskInputs,
): Promise<{ outs: Record<string, unknown> }> {
  const olds = upgradeState(oldState, "PreSharedKeys");
  return {
    outs: state(
      { usernames: news.usernames, keyBytes: news.keyBytes ?? DEFAULT_PSK_BYTES },
      olds.keysPsk as string,
    ),
  };
}

/** Refresh: the state (upgraded) is the truth; no inputs are returned, so the engine keeps the stored ones. */
export async function read(
  id: string,
  s: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown> }> {
  return { id, props: upgradeState(s, "PreSharedKeys") };
}

/** Nothing outside the state to remove. */
export async function remove(_id: string, s: Record<string, unknown>): Promise<void> {
  upgradeState(s, "PreSharedKeys");
}
