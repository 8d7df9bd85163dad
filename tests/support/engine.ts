/**
 * A TEST HARNESS standing in for the Pulumi engine, because the Pulumi CLI cannot be installed here.
 * It runs a program under `pulumi.runtime.setMocks` and sends every dynamic resource to the REAL
 * dynamic-provider host over gRPC the way the engine does for `pulumi up`: Check, then Diff against
 * the stored state, then Create / Update / create-before-delete Replace, and Delete for resources that
 * left the program. State is kept between runs, and each run yields a plan like `pulumi preview --diff`.
 */
import * as pulumi from "@pulumi/pulumi";
import { PROVIDER_KEY, ProviderHost, resourceUrn, settle } from "./pulumiHost";

/** One resource in the harness's state. */
export interface StateEntry {
  id: string;
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
}

/** The harness's state: resources by URN. */
export type EngineState = Record<string, StateEntry>;

/** One step of a plan, as `pulumi preview --diff` would print it. */
export interface PlanStep {
  urn: string;
  name: string;
  op: "create" | "same" | "update" | "replace" | "delete";
  /** The properties the provider named as causing a replacement. */
  replaces?: string[];
}

/** What a run returns. */
export interface RunResult {
  state: EngineState;
  plan: PlanStep[];
}

/** A check failure surfaced as the engine would: resource and property. */
export class CheckFailedError extends Error {
  constructor(
    readonly urn: string,
    readonly failures: { property: string; reason: string }[],
  ) {
    super(`${urn}: ${failures.map((f) => `${f.property}: ${f.reason}`).join("; ")}`);
  }
}

/** Runs `program` once against `host`, starting from `state` (an empty object for a first `up`). */
export async function up(program: () => void, host: ProviderHost, state: EngineState): Promise<RunResult> {
  const next: EngineState = {};
  const plan: PlanStep[] = [];
  const replaced: StateEntry[] = [];
  const errors: unknown[] = [];
  let activity = 0;

  await pulumi.runtime.setMocks(
    {
      newResource: async (args) => {
        activity++;
        if (!args.type.startsWith("pulumi-nodejs:dynamic"))
          return { id: `${args.name}-id`, state: args.inputs };
        const urn = resourceUrn(args.name, { type: args.type });
        try {
          const old = state[urn];
          const checked = await host.check(urn, old?.inputs ?? {}, args.inputs);
          if (checked.failures.length) throw new CheckFailedError(urn, checked.failures);
          const inputs = checked.inputs;
          const record = (id: string, outputs: Record<string, unknown>, step: PlanStep) => {
            next[urn] = { id, type: args.type, name: args.name, inputs, outputs };
            plan.push(step);
            return { id, state: withoutProvider(outputs) };
          };
          if (!old) {
            const created = await host.create(urn, inputs);
            return record(created.id, created.properties, { urn, name: args.name, op: "create" });
          }
          const diff = await host.diff(old.id, urn, old.outputs, inputs);
          if (diff.changes === "DIFF_NONE")
            return record(old.id, old.outputs, { urn, name: args.name, op: "same" });
          if (diff.replaces.length) {
            const created = await host.create(urn, inputs);
            replaced.push(old); // create before delete: the old one goes after the run
            return record(created.id, created.properties, {
              urn,
              name: args.name,
              op: "replace",
              replaces: diff.replaces,
            });
          }
          const updated = await host.update(old.id, urn, old.outputs, inputs);
          return record(old.id, updated.properties, { urn, name: args.name, op: "update" });
        } catch (e) {
          errors.push(e);
          throw e;
        }
      },
      call: (args) => {
        activity++;
        return args.inputs;
      },
    },
    "project",
    "stack",
    false,
  );
  program();
  await settle(() => activity, 60_000);
  if (errors.length) throw errors[0];
  for (const old of replaced)
    await host.delete(old.id, resourceUrn(old.name, { type: old.type }), old.outputs);
  for (const [urn, old] of Object.entries(state)) {
    if (!next[urn]) {
      await host.delete(old.id, urn, old.outputs);
      plan.push({ urn, name: old.name, op: "delete" });
    }
  }
  return { state: next, plan };
}

function withoutProvider(outputs: Record<string, unknown>): Record<string, unknown> {
  const { [PROVIDER_KEY]: _provider, ...rest } = outputs;
  void _provider;
  return rest;
}

/** Formats a plan like `pulumi preview --diff`: one line per resource that changes. */
export function formatPlan(plan: PlanStep[]): string {
  const sign = { create: "+", same: " ", update: "~", replace: "+-", delete: "-" } as const;
  const changed = plan.filter((s) => s.op !== "same");
  const lines = changed.map(
    (s) =>
      `${sign[s.op].padEnd(2)} ${s.name} ${s.op}${s.replaces ? ` [diff: ${s.replaces.join(", ")}]` : ""}`,
  );
  return [...lines, `${changed.length} change(s), ${plan.length - changed.length} unchanged`].join("\n");
}
