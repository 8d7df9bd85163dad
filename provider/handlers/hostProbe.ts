/**
 * Check/diff/create/update/read/delete for HostProbe: the drift of one host's installed files, seen at
 * preview. Pure but for the SSH probe (`../drift.ts`).
 *
 * - `check` probes the host when the files it expects are those stored (the last install's), and puts the
 *   reasons in the input `drift`, which the preview's diff shows. A new or changed plan is not probed: the
 *   install runs anyway, and its old files would only look like drift.
 * - `token` changes with every drift found (a digest of the previous token and the reasons) and stays when
 *   there is none; the install's stdin carries it, so an `up` that finds drift re-runs the install, which
 *   repairs the host.
 * - `diff` reports a change when there is drift or the expected files changed; a host back in order is
 *   `same` (its stored drift stays in the outputs until the next change).
 * - `read` (`pulumi refresh`) probes again and reports the drift in the outputs.
 */
import { createHash } from "crypto";
import { ExpectedFile, ProbeConnection, probeDrift } from "../drift";
import { CheckResult, DiffResult, changedKeys, compact, hasOlds, isKnown, stableJson } from "./common";

/** The HostProbe resource's inputs after check. */
export interface HostProbeInputs {
  /** For messages. */
  label: string;
  connection: ProbeConnection;
  /** The files of the install (secret: plain digests). */
  files: ExpectedFile[];
  /** Reasons the host differs, found by the last check. */
  drift?: string[];
  /** Changes with each drift found. */
  token?: string;
}

/** Probes the host (see the module comment). An unreachable host is a reason, not a failure. */
export async function check(olds: Record<string, unknown>, news: HostProbeInputs): Promise<CheckResult> {
  const token = typeof olds.token === "string" ? olds.token : "0";
  let drift: string[] = [];
  const probe =
    hasOlds(olds) &&
    isKnown(news.connection) &&
    isKnown(news.files) &&
    stableJson(olds.files) === stableJson(news.files) &&
    stableJson(olds.connection) === stableJson(news.connection);
  if (probe) drift = await probeDrift(news.connection, news.files);
  const next = drift.length
    ? createHash("sha256")
        .update(JSON.stringify([token, drift]))
        .digest("hex")
        .slice(0, 16)
    : token;
  return {
    inputs: compact({
      label: news.label,
      connection: news.connection,
      files: news.files,
      drift,
      token: next,
    }),
  };
}

/** A change when the host drifted, or when the expected files or the connection changed. */
export function diff(_id: string, olds: Record<string, unknown>, news: HostProbeInputs): DiffResult {
  const drifted = Array.isArray(news.drift) && news.drift.length > 0;
  return {
    changes: drifted || changedKeys(olds, news as never, ["files", "connection", "label"]).length > 0,
  };
}

/** Nothing to create outside the state. */
export async function create(
  inputs: HostProbeInputs,
): Promise<{ id: string; outs: Record<string, unknown> }> {
  return { id: `probe-${inputs.label}`, outs: { ...inputs } };
}

/** The new inputs are the state. */
export async function update(
  _id: string,
  _olds: Record<string, unknown>,
  news: HostProbeInputs,
): Promise<{ outs: Record<string, unknown> }> {
  return { outs: { ...news } };
}

/** Refresh: probes again; the drift found goes into the outputs (and so into the refresh's diff). */
export async function read(
  id: string,
  s: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown> }> {
  const files = Array.isArray(s.files) ? (s.files as ExpectedFile[]) : [];
  const connection = s.connection as ProbeConnection | undefined;
  const drift = connection === undefined ? [] : await probeDrift(connection, files);
  return { id, props: { ...s, drift } };
}

/** Nothing outside the state to remove. */
export async function remove(): Promise<void> {
  // The probe leaves nothing on the host.
}
