/**
 * A TEST HARNESS standing in for the Pulumi engine, because the Pulumi CLI cannot be installed here.
 * It runs a program under `pulumi.runtime.setMocks` and sends every dynamic resource to the REAL
 * dynamic-provider host over gRPC the way the engine (pulumi/pulumi v3.248.0) does:
 *
 * - {@link up}: Check, then Diff against the stored state, then Create / Update / create-before-delete
 *   Replace, and Delete for resources that left the program; the state is kept between runs.
 * - {@link preview}: the same Check and Diff, but no Create, Update or Delete runs. The dynamic-provider host
 *   never sets `supportsPreview`, so the engine hands back the new INPUTS as a created or updated resource's
 *   outputs (sdk/go/common/resource/plugin/provider_plugin.go `Create` and `Update`: `if req.Preview ...
 *   if !protocol.supportsPreview { return ...Properties: req.NewInputs }`), and the SDK resolves every declared
 *   output missing from them as unknown (sdk/nodejs/runtime/rpc.ts `resolveProperties`: `resolve(undefined,
 *   !isDryRun() ...)`), so dependents see unknowns exactly as under the real CLI.
 * - {@link refresh}: Read for every resource; the engine keeps the inputs Read returns, or the stored
 *   ones when it returns none (pkg/resource/deploy/step.go `RefreshStep.Apply`).
 *
 * Each step records the old and new INPUTS: the CLI's `[diff: ...]` and `preview --diff` are computed from
 * them, not from the provider's answer (pkg/backend/display/rows.go `getDiffInfo`: with no detailed diff, and
 * the dynamic host returns none, `step.Old.Inputs.DiffWithOptions(step.New.Inputs, IsInternalPropertyKey)`,
 * which skips keys starting with `__`). {@link formatPlan} prints what the CLI prints; the provider's
 * `replaces` are kept in the plan only as `pulumi preview --json` would show them.
 *
 * `@pulumi/command` resources (`command:remote:Command`, `command:local:Command`) are RUN for real, since
 * their provider binary cannot be fetched here: remote ones over SSH with the resource's own connection
 * values (OpenSSH client, tests/support/testbed.ts), local ones with their interpreter. The diff follows
 * pulumi-command v1.2.1 on pulumi-go-provider v1.3.0: only `triggers` replaces (the one input tagged
 * `provider:"replaceOnChanges"`, provider/pkg/provider/common/inputs.go; infer/resource.go
 * `derivedResourceController.Diff` forces replacement only for such inputs when the resource has an Update);
 * any other change, `connection` included, is an in-place update that runs `update` (or `create`) on the NEW
 * connection (remote/commandController.go `Update`), and delete runs `delete` with the stored inputs. Every
 * run, delete included, gets the stored `stdin` (remote/commandOutputs.go and local/commandOutputs.go `run`).
 * In a preview nothing runs: Create returns the inputs (its stdout and stderr are then unknown) and Update
 * the inputs with the old stdout and stderr (commandController.go `if preview { return ... }`). Read returns
 * the state as it is (infer/resource.go `Read`: no CustomRead).
 *
 * Resource options as the engine honours them: `ignoreChanges` (an ignored input takes its old value, or goes
 * when the old inputs lack it: step_generator.go `processIgnoreChanges` / properties_path.go `reset`), and
 * `retainOnDelete`, recorded in the state of every step, "same" included, and read from the OLD state when
 * a resource is deleted or replaced: then nothing is deleted (step.go DeleteStep.Apply). A replacement checks
 * the program's RAW inputs again, without the old inputs and without `ignoreChanges`, and creates from
 * those (step_generator.go `continueStepsFromDiff`: `prov.Check(... News: goal.Properties ...)`).
 *
 * Failures: a check failure or a failed step stops the deployment, and so does an exception in the program
 * (an unhandled rejection, such as a throw inside an `apply`: sdk/nodejs/cmd/run/run.ts `uncaughtHandler`
 * fails the program, and deployment_executor.go `Execute` bails on the source error before
 * `performPostSteps`): nothing is deleted. The steps that did complete are kept, as the engine's snapshot
 * keeps them; {@link partialState} gives that state, with replaced resources left pending deletion, which
 * the next successful `up` deletes (step_generator.go `GenerateDeletes`: `res.Delete` →
 * `NewDeleteReplacementStep`).
 */
import { availableParallelism } from "node:os";
import * as pulumi from "@pulumi/pulumi";
import { isUnknown as isSdkUnknown } from "@pulumi/pulumi/output";
import {
  PROVIDER_KEY,
  ProviderHost,
  UNKNOWN_VALUE,
  captureResources,
  isSecretValue,
  resourceUrn,
  revealSecrets,
  secretValue,
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
  /** A replaced resource whose delete did not run because the deployment failed; the next up deletes it. */
  pendingDelete?: boolean;
}

/** The harness's state: resources by URN (a resource pending deletion by URN plus `#delete`). */
export type EngineState = Record<string, StateEntry>;

/** One step of a plan. */
export interface PlanStep {
  urn: string;
  name: string;
  type: string;
  op: "create" | "same" | "update" | "replace" | "delete";
  /** The properties the provider named as causing a replacement: shown only by `pulumi preview --json`. */
  replaces?: string[];
  /** An update or replace: the stored inputs before (what the CLI's diff starts from). */
  oldInputs?: Record<string, unknown>;
  /** An update or replace: the checked inputs after. */
  newInputs?: Record<string, unknown>;
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

type Inputs = Record<string, unknown>;

/** The `@pulumi/command` resource types the harness runs. */
const COMMAND_TYPES = ["command:remote:Command", "command:local:Command"];
/**
 * Inputs whose change replaces a command: in pulumi-command v1.2.1 only `triggers`. A change of the whole
 * value (added, removed, unknown) is forced to a replacement by the provider (pulumi-go-provider v1.3.0
 * infer/resource.go `diff`: `forceReplace(k)` for the schema's replaceOnChanges input, tagged in
 * common/inputs.go `ResourceInputs.Triggers`); a change of an element (`triggers[3]`) by the engine, from the
 * SDK's `replaceOnChanges: ["triggers[*]"]` (@pulumi/command remote/command.js; step_generator.go
 * `applyReplaceOnChanges`). `connection` is not tagged (remote/command.go `CommandInputs`): an update.
 * pulumi/pulumi-command#855: triggers replace even when `update` is set.
 */
const COMMAND_REPLACE_KEYS = ["triggers"];
/** Bound on one command run. */
const COMMAND_TIMEOUT_MS = 120_000;

/** The partial state a failed deployment left (see the module comment), by the error it failed with. */
const partialStates = new WeakMap<object, EngineState>();

/**
 * The state a failed `up` left behind: the old state with every step that completed applied, resources
 * the run did not reach unchanged, and replaced resources pending deletion. Undefined for other errors.
 */
export function partialState(error: unknown): EngineState | undefined {
  return typeof error === "object" && error !== null ? partialStates.get(error) : undefined;
}

/**
 * How many resource operations (create, update, delete, a command run) run at once: `pulumi up --parallel`'s
 * default, `PULUMI_PARALLEL` when set, else GOMAXPROCS (the CPU count) x 4 (pulumi v3.248.0
 * pkg/cmd/pulumi/operations/up.go `defaultParallel`, the step executor's workers in
 * pkg/resource/deploy/step_executor.go `newStepExecutor`).
 */
export function engineParallelism(): number {
  const fromEnv = Number(process.env.PULUMI_PARALLEL);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : availableParallelism() * 4;
}

/** Runs at most `limit` of the given tasks at once, in arrival order. */
function limiter(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    while (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await task();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

/** Runs `program` once as `pulumi up` against `host`, starting from `state` (`{}` for a first up). */
export function up(
  program: () => void,
  host: ProviderHost,
  state: EngineState,
  /** Outputs of other stacks, by stack name, for `pulumi.StackReference`. */
  stacks: Record<string, Record<string, unknown>> = {},
): Promise<RunResult> {
  return deploy(program, host, state, stacks, false);
}

/**
 * Runs `program` once as `pulumi preview`: checks and diffs, runs nothing, changes nothing. The returned
 * state is `state` itself; the plan is what the following `up` would do if nothing else changes.
 */
export function preview(
  program: () => void,
  host: ProviderHost,
  state: EngineState,
  stacks: Record<string, Record<string, unknown>> = {},
): Promise<RunResult> {
  return deploy(program, host, state, stacks, true);
}

async function deploy(
  program: () => void,
  host: ProviderHost,
  state: EngineState,
  stacks: Record<string, Record<string, unknown>>,
  dryRun: boolean,
): Promise<RunResult> {
  const next: EngineState = {};
  const plan: PlanStep[] = [];
  const replaced: StateEntry[] = [];
  const errors: unknown[] = [];
  let activity = 0;
  // ignoreChanges and retainOnDelete per registration, read off the wire like the engine does (see captureResources).
  let inFlightIgnore: string[] = [];
  let inFlightRetain = false;
  // An exception in the program fails the deployment, as the language host's uncaughtHandler does
  // (sdk/nodejs/cmd/run/run.ts `process.on("unhandledRejection", uncaughtHandler)`).
  const onProgramError = (reason: unknown) => {
    activity++;
    errors.push(reason instanceof Error ? reason : new Error(`program failed: ${String(reason)}`));
  };
  const stopWatching = watchProgramFailures(onProgramError);

  // Step generation (Check, Diff) handles one registration at a time: the deployment executor's event loop
  // calls stepGen.GenerateSteps per event (pkg/resource/deploy/deployment_executor.go `handleSingleEvent`), and
  // that calls the provider's Check and Diff (step_generator.go `generateSteps`). The steps it yields run on
  // the step executor, at most engineParallelism() at once.
  const generate = limiter(1);
  const execute = limiter(engineParallelism());
  const step = async (
    args: pulumi.runtime.MockResourceArgs,
    ignoreChanges: string[],
    retainOnDelete: boolean,
  ) => {
    if (COMMAND_TYPES.includes(args.type)) {
      return commandStep(
        args.type,
        args.name,
        wireValue(args.inputs) as Inputs,
        { state, next, plan, replaced, dryRun, execute },
        { ignoreChanges, retainOnDelete },
      );
    }
    if (!args.type.startsWith("pulumi-nodejs:dynamic")) return { id: `${args.name}-id`, state: args.inputs };
    const urn = resourceUrn(args.name, { type: args.type });
    const raw = wireValue(args.inputs) as Inputs;
    const old = state[urn];
    // processIgnoreChanges: the engine sends the old value of an ignored input, as if the program had not changed it.
    const news = old ? applyIgnoreChanges(raw, old.inputs, ignoreChanges) : raw;
    const checkOrFail = async (olds: Inputs, values: Inputs) => {
      const checked = await generate(() => host.check(urn, olds, values));
      if (checked.failures.length)
        throw new CheckFailedError(urn, checked.failures, args.type, args.name, values);
      return checked.inputs;
    };
    // provider_plugin.go Check: the host takes no secrets, so the engine marks secret again whatever was.
    const inputs = annotateSecrets(await checkOrFail(old?.inputs ?? {}, news), news);
    const record = (
      id: string,
      outputs: Inputs,
      recorded: Inputs,
      s: Omit<PlanStep, "urn" | "name" | "type">,
    ) => {
      next[urn] = {
        id,
        type: args.type,
        name: args.name,
        inputs: recorded,
        outputs,
        ...retained(retainOnDelete),
      };
      plan.push({ urn, name: args.name, type: args.type, ...s });
      return { id, state: withoutProvider(outputs) };
    };
    if (!old) {
      // provider_plugin.go Create: in a preview the inputs stand for the outputs, and the id is unknown.
      const created = dryRun ? { id: "", properties: inputs } : await execute(() => host.create(urn, inputs));
      return record(created.id, annotateSecrets(created.properties, inputs), inputs, { op: "create" });
    }
    const diff = await generate(() => host.diff(old.id, urn, old.outputs, inputs));
    if (diff.changes === "DIFF_NONE") return record(old.id, old.outputs, inputs, { op: "same" });
    if (diff.replaces.length) {
      // continueStepsFromDiff: a replacement re-checks the program's raw inputs, without olds or ignoreChanges.
      const fresh = annotateSecrets(await checkOrFail({}, raw), raw);
      const created = dryRun ? { id: "", properties: fresh } : await execute(() => host.create(urn, fresh));
      replaced.push(old); // create before delete: the old one goes after the run
      return record(created.id, annotateSecrets(created.properties, fresh), fresh, {
        op: "replace",
        replaces: diff.replaces,
        oldInputs: old.inputs,
        newInputs: fresh,
      });
    }
    const updated = dryRun
      ? { properties: inputs }
      : await execute(() => host.update(old.id, urn, old.outputs, inputs));
    return record(old.id, annotateSecrets(updated.properties, inputs), inputs, {
      op: "update",
      oldInputs: old.inputs,
      newInputs: inputs,
    });
  };

  try {
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
          // The run rejects with the first error; later registrations get an empty resource, so the
          // program's pending outputs settle without the SDK leaking a rejection from each of them.
          if (errors.length > 0) return { id: "", state: {} };
          try {
            return await step(args, ignoreChanges, retainOnDelete);
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
      dryRun,
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
    try {
      program();
    } catch (e) {
      errors.push(e); // a synchronous throw fails the program the same way
    }
    await settle(() => activity, 60_000);
  } finally {
    stopWatching();
  }

  if (errors.length) {
    // The snapshot keeps what completed: the old state, the steps done, and replaced resources pending deletion.
    if (!dryRun && typeof errors[0] === "object" && errors[0] !== null) {
      const left: EngineState = { ...state, ...next };
      replaced.forEach((old, i) => {
        left[`${resourceUrn(old.name, { type: old.type })}#delete${i}`] = { ...old, pendingDelete: true };
      });
      partialStates.set(errors[0], left);
    }
    throw errors[0];
  }
  const remove = async (urn: string, old: StateEntry): Promise<void> => {
    if (dryRun) return;
    if (old.retainOnDelete) return; // DeleteStep.Apply: "the user has explicitly asked us to not delete"
    if (COMMAND_TYPES.includes(old.type))
      await runCommand(old.type, old.name, revealSecrets(old.inputs) as Inputs, "delete");
    else await host.delete(old.id, urn, old.outputs);
  };
  for (const old of replaced) await remove(resourceUrn(old.name, { type: old.type }), old);
  // Removed resources (and replaced ones a failed up left pending) go last, newest first (dependents were
  // registered after what they depend on): step_generator.go GenerateDeletes walks the old snapshot backwards.
  for (const [key, old] of Object.entries(state).reverse()) {
    const urn = old.pendingDelete ? key.replace(/#delete\d+$/, "") : key;
    if (old.pendingDelete || !next[urn]) {
      await remove(urn, old);
      plan.push({
        urn,
        name: old.name,
        type: old.type,
        op: "delete",
        ...(old.retainOnDelete ? { retained: true } : {}),
      });
    }
  }
  return { state: dryRun ? state : next, plan };
}

/**
 * Runs `pulumi refresh`: Read for every resource in `state`. A dynamic resource keeps the inputs its Read
 * returns, or its stored inputs when Read returns none, and takes the outputs Read returns; an empty id means
 * it is gone (step.go `RefreshStep.Apply`). A command's Read returns its state unchanged (pulumi-go-provider
 * v1.3.0 infer/resource.go `Read` without CustomRead). The plan lists an `update` for every resource whose
 * inputs or outputs changed and a `delete` for every resource gone.
 */
export async function refresh(host: ProviderHost, state: EngineState): Promise<RunResult> {
  const next: EngineState = {};
  const plan: PlanStep[] = [];
  for (const [key, entry] of Object.entries(state)) {
    const base = { urn: key, name: entry.name, type: entry.type };
    if (COMMAND_TYPES.includes(entry.type) || entry.pendingDelete) {
      next[key] = entry;
      plan.push({ ...base, op: "same" });
      continue;
    }
    const read = await host.read(entry.id, key, entry.outputs, entry.inputs);
    if (read.id === "") {
      plan.push({ ...base, op: "delete" });
      continue;
    }
    const inputs = read.inputs ? annotateSecrets(read.inputs, entry.inputs) : entry.inputs;
    const outputs = annotateSecrets(read.properties, entry.outputs);
    next[key] = { ...entry, id: read.id, inputs, outputs };
    const changed =
      stableText(revealSecrets(inputs)) !== stableText(revealSecrets(entry.inputs)) ||
      stableText(revealSecrets(outputs)) !== stableText(revealSecrets(entry.outputs));
    plan.push(
      changed
        ? { ...base, op: "update", oldInputs: entry.inputs, newInputs: inputs }
        : { ...base, op: "same" },
    );
  }
  return { state: next, plan };
}

/**
 * The real `process`: under jest a test's `process` is a copy whose events never fire, and jest-circus listens
 * for unhandled rejections on the real one (jest-circus globalErrorHandlers.js `parentProcess`). `module`'s
 * loader is Node's own, outside jest's registry.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const realProcess = (require("module") as { _load(request: string): NodeJS.Process })._load("process");

/**
 * Sends the program's unhandled rejections to `onError` until the returned function is called, as the
 * language host does (sdk/nodejs/cmd/run/run.ts `process.on("unhandledRejection", uncaughtHandler)`): a throw
 * inside an `apply` whose output a resource takes rejects that resource's registration, which the SDK starts
 * and drops (sdk/nodejs/runtime/resource.ts `registerResource`). Jest's own listeners are set aside meanwhile,
 * as jest itself does for a test (globalErrorHandlers.js `injectGlobalErrorHandlers`).
 */
function watchProgramFailures(onError: (e: unknown) => void): () => void {
  const saved = realProcess.listeners("unhandledRejection");
  realProcess.removeAllListeners("unhandledRejection");
  realProcess.on("unhandledRejection", onError);
  return () => {
    realProcess.removeListener("unhandledRejection", onError);
    for (const l of saved) realProcess.on("unhandledRejection", l as (...args: unknown[]) => void);
  };
}

/**
 * provider_plugin.go `annotateSecrets`: copies the secretness of `ins` onto `outs` by key, recursing into
 * objects: the dynamic host takes and returns no secrets (ConfigureResponse acceptSecrets=false), and the
 * engine marks secret again every value whose input was or held one. Returns a new object.
 */
function annotateSecrets(outs: Inputs, ins: Inputs): Inputs {
  const result: Inputs = { ...outs };
  const holdsSecret = (v: unknown): boolean =>
    isSecretValue(v) ||
    (Array.isArray(v)
      ? v.some(holdsSecret)
      : v !== null && typeof v === "object" && Object.values(v).some(holdsSecret));
  const isObject = (v: unknown): v is Inputs =>
    v !== null && typeof v === "object" && !Array.isArray(v) && !isSecretValue(v);
  for (const [k, inValue] of Object.entries(ins)) {
    if (!(k in result)) continue;
    const outValue = result[k];
    if (isObject(outValue) && isObject(inValue)) result[k] = annotateSecrets(outValue, inValue);
    else if (!isSecretValue(outValue) && holdsSecret(inValue)) result[k] = secretValue(outValue);
  }
  return result;
}

function retained(retainOnDelete: boolean): { retainOnDelete?: true } {
  return retainOnDelete ? { retainOnDelete: true } : {};
}

function withoutProvider(outputs: Record<string, unknown>): Record<string, unknown> {
  const { [PROVIDER_KEY]: _provider, ...rest } = outputs;
  void _provider;
  return rest;
}

/**
 * A value as the engine sends it to a provider in a preview: the SDK's unknowns become the unknown
 * placeholder string (provider_plugin.go MarshalProperties with `KeepUnknowns` → `UnknownStringValue`).
 */
function wireValue(value: unknown): unknown {
  if (isSdkUnknown(value)) return UNKNOWN_VALUE;
  if (Array.isArray(value)) return value.map(wireValue);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wireValue(v)]));
  }
  return value;
}

/** A property path of `ignoreChanges` (`a`, `a.b`, `a[0]`, `a["b.c"]`), as resource.ParsePropertyPath reads it. */
function parsePath(path: string): (string | number)[] {
  const parts: (string | number)[] = [];
  const re = /([^.[\]]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < path.length) {
    re.lastIndex = at;
    m = re.exec(path);
    if (!m)
      throw new Error(`ignoreChanges path ${JSON.stringify(path)}: the harness does not read this syntax`);
    if (m[1] === "*")
      throw new Error(`ignoreChanges path ${JSON.stringify(path)}: wildcards are not modelled`);
    parts.push(m[1] ?? (m[2] !== undefined ? Number(m[2]) : JSON.parse(`"${m[3]}"`)));
    at = re.lastIndex;
    if (path[at] === ".") at++;
  }
  return parts;
}

/**
 * processIgnoreChanges (step_generator.go) with PropertyPath.reset (sdk/go/common/resource/properties_path.go):
 * each ignored path takes its value from the old inputs; a leaf the old inputs lack is removed; paths
 * through added or removed elements are left alone (the engine only logs them). Secrets are looked through.
 */
export function applyIgnoreChanges(inputs: Inputs, oldInputs: Inputs, paths: readonly string[]): Inputs {
  const result = structuredClone(inputs);
  const isObj = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  for (const path of paths) {
    const keys = parsePath(path);
    let o: unknown = oldInputs;
    let n: unknown = result;
    let oldSecret = false; // reset: a value taken from inside an old secret stays secret
    let newSecret = false;
    for (let i = 0; i < keys.length; i++) {
      while (isSecretValue(o)) [o, oldSecret] = [o.value, true];
      while (isSecretValue(n)) [n, newSecret] = [n.value, true];
      const k = keys[i];
      const take = (v: unknown) =>
        oldSecret && !newSecret ? secretValue(structuredClone(v)) : structuredClone(v);
      if (i === keys.length - 1) {
        if (typeof k === "number") {
          if (Array.isArray(o) && Array.isArray(n) && k < o.length && k < n.length) n[k] = take(o[k]);
        } else if (isObj(o) && k in o) {
          if (isObj(n)) n[k] = take(o[k]);
        } else if (isObj(n)) delete n[k];
        break;
      }
      if (typeof k === "number") {
        if (!Array.isArray(o) || !Array.isArray(n) || k >= o.length || k >= n.length) break;
        [o, n] = [o[k], n[k]];
        continue;
      }
      // Neither, or only the old, has it: nothing to reset (or a path error the engine only logs). Only the
      // new has it: go on, and the leaf the old lacks is removed from the new.
      if (!isObj(o) || !isObj(n) || !(k in n)) break;
      [o, n] = [k in o ? o[k] : undefined, n[k]];
    }
  }
  return result;
}

/** Stable JSON for comparing values: object keys sorted. */
function stableText(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v as object)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]]),
        )
      : v,
  );
}

/**
 * The CLI's short diff of a step (rows.go `getDiffInfo` → `writeShortDiff`): for an update or replace, the
 * top-level input keys added, deleted and updated between the old and new inputs, keys starting with `__`
 * skipped; a value that is or holds an unknown counts as updated. Nothing for creates, deletes and sames.
 */
export function inputDiff(step: PlanStep): { adds: string[]; deletes: string[]; updates: string[] } {
  const olds = step.oldInputs;
  const news = step.newInputs;
  const none = { adds: [], deletes: [], updates: [] };
  if (step.op === "same" || !olds || !news) return none;
  const keys = (o: Inputs) =>
    Object.keys(o).filter((k) => !k.startsWith("__") && o[k] !== undefined && o[k] !== null);
  const oldKeys = keys(olds);
  const newKeys = keys(news);
  return {
    adds: newKeys.filter((k) => !oldKeys.includes(k)).sort(),
    deletes: oldKeys.filter((k) => !newKeys.includes(k)).sort(),
    updates: newKeys
      .filter((k) => oldKeys.includes(k))
      .filter((k) => stableText(revealSecrets(olds[k])) !== stableText(revealSecrets(news[k])))
      .sort(),
  };
}

/** `[diff: +a-b~c,d]` as the CLI prints it after a step (writeShortDiff / writePropertyKeys), or "". */
export function shortDiff(step: PlanStep): string {
  const d = inputDiff(step);
  const text = [
    d.adds.length ? `+${d.adds.join(",")}` : "",
    d.deletes.length ? `-${d.deletes.join(",")}` : "",
    d.updates.length ? `~${d.updates.join(",")}` : "",
  ].join("");
  return step.oldInputs && step.newInputs && step.op !== "same" ? `[diff: ${text}]` : "";
}

/** One line per step that changes something: `name op [diff: ...]`, as the CLI's rows show it. */
export function planSummary(plan: PlanStep[]): string[] {
  return plan
    .filter((s) => s.op !== "same")
    .map((s) => [s.name, s.op, s.retained ? "[retain]" : shortDiff(s)].filter(Boolean).join(" "));
}

/** A value as `preview --diff` shows it: strings quoted, secrets `[secret]`, unknowns `[unknown]`. */
function shownValue(v: unknown): string {
  if (isSecretValue(v)) return "[secret]";
  if (v === UNKNOWN_VALUE) return "[unknown]";
  if (typeof v === "string") return JSON.stringify(v.length > 72 ? `${v.slice(0, 69)}...` : v);
  if (v !== null && typeof v === "object") {
    const text = JSON.stringify(v, (_k, x) =>
      isSecretValue(x) ? "[secret]" : x === UNKNOWN_VALUE ? "[unknown]" : x,
    );
    return text.length > 72 ? `${text.slice(0, 69)}...` : text;
  }
  return String(v);
}

/**
 * Formats a plan like `pulumi preview --diff`: one row per resource that changes, with its short diff, and
 * with `details` the changed inputs under it (`~ key: old => new`, long values cut short, which the CLI
 * does not do; secrets shown as `[secret]` as the CLI does without --show-secrets).
 */
export function formatPlan(plan: PlanStep[], opts: { details?: boolean } = {}): string {
  const sign = { create: "+", same: " ", update: "~", replace: "+-", delete: "-" } as const;
  const changed = plan.filter((s) => s.op !== "same");
  const lines: string[] = [];
  for (const s of changed) {
    const tail = s.retained ? "[retain]" : shortDiff(s);
    lines.push(`${sign[s.op].padEnd(2)} ${s.name} ${s.op}${tail ? ` ${tail}` : ""}`);
    if (!opts.details || !s.oldInputs || !s.newInputs) continue;
    const d = inputDiff(s);
    for (const k of d.adds) lines.push(`      + ${k}: ${shownValue(s.newInputs[k])}`);
    for (const k of d.deletes) lines.push(`      - ${k}: ${shownValue(s.oldInputs[k])}`);
    for (const k of d.updates)
      lines.push(`      ~ ${k}: ${shownValue(s.oldInputs[k])} => ${shownValue(s.newInputs[k])}`);
  }
  return [...lines, `${changed.length} change(s), ${plan.length - changed.length} unchanged`].join("\n");
}

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
  raw: Inputs,
  run: {
    state: EngineState;
    next: EngineState;
    plan: PlanStep[];
    replaced: StateEntry[];
    dryRun: boolean;
    /** The step executor (see `deploy`). */
    execute: <T>(task: () => Promise<T>) => Promise<T>;
  },
  options: { ignoreChanges: string[]; retainOnDelete: boolean },
): Promise<{ id: string; state: Inputs }> {
  const urn = resourceUrn(name, { type });
  const old = run.state[urn];
  const inputs = old ? applyIgnoreChanges(raw, old.inputs, options.ignoreChanges) : raw;
  const record = async (
    id: string,
    op: PlanStep["op"],
    which?: "create" | "update",
    extra: Partial<PlanStep> = {},
  ) => {
    // In a preview nothing runs: Create hands back the inputs (stdout/stderr then unknown to the program),
    // Update the inputs with the old stdout/stderr (commandController.go Create/Update `if preview`).
    const out =
      which === "create" && run.dryRun
        ? {}
        : which && !run.dryRun
          ? await run.execute(() => runCommand(type, name, revealSecrets(inputs) as Inputs, which))
          : { stdout: old!.outputs.stdout, stderr: old!.outputs.stderr };
    const outputs = { ...inputs, ...out };
    run.next[urn] = { id, type, name, inputs, outputs, ...retained(options.retainOnDelete) };
    run.plan.push({ urn, name, type, op, ...extra });
    return { id, state: outputs };
  };
  const newId = () => (run.dryRun ? "" : `${name}-${Date.now()}`);
  if (!old) return record(newId(), "create", "create");
  const changed = changedKeys(old.inputs, inputs);
  if (changed.length === 0) return record(old.id, "same");
  const diffed = { oldInputs: old.inputs, newInputs: inputs };
  if (changed.some((k) => COMMAND_REPLACE_KEYS.includes(k))) {
    run.replaced.push(old);
    return record(newId(), "replace", "create", {
      replaces: changed.filter((k) => COMMAND_REPLACE_KEYS.includes(k)),
      ...diffed,
    });
  }
  return record(old.id, "update", "update", diffed);
}

/** The top-level input keys whose values differ (infer/resource.go `diff` over old and new inputs). */
function changedKeys(olds: Inputs, news: Inputs): string[] {
  const keys = [...new Set([...Object.keys(olds), ...Object.keys(news)])].filter((k) => !k.startsWith("__"));
  return keys.filter((k) => stableText(revealSecrets(olds[k])) !== stableText(revealSecrets(news[k]))).sort();
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
