/**
 * A TEST HARNESS standing in for the Pulumi engine, because the Pulumi CLI cannot be installed here.
 * It runs a program under `pulumi.runtime.setMocks` and sends every dynamic resource to the REAL
 * dynamic-provider host over gRPC the way the engine does for `pulumi up`: Check, then Diff against
 * the stored state, then Create / Update / create-before-delete Replace, and Delete for resources that
 * left the program. State is kept between runs, and each run yields a plan like `pulumi preview --diff`.
 *
 * `@pulumi/command` resources (`command:remote:Command`, `command:local:Command`) are RUN for real, since
 * their provider binary cannot be fetched here: remote ones over SSH with the resource's own connection
 * values (OpenSSH client, tests/support/testbed.ts), local ones with their interpreter. The diff follows
 * the command provider 1.x: a change of `triggers` or `connection` replaces (create the new one, delete the
 * old one after the run; pulumi/pulumi-command#855: triggers replace even when `update` is set), any other
 * input change is an update that runs `update` (or `create`), and delete runs `delete`; every run, delete
 * included, gets the stored `stdin` (pulumi-command v1.2.1 remote/commandOutputs.go and local/commandOutputs.go `run`).
 *
 * Two resource options are honoured as the engine does: `ignoreChanges` (the old value of an ignored input
 * is used, or the input is dropped when the old inputs lack it: step_generator.go processIgnoreChanges), and
 * `retainOnDelete`, recorded in the state of every step, "same" included, and read from the OLD state when
 * a resource is deleted or replaced: then nothing is deleted (step.go DeleteStep.Apply).
 */
import * as pulumi from "@pulumi/pulumi";
import {
  PROVIDER_KEY,
  ProviderHost,
  captureResources,
  isSecretValue,
  resourceUrn,
  revealSecrets,
  settle,
} from "./pulumiHost";
import {
  CommandResult,
  RemoteConnection,
  interruptRemoteCommand,
  runLocalCommand,
  runRemoteCommand,
} from "./testbed";

/** One resource in the harness's state. */
export interface StateEntry {
  id: string;
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
  /** The resource was registered with `retainOnDelete`: deleting it only forgets it. */
  retainOnDelete?: boolean;
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
  /** The properties that changed, for an update. */
  diffs?: string[];
  /** A delete of a resource with `retainOnDelete`: nothing was deleted, the state forgot it. */
  retained?: boolean;
}

/** What a run returns. */
export interface RunResult {
  state: EngineState;
  plan: PlanStep[];
}

/**
 * A value as the engine prints it in a check failure: Go's `%v` of a `resource.PropertyValue`, whose
 * `String()` is `{%v}` of the underlying value (pulumi v3.248.0 sdk/go/common/resource/properties.go
 * `PropertyValue.String`). Strings print bare, arrays as `[a b]`, objects as Go maps (`map[k:v ...]`, keys
 * sorted), and a secret as the `*resource.Secret` it is, `&{element}`: UNMASKED, since `Secret` has no
 * `String` method.
 */
function engineValueText(value: unknown): string {
  const inner = (v: unknown): string => {
    if (isSecretValue(v)) return `&{${engineValueText(v.value)}}`;
    if (v === null || v === undefined) return "<nil>";
    if (Array.isArray(v)) return `[${v.map(engineValueText).join(" ")}]`;
    if (typeof v === "object") {
      const o = v as Record<string, unknown>;
      return `map[${Object.keys(o)
        .sort()
        .map((k) => `${k}:${engineValueText(o[k])}`)
        .join(" ")}]`;
    }
    return String(v);
  };
  return `{${inner(value)}}`;
}

/**
 * The engine's message for one check failure (pulumi v3.248.0 pkg/resource/deploy/step_generator.go
 * `issueCheckFailures`): with a property, `diag.GetResourcePropertyInvalidValueError`, which prints that
 * property's input value (see {@link engineValueText}); without one, `diag.GetResourceInvalidError`, the
 * reason alone (sdk/go/common/diag/errors.go).
 */
export function checkFailureText(
  type: string,
  name: string,
  inputs: Record<string, unknown>,
  failure: { property: string; reason: string },
): string {
  return failure.property !== ""
    ? `${type} resource '${name}': property ${failure.property} value ${engineValueText(inputs[failure.property])} has a problem: ${failure.reason}`
    : `${type} resource '${name}' has a problem: ${failure.reason}`;
}

/** A check failure surfaced as the engine prints it (see {@link checkFailureText}), one line each. */
export class CheckFailedError extends Error {
  constructor(
    readonly urn: string,
    readonly failures: { property: string; reason: string }[],
    type: string,
    name: string,
    inputs: Record<string, unknown>,
  ) {
    super(`${urn}:\n${failures.map((f) => checkFailureText(type, name, inputs, f)).join("\n")}`);
  }
}

/** Runs `program` once against `host`, starting from `state` (an empty object for a first `up`). */
export async function up(
  program: () => void,
  host: ProviderHost,
  state: EngineState,
  /** Outputs of other stacks, by stack name, for `pulumi.StackReference`. */
  stacks: Record<string, Record<string, unknown>> = {},
): Promise<RunResult> {
  const next: EngineState = {};
  const plan: PlanStep[] = [];
  const replaced: StateEntry[] = [];
  const errors: unknown[] = [];
  let activity = 0;
  // ignoreChanges and retainOnDelete per registration, read off the wire like the engine does (see captureResources).
  let inFlightIgnore: string[] = [];
  let inFlightRetain = false;

  await pulumi.runtime.setMocks(
    {
      newResource: async (args) => {
        activity++;
        const ignoreChanges = inFlightIgnore;
        const retainOnDelete = inFlightRetain;
        inFlightIgnore = [];
        inFlightRetain = false;
        if (args.type === "pulumi:pulumi:StackReference") {
          const name = String(args.inputs.name);
          if (!(name in stacks)) throw new Error(`StackReference: no stack ${name} in this harness run`);
          return { id: name, state: { name, outputs: stacks[name], secretOutputNames: [] } };
        }
        // After a failed step nothing else runs: pulumi v3.248.0 pkg/resource/deploy/step_executor.go
        // executeChain -> cancelDueToError -> se.cancel() (without --continue-on-error), and a check failure
        // ends step generation (step_generator.go issueCheckFailures -> deployment_executor.go Execute).
        // `up` rejects with the first error below; later registrations get an empty resource, so the
        // program's pending outputs settle without the SDK leaking a rejection from each of them.
        if (errors.length > 0) return { id: "", state: {} };
        if (COMMAND_TYPES.includes(args.type)) {
          try {
            return await commandStep(
              args.type,
              args.name,
              revealSecrets(args.inputs) as Inputs,
              state,
              next,
              plan,
              replaced,
              { ignoreChanges, retainOnDelete },
            );
          } catch (e) {
            errors.push(e); // see the cancellation above
            return { id: "", state: {} };
          }
        }
        if (!args.type.startsWith("pulumi-nodejs:dynamic"))
          return { id: `${args.name}-id`, state: args.inputs };
        const urn = resourceUrn(args.name, { type: args.type });
        try {
          const old = state[urn];
          // ignoreChanges: the engine sends the old value of an ignored input, as if the program had not changed it.
          const news = { ...args.inputs };
          for (const k of old ? ignoreChanges : []) if (k in old!.inputs) news[k] = old!.inputs[k];
          const checked = await host.check(urn, old?.inputs ?? {}, news);
          if (checked.failures.length)
            throw new CheckFailedError(urn, checked.failures, args.type, args.name, news);
          const inputs = checked.inputs;
          const record = (id: string, outputs: Record<string, unknown>, step: PlanStep) => {
            next[urn] = {
              id,
              type: args.type,
              name: args.name,
              inputs,
              outputs,
              ...retained(retainOnDelete),
            };
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
          return record(old.id, updated.properties, {
            urn,
            name: args.name,
            op: "update",
            diffs: diff.diffs.length ? diff.diffs : changedInputs(old.inputs, inputs),
          });
        } catch (e) {
          errors.push(e); // see the cancellation above
          return { id: "", state: {} };
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
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource: (
      req: { getIgnorechangesList(): string[]; getRetainondelete(): boolean },
      cb: unknown,
    ) => unknown;
  };
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    // MockMonitor calls mocks.newResource synchronously, before its first await.
    inFlightIgnore = req.getIgnorechangesList();
    inFlightRetain = req.getRetainondelete();
    try {
      return register(req, cb);
    } finally {
      inFlightIgnore = [];
      inFlightRetain = false;
    }
  };
  program();
  await settle(() => activity, 60_000);
  if (errors.length) throw errors[0];
  const remove = async (urn: string, old: StateEntry): Promise<void> => {
    if (old.retainOnDelete) return; // DeleteStep.Apply: "the user has explicitly asked us to not delete"
    if (COMMAND_TYPES.includes(old.type)) await runCommand(old.type, old.name, old.inputs, "delete");
    else await host.delete(old.id, urn, old.outputs);
  };
  for (const old of replaced) await remove(resourceUrn(old.name, { type: old.type }), old);
  // Removed resources go last, newest first (dependents were registered after what they depend on).
  for (const [urn, old] of Object.entries(state).reverse()) {
    if (!next[urn]) {
      await remove(urn, old);
      plan.push({ urn, name: old.name, op: "delete", ...(old.retainOnDelete ? { retained: true } : {}) });
    }
  }
  return { state: next, plan };
}

function retained(retainOnDelete: boolean): { retainOnDelete?: true } {
  return retainOnDelete ? { retainOnDelete: true } : {};
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
      `${sign[s.op].padEnd(2)} ${s.name} ${s.op}${
        s.replaces
          ? ` [diff: ${s.replaces.join(", ")}]`
          : s.diffs?.length
            ? ` [diff: ${s.diffs.join(", ")}]`
            : s.retained
              ? " [retain]"
              : ""
      }`,
  );
  return [...lines, `${changed.length} change(s), ${plan.length - changed.length} unchanged`].join("\n");
}

type Inputs = Record<string, unknown>;

/** The `@pulumi/command` resource types the harness runs. */
const COMMAND_TYPES = ["command:remote:Command", "command:local:Command"];
/** Inputs whose change replaces a command (the provider's replaceOnChanges). */
const COMMAND_REPLACE_KEYS = ["triggers", "connection"];
/** Bound on one command run. */
const COMMAND_TIMEOUT_MS = 120_000;

/** Runs one of a command resource's commands; rejects on a non-zero exit like the provider does. */
async function runCommand(
  type: string,
  name: string,
  inputs: Inputs,
  which: "create" | "update" | "delete",
): Promise<{ stdout: string; stderr: string }> {
  // pulumi-command v1.2.1 provider/pkg/provider/{remote,local}/commandController.go: Update runs `update`,
  // or `create` when `update` is unset; Delete runs the stored `delete`.
  const text = (which === "update" ? (inputs.update ?? inputs.create) : inputs[which]) as string | undefined;
  if (text === undefined || text === "") return { stdout: "", stderr: "" };
  // Every run feeds the stored stdin, delete included: Delete calls run() on the stored state, and run()
  // sets the session's (remote/commandOutputs.go) or process's (local/commandOutputs.go) stdin from it.
  const stdin = inputs.stdin as string | undefined;
  const r =
    type === "command:remote:Command"
      ? await runRemoteCommand(inputs.connection as RemoteConnection, text, stdin, {
          timeoutMs: COMMAND_TIMEOUT_MS,
        })
      : await runLocalCommand(text, stdin, {
          interpreter: inputs.interpreter as string[] | undefined,
          dir: inputs.dir as string | undefined,
          timeoutMs: COMMAND_TIMEOUT_MS,
        });
  if (r.code !== 0 || r.timedOut) {
    throw new Error(
      `${type} ${name}: ${which} failed (exit ${r.code}${r.timedOut ? ", timed out" : ""}): ${r.stderr}`,
    );
  }
  return { stdout: r.stdout.replace(/\n$/, ""), stderr: r.stderr.replace(/\n$/, "") };
}

/** Diff, run and record one command resource; returns what the mock hands back to the program. */
async function commandStep(
  type: string,
  name: string,
  inputs: Inputs,
  state: EngineState,
  next: EngineState,
  plan: PlanStep[],
  replaced: StateEntry[],
  options: { ignoreChanges: string[]; retainOnDelete: boolean },
): Promise<{ id: string; state: Inputs }> {
  const urn = resourceUrn(name, { type });
  const old = state[urn];
  // processIgnoreChanges: an ignored input takes its old value, or goes when the old inputs lack it.
  if (old) {
    for (const k of options.ignoreChanges) {
      if (k in old.inputs) inputs[k] = old.inputs[k];
      else delete inputs[k];
    }
  }
  const record = async (
    id: string,
    op: PlanStep["op"],
    which?: "create" | "update",
    extra: Partial<PlanStep> = {},
  ) => {
    const out = which
      ? await runCommand(type, name, inputs, which)
      : { stdout: old!.outputs.stdout, stderr: old!.outputs.stderr };
    const outputs = { ...inputs, ...out };
    next[urn] = { id, type, name, inputs, outputs, ...retained(options.retainOnDelete) };
    plan.push({ urn, name, op, ...extra });
    return { id, state: outputs };
  };
  if (!old) return record(`${name}-${Date.now()}`, "create", "create");
  const changed = changedInputs(old.inputs, inputs);
  if (changed.length === 0) return record(old.id, "same");
  const replaces = changed.filter((k) => COMMAND_REPLACE_KEYS.includes(k));
  if (replaces.length) {
    replaced.push(old);
    return record(`${name}-${Date.now()}`, "replace", "create", { replaces });
  }
  return record(old.id, "update", "update", { diffs: changed });
}

/**
 * The input properties that differ, as the engine shows them for an update when the provider reports no
 * detailed diff (the Node dynamic-provider host forwards only changes and replaces).
 */
function changedInputs(olds: Inputs, news: Inputs): string[] {
  const keys = [...new Set([...Object.keys(olds), ...Object.keys(news)])].filter((k) => k !== PROVIDER_KEY);
  return keys.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k])).sort();
}

/**
 * Runs `program` under mocks and starts the `create` of its one `command:remote:Command` with only the first
 * `keep(stdin)` characters of its stdin, then SIGKILLs the ssh client, as a deployment dying mid-transfer would
 * (see {@link interruptRemoteCommand}).
 */
export async function interruptCapturedCommand(
  program: () => void,
  keep: (stdin: string) => number,
): Promise<CommandResult> {
  const captured = await captureResources(program);
  const cmd = revealSecrets(captured.find((c) => c.type === "command:remote:Command")!.inputs) as {
    create: string;
    stdin: string;
    connection: RemoteConnection;
  };
  return interruptRemoteCommand(cmd.connection, cmd.create, cmd.stdin.slice(0, keep(cmd.stdin)));
}
