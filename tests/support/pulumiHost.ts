/**
 * Test harness for Pulumi dynamic providers, for use in jest tests only (it is not shipped and not a
 * replacement for the Pulumi engine).
 *
 * The Pulumi CLI cannot be installed here, so this harness plays the two roles the CLI would:
 *
 * 1. {@link captureResources} runs a Pulumi program under `pulumi.runtime.setMocks` and records every
 *    resource registration (type, name, URN, the resolved inputs the SDK sends, and the resource options
 *    the SDK puts on the wire). For a `pulumi.dynamic.Resource` the inputs hold `__provider`: the provider
 *    as serialized by the SDK's own closure serializer.
 * 2. {@link startProviderHost} launches the REAL dynamic-provider host shipped in `@pulumi/pulumi`
 *    (`cmd/dynamic-provider/index.js`) the way the engine's `pulumi-resource-pulumi-nodejs` shim does, and
 *    speaks the `pulumirpc.ResourceProvider` gRPC protocol to it with plain JS objects, marshalled the way
 *    the engine marshals them (google.protobuf.Struct, secrets stripped when the host does not accept them,
 *    Create/Update skipped during preview when the host does not support preview).
 *
 * Everything is bounded and loopback-only: the host and the fake engine listen on 127.0.0.1, every wait
 * has a timeout, and {@link ProviderHost.stop} always ends the host process (SIGTERM, then SIGKILL).
 */
import { ChildProcess, spawn } from "child_process";
import * as path from "path";

import * as grpc from "@grpc/grpc-js";
import * as pulumi from "@pulumi/pulumi";
import * as engrpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import type * as engproto from "@pulumi/pulumi/proto/engine_pb";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import type * as resproto from "@pulumi/pulumi/proto/resource_pb";
import * as statusproto from "@pulumi/pulumi/proto/status_pb";
import * as emptyproto from "google-protobuf/google/protobuf/empty_pb";
import * as structproto from "google-protobuf/google/protobuf/struct_pb";

// ---------------------------------------------------------------------------------------------------------
// Wire constants and small helpers
// ---------------------------------------------------------------------------------------------------------

/** The property under which a dynamic resource carries its serialized provider. */
export const PROVIDER_KEY = "__provider";

/** Key of the Pulumi "special signature" marker (`4dabf181...`), as defined by the SDK. */
export const SPECIAL_SIG_KEY: string = pulumi.runtime.specialSigKey;

/** Signature value that marks a secret (`1b470612...`), as defined by the SDK. */
export const SECRET_SIG: string = pulumi.runtime.specialSecretSig;

/**
 * Replaces the SDK's secret sentinels by their values, deeply: what a provider receives, and what the
 * engine sends a provider that does not accept secrets (acceptSecrets=false).
 */
export function revealSecrets(value: unknown): unknown {
  if (isSecretValue(value)) return revealSecrets(value.value);
  if (Array.isArray(value)) return value.map(revealSecrets);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revealSecrets(v)]));
  }
  return value;
}

/**
 * A provider host for programs without dynamic resources (only `@pulumi/command` commands, which the engine
 * stand-in runs itself): any call fails the test.
 */
export const NO_DYNAMIC: ProviderHost = new Proxy({} as ProviderHost, {
  get: () => {
    throw new Error("this program has no dynamic resources");
  },
});

/** The placeholder the engine sends for unknown values during preview. */
export const UNKNOWN_VALUE: string = pulumi.runtime.unknownValue;

/** Wraps `value` in the Pulumi secret sentinel `{ "4dabf181...": "1b470612...", value }`. */
export function secretValue(value: unknown): Record<string, unknown> {
  return { [SPECIAL_SIG_KEY]: SECRET_SIG, value };
}

/** True when `v` is a Pulumi secret sentinel object. */
export function isSecretValue(v: unknown): v is Record<string, unknown> & { value: unknown } {
  return (
    typeof v === "object" && v !== null && (v as Record<string, unknown>)[SPECIAL_SIG_KEY] === SECRET_SIG
  );
}

/** Default project and stack names, the same defaults `pulumi.runtime.setMocks` uses. */
export const DEFAULT_PROJECT = "project";
/** See {@link DEFAULT_PROJECT}. */
export const DEFAULT_STACK = "stack";

/**
 * The type token of a dynamic resource, exactly as `pulumi.dynamic.Resource` builds it:
 * `pulumi-nodejs:dynamic:Resource` without a module, `pulumi-nodejs:dynamic/<module>:<type>` with one.
 */
export function dynamicTypeToken(module?: string, type = "Resource"): string {
  return `pulumi-nodejs:dynamic${module ? `/${module}` : ""}:${type}`;
}

/**
 * A top-level (parentless) resource URN: `urn:pulumi:<stack>::<project>::<type>::<name>`, the format both
 * the engine and the SDK's mock monitor use. `type` defaults to `pulumi-nodejs:dynamic:Resource`.
 */
export function resourceUrn(
  name: string,
  opts: { type?: string; project?: string; stack?: string } = {},
): string {
  const type = opts.type ?? dynamicTypeToken();
  return `urn:pulumi:${opts.stack ?? DEFAULT_STACK}::${opts.project ?? DEFAULT_PROJECT}::${type}::${name}`;
}

/** Rejects with `message` if `p` has not settled within `ms` milliseconds. */
function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} (timed out after ${ms} ms)`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------------------
// captureResources: run a program under mocks and record the registrations
// ---------------------------------------------------------------------------------------------------------

/** Resource options as the SDK put them on the RegisterResource request (read from the wire). */
export interface CapturedOptions {
  custom: boolean;
  /** Parent URN ("" for none). */
  parent: string;
  /** Explicit provider reference ("" for the default provider). */
  provider: string;
  protect: boolean;
  dependencies: string[];
  additionalSecretOutputs: string[];
  ignoreChanges: string[];
  replaceOnChanges: string[];
  deleteBeforeReplace: boolean;
  retainOnDelete: boolean;
}

/** One `newResource` call seen by the mocks. */
export interface CapturedResource {
  /** Type token, e.g. `pulumi-nodejs:dynamic/test:Counter`. */
  type: string;
  name: string;
  /** URN the mock monitor assigned (absent if the registration never completed). */
  urn?: string;
  /**
   * Resolved inputs as the mocks receive them: deserialized by the SDK, secrets kept as secret sentinel
   * objects, `undefined` inputs dropped. A dynamic resource's inputs include `__provider`.
   */
  inputs: Record<string, unknown>;
  /** Options read from the RegisterResource request (absent for reads via `Resource.get`). */
  options?: CapturedOptions;
}

/** Options for {@link captureResources}. */
export interface CaptureOptions {
  /** Project name given to `setMocks` (default {@link DEFAULT_PROJECT}). */
  project?: string;
  /** Stack name given to `setMocks` (default {@link DEFAULT_STACK}). */
  stack?: string;
  /** Run as a preview (`pulumi.runtime.isDryRun()` is true). Default false. */
  preview?: boolean;
  /** Upper bound for the program's pending registrations to settle (default 30 s). */
  timeoutMs?: number;
}

type RegisterCallback = (err: grpc.ServiceError | null, resp?: resproto.RegisterResourceResponse) => void;
type RegisterFn = (req: resproto.RegisterResourceRequest, cb: RegisterCallback) => unknown;

function optionsFrom(req: resproto.RegisterResourceRequest): CapturedOptions {
  return {
    custom: req.getCustom(),
    parent: req.getParent(),
    provider: req.getProvider(),
    protect: req.getProtect() ?? false,
    dependencies: req.getDependenciesList(),
    additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
    ignoreChanges: req.getIgnorechangesList(),
    replaceOnChanges: req.getReplaceonchangesList(),
    deleteBeforeReplace: req.getDeletebeforereplace(),
    retainOnDelete: req.getRetainondelete() ?? false,
  };
}

/** Resolves after one turn of the event loop (all pending microtasks, timers due now and immediates). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(() => setImmediate(resolve), 1));
}

/**
 * Waits until the SDK's pending RPCs have drained and stay drained: `pulumi.runtime.disconnect()` waits for
 * every registration started so far (the SDK's "rpcKeepAlive" chain), but a resource created later in an
 * `apply` callback starts after that wait resolved. A real program relies on Node's event loop running
 * dry ("beforeExit"); here we repeat drain + one event-loop turn until two rounds in a row saw no new mock
 * activity. Bounded by `timeoutMs` overall.
 */
export async function settle(activity: () => number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let quietRounds = 0;
  while (quietRounds < 2) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new Error(`captureResources: registrations still arriving after ${timeoutMs} ms`);
    }
    const before = activity();
    await withTimeout(
      pulumi.runtime.disconnect(),
      remaining,
      "captureResources: pending resource registrations did not settle",
    );
    await nextTurn();
    quietRounds = activity() === before ? quietRounds + 1 : 0;
  }
}

/**
 * Runs `program` under `pulumi.runtime.setMocks` and resolves to every resource registration it made, in
 * registration order. The mock's `newResource` answers `{ id: name + "-id", state: inputs }`; `call`
 * echoes its inputs.
 *
 * Safe to call several times in one jest file: each call re-installs the mocks (which resets the SDK's
 * runtime state) and, after `program` returns (or its promise settles), waits for all pending resource
 * registrations through `pulumi.runtime.disconnect()` — the SDK's own "wait for the RPC queue to drain"
 * used at the end of every program — repeated until no new registration appears (resources created in
 * `apply` callbacks start after the first drain). That wait is bounded by `opts.timeoutMs`.
 *
 * Errors thrown by `program` are rethrown after the wait. A registration that fails inside the SDK (for
 * example a provider the closure serializer cannot capture) rejects the resource's outputs rather than
 * this call: it shows up as a missing record, or await the resource's `urn` inside `program` to see it.
 *
 * `@pulumi/pulumi` is imported here through the normal module system, so under jest it is the same module
 * instance the program (and any fixture it requires) uses.
 */
export async function captureResources(
  program: () => void | Promise<void>,
  opts: CaptureOptions = {},
): Promise<CapturedResource[]> {
  const captured: CapturedResource[] = [];
  const byRequest = new Map<resproto.RegisterResourceRequest, CapturedResource>();
  // Set while the mock monitor handles a RegisterResource request; MockMonitor.registerResource calls
  // mocks.newResource synchronously, before its first await, so the request can be paired with the record.
  let inFlight: resproto.RegisterResourceRequest | undefined;
  // Counts mock calls, so settle() can tell whether more work showed up after a drain.
  let activity = 0;

  const mocks: pulumi.runtime.Mocks = {
    newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
      activity++;
      const record: CapturedResource = { type: args.type, name: args.name, inputs: { ...args.inputs } };
      if (inFlight !== undefined) {
        record.options = optionsFrom(inFlight);
        byRequest.set(inFlight, record);
        inFlight = undefined;
      }
      captured.push(record);
      return { id: `${args.name}-id`, state: args.inputs };
    },
    call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
      activity++;
      return args.inputs;
    },
  };

  await pulumi.runtime.setMocks(
    mocks,
    opts.project ?? DEFAULT_PROJECT,
    opts.stack ?? DEFAULT_STACK,
    opts.preview ?? false,
  );

  // Wrap the mock monitor's RegisterResource to read the wire-level options and the assigned URN.
  const monitor = pulumi.runtime.getMonitor() as unknown as { registerResource: RegisterFn } | undefined;
  if (monitor === undefined) {
    throw new Error("captureResources: setMocks did not install a mock monitor");
  }
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    inFlight = req;
    try {
      return original(req, (err, resp) => {
        const record = byRequest.get(req);
        if (record !== undefined && resp !== undefined && !err) {
          record.urn = resp.getUrn();
        }
        byRequest.delete(req);
        cb(err, resp);
      });
    } finally {
      inFlight = undefined;
    }
  };

  let programError: unknown;
  let failed = false;
  try {
    await program();
  } catch (e) {
    failed = true;
    programError = e;
  }
  await settle(() => activity, opts.timeoutMs ?? 30_000);
  if (failed) {
    throw programError;
  }
  return captured;
}

/** A captured dynamic resource split into its serialized provider and its own properties. */
export interface DynamicInputs {
  /** The `__provider` string: CommonJS source whose `exports.handler()` returns the provider object. */
  provider: string;
  /** The inputs without `__provider`. */
  props: Record<string, unknown>;
}

/** Splits a captured dynamic resource's inputs into `__provider` and the remaining properties. */
export function dynamicInputs(captured: CapturedResource): DynamicInputs {
  const { [PROVIDER_KEY]: provider, ...props } = captured.inputs;
  if (typeof provider !== "string" || provider === "") {
    throw new Error(`${captured.type} ${captured.name} has no serialized ${PROVIDER_KEY} input`);
  }
  return { provider, props };
}

// ---------------------------------------------------------------------------------------------------------
// startProviderHost: the real dynamic-provider host, driven over gRPC like the engine does
// ---------------------------------------------------------------------------------------------------------

/** A message the host sent to the fake engine's `Log` RPC. */
export interface EngineLogEntry {
  severity: "DEBUG" | "INFO" | "WARNING" | "ERROR";
  message: string;
  urn: string;
  streamId: number;
  ephemeral: boolean;
}

/** What the host answered to Configure. */
export interface ConfigureResult {
  acceptSecrets: boolean;
  supportsPreview: boolean;
  acceptResources: boolean;
  acceptOutputs: boolean;
}

/** A failed property check, as reported in CheckResponse.failures. */
export interface CheckFailure {
  property: string;
  reason: string;
}

/** Result of {@link ProviderHost.check}. */
export interface CheckResult {
  /** The checked inputs (the host always puts `__provider` back in). */
  inputs: Record<string, unknown>;
  failures: CheckFailure[];
}

/** Per-property diff entry (only present when the host sets `hasDetailedDiff`). */
export interface PropertyDiffResult {
  kind: "ADD" | "ADD_REPLACE" | "DELETE" | "DELETE_REPLACE" | "UPDATE" | "UPDATE_REPLACE";
  inputDiff: boolean;
}

/** Result of {@link ProviderHost.diff}. */
export interface DiffResult {
  changes: "DIFF_NONE" | "DIFF_SOME" | "DIFF_UNKNOWN";
  replaces: string[];
  stables: string[];
  deleteBeforeReplace: boolean;
  diffs: string[];
  detailedDiff?: Record<string, PropertyDiffResult>;
}

/** Result of {@link ProviderHost.create}. */
export interface CreateResult {
  id: string;
  properties: Record<string, unknown>;
  /**
   * True when the call was a preview and the host does not support preview: like the engine, the harness
   * then did not call Create and returned the inputs with an empty id.
   */
  previewSkipped?: boolean;
}

/** Result of {@link ProviderHost.update}. */
export interface UpdateResult {
  properties: Record<string, unknown>;
  /** As in {@link CreateResult.previewSkipped}. */
  previewSkipped?: boolean;
}

/** Result of {@link ProviderHost.read}. */
export interface ReadResult {
  /** "" means the resource is gone. */
  id: string;
  properties: Record<string, unknown>;
  /** Inputs the provider returned from `read`, if any (with `__provider`). */
  inputs?: Record<string, unknown>;
}

/** Details of an `ErrorResourceInitFailed` packed into a gRPC error (a create/update that half-succeeded). */
export interface InitFailure {
  id: string;
  properties: Record<string, unknown>;
  reasons: string[];
}

/** A gRPC error returned by the host, with the status details the engine would see. */
export class ProviderHostError extends Error {
  /** The RPC that failed, e.g. `create`. */
  readonly method: string;
  /** Numeric gRPC status code. */
  readonly code: number;
  /** Name of the gRPC status code, e.g. `UNKNOWN`. */
  readonly codeName: string;
  /** The status message: for errors thrown by provider code, the thrown error's `message`. */
  readonly details: string;
  /** Present when the host packed an `ErrorResourceInitFailed` into `grpc-status-details-bin`. */
  readonly initFailure?: InitFailure;

  constructor(method: string, err: grpc.ServiceError) {
    const codeName = grpc.status[err.code] ?? String(err.code);
    super(`dynamic provider host ${method} failed: ${codeName}: ${err.details}`);
    this.name = "ProviderHostError";
    this.method = method;
    this.code = err.code;
    this.codeName = codeName;
    this.details = err.details;
    this.initFailure = decodeInitFailure(err.metadata);
  }
}

function decodeInitFailure(metadata: grpc.Metadata | undefined): InitFailure | undefined {
  const raw = metadata?.get("grpc-status-details-bin")[0];
  if (raw === undefined || typeof raw === "string") return undefined;
  const status = statusproto.Status.deserializeBinary(new Uint8Array(raw));
  for (const detail of status.getDetailsList()) {
    const failed = detail.unpack(
      provproto.ErrorResourceInitFailed.deserializeBinary,
      "pulumirpc.ErrorResourceInitFailed",
    );
    if (failed !== null) {
      return {
        id: failed.getId(),
        properties: failed.getProperties()?.toJavaScript() ?? {},
        reasons: failed.getReasonsList(),
      };
    }
  }
  return undefined;
}

/** Options for {@link startProviderHost}. */
export interface ProviderHostOptions {
  /**
   * Working directory of the host. The serialized provider's `require(...)` calls resolve from here (the
   * engine runs plugins in the project directory). Default: the directory holding the `node_modules` that
   * `@pulumi/pulumi` was resolved from.
   */
  cwd?: string;
  /** Extra environment variables for the host, merged over `process.env` (minus `PULUMI_NODEJS_*`). */
  env?: NodeJS.ProcessEnv;
  /** Upper bound for the host to print its port and accept a connection (default 15 s). */
  startTimeoutMs?: number;
  /** Deadline of each RPC (default 30 s). */
  callTimeoutMs?: number;
  /**
   * Send secret sentinels to the host as-is even though it declared acceptSecrets=false. The engine never
   * does that (it strips secrets for such providers); use it only to probe how the host treats them.
   */
  sendSecretsRaw?: boolean;
}

/** A running dynamic-provider host and a promise-based client for it. See {@link startProviderHost}. */
export interface ProviderHost {
  /** The exact argv the host was started with (`[node, .../cmd/dynamic-provider/index.js, engineAddr]`). */
  readonly argv: readonly string[];
  /** Process id of the host. */
  readonly pid: number;
  /** The gRPC port the host printed on stdout. */
  readonly port: number;
  /** Address of the fake engine passed as the host's argument. */
  readonly engineAddress: string;
  /** Messages received by the fake engine's `Log` RPC (the host sends none today; see the test). */
  readonly engineLogs: readonly EngineLogEntry[];
  /** The host's stdout after the port line, and its stderr: where the engine reads plugin diagnostics. */
  output(): { stdout: string; stderr: string };
  /**
   * Waits (bounded, default 5 s) until the host's stdout or stderr contains `text`, and returns
   * {@link ProviderHost.output}. Needed because pipe data may arrive after the RPC reply that followed it.
   */
  waitForOutput(text: string, timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** The Configure answer, once {@link ProviderHost.configure} has run. */
  readonly configured: ConfigureResult | undefined;

  /**
   * Sends Configure like the engine (`args` = `config`, acceptSecrets=true, acceptResources=true) and
   * returns the host's answer.
   */
  configure(config?: Record<string, unknown>): Promise<ConfigureResult>;
  /** Check: `olds` are the previous inputs ({} on create), `news` the program's inputs (with `__provider`). */
  check(urn: string, olds: Record<string, unknown>, news: Record<string, unknown>): Promise<CheckResult>;
  /** Diff: `olds` are the stored outputs (state), `news` the checked inputs. */
  diff(
    id: string,
    urn: string,
    olds: Record<string, unknown>,
    news: Record<string, unknown>,
  ): Promise<DiffResult>;
  /** Create from checked inputs. In a preview against a host without preview support, Create is skipped. */
  create(urn: string, properties: Record<string, unknown>, preview?: boolean): Promise<CreateResult>;
  /** Update: `olds` are the stored outputs, `news` the checked inputs. Preview handled like create. */
  update(
    id: string,
    urn: string,
    olds: Record<string, unknown>,
    news: Record<string, unknown>,
    preview?: boolean,
  ): Promise<UpdateResult>;
  /**
   * Read (refresh): `properties` are the stored outputs, `inputs` the stored inputs. `undefined` leaves
   * the field unset, as the engine does for an import: pkg/resource/deploy/step.go `ImportStep.Apply`
   * reads with the id alone, and sdk/go/common/resource/plugin/provider_plugin.go `Read` marshals nil
   * state and inputs to no Struct at all (`MarshalProperties` with `PropagateNil`).
   */
  read(
    id: string,
    urn: string,
    properties: Record<string, unknown> | undefined,
    inputs: Record<string, unknown> | undefined,
  ): Promise<ReadResult>;
  /** Delete with the stored outputs (which carry the old `__provider`). */
  delete(id: string, urn: string, properties: Record<string, unknown>): Promise<void>;
  /** Closes the client, ends the host (SIGTERM, SIGKILL after 3 s) and the fake engine. Idempotent. */
  stop(): Promise<void>;
}

/** Same message-size limit the SDK uses for its own channels (400 MiB). */
const GRPC_OPTIONS: Partial<grpc.ClientOptions> = {
  "grpc.max_receive_message_length": 400 * 1024 * 1024,
};

const SEVERITIES: EngineLogEntry["severity"][] = ["DEBUG", "INFO", "WARNING", "ERROR"];

interface FakeEngine {
  address: string;
  logs: EngineLogEntry[];
  stop(): Promise<void>;
}

/** A minimal pulumirpc.Engine on 127.0.0.1 that records `Log` calls; other RPCs answer UNIMPLEMENTED. */
async function startFakeEngine(): Promise<FakeEngine> {
  const logs: EngineLogEntry[] = [];
  const server = new grpc.Server();
  const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>): void =>
    cb({ code: grpc.status.UNIMPLEMENTED, details: "not implemented by the test harness engine" });
  const impl: engrpc.IEngineServer = {
    log(call: grpc.ServerUnaryCall<engproto.LogRequest, emptyproto.Empty>, cb) {
      const r = call.request;
      logs.push({
        severity: SEVERITIES[r.getSeverity()] ?? "ERROR",
        message: r.getMessage(),
        urn: r.getUrn(),
        streamId: r.getStreamid(),
        ephemeral: r.getEphemeral(),
      });
      cb(null, new emptyproto.Empty());
    },
    getRootResource: unimplemented,
    setRootResource: unimplemented,
    startDebugging: unimplemented,
    requirePulumiVersion: unimplemented,
  };
  server.addService(engrpc.EngineService, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    logs,
    stop: () =>
      withTimeout(
        new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
        3_000,
        "fake engine shutdown",
      ).catch(() => server.forceShutdown()),
  };
}

/** Waits until `child` has exited, or `ms` elapsed; resolves true if it exited. */
function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      child.removeListener("exit", onExit);
      resolve(false);
    }, ms);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", onExit);
  });
}

/** SIGTERM, then SIGKILL after 3 s; bounded. */
async function killHost(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  if (await waitForExit(child, 3_000)) return;
  child.kill("SIGKILL");
  await waitForExit(child, 3_000);
}

/** Reads the first stdout line (the port); rejects if the host exits or `ms` elapses first. */
function readPort(
  child: ChildProcess,
  ms: number,
  stderr: () => string,
): Promise<{ port: number; rest: string }> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.removeListener("data", onData);
      child.removeListener("exit", onExit);
    };
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      cleanup();
      const line = buf.slice(0, nl).trim();
      const port = Number(line);
      if (!/^\d+$/.test(line) || port <= 0 || port > 65535) {
        reject(new Error(`dynamic provider host wrote a non-numeric port to stdout: '${line}'`));
      } else {
        resolve({ port, rest: buf.slice(nl + 1) });
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      cleanup();
      reject(
        new Error(
          `dynamic provider host exited (code ${code}, signal ${signal}) before printing its port\n${stderr()}`,
        ),
      );
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`dynamic provider host did not print its port within ${ms} ms\n${stderr()}`));
    }, ms);
    child.stdout?.on("data", onData);
    child.once("exit", onExit);
  });
}

/** Drops `undefined` object members and turns `undefined` array elements into null (as the engine does). */
function dropUndefined(v: unknown): structproto.JavaScriptValue {
  if (Array.isArray(v)) return v.map((x) => (x === undefined ? null : dropUndefined(x)));
  if (typeof v === "object" && v !== null) {
    const out: Record<string, structproto.JavaScriptValue> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x !== undefined) out[k] = dropUndefined(x);
    }
    return out;
  }
  return v as structproto.JavaScriptValue;
}

/** `urn:pulumi:stack::project::qualified$type::name` → { type, name }. */
function urnParts(urn: string): { type: string; name: string } {
  const parts = urn.split("::");
  if (parts.length < 4 || !parts[0].startsWith("urn:pulumi:")) {
    throw new Error(`not a Pulumi URN: ${urn}`);
  }
  return { type: parts[2].split("$").pop() ?? parts[2], name: parts.slice(3).join("::") };
}

const DIFF_CHANGES: Record<number, DiffResult["changes"]> = {
  [provproto.DiffResponse.DiffChanges.DIFF_UNKNOWN]: "DIFF_UNKNOWN",
  [provproto.DiffResponse.DiffChanges.DIFF_NONE]: "DIFF_NONE",
  [provproto.DiffResponse.DiffChanges.DIFF_SOME]: "DIFF_SOME",
};

const DIFF_KINDS: Record<number, PropertyDiffResult["kind"]> = {
  [provproto.PropertyDiff.Kind.ADD]: "ADD",
  [provproto.PropertyDiff.Kind.ADD_REPLACE]: "ADD_REPLACE",
  [provproto.PropertyDiff.Kind.DELETE]: "DELETE",
  [provproto.PropertyDiff.Kind.DELETE_REPLACE]: "DELETE_REPLACE",
  [provproto.PropertyDiff.Kind.UPDATE]: "UPDATE",
  [provproto.PropertyDiff.Kind.UPDATE_REPLACE]: "UPDATE_REPLACE",
};

type UnaryInvoker<Res> = (
  md: grpc.Metadata,
  opts: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => unknown;

/**
 * Starts the real Pulumi dynamic-provider host (`node <@pulumi/pulumi>/cmd/dynamic-provider/index.js
 * <engine-address>`, which is what the engine's `pulumi-resource-pulumi-nodejs` shim runs), waits
 * (bounded) for the port it prints on stdout, and connects a `ResourceProviderClient` to 127.0.0.1:port.
 *
 * The host requires an engine address argument but, in @pulumi/pulumi 3.248.0, never connects to it; the
 * harness still passes the address of a fake Engine gRPC server on 127.0.0.1 that records `Log` calls, so
 * tests can assert on everything the host could report. Provider `console.*` output and `pulumi.log` (which
 * falls back to the console without an engine connection) arrive on the host's stdout/stderr: see
 * {@link ProviderHost.output}.
 *
 * Always `await host.stop()` (e.g. in `afterAll`).
 */
export async function startProviderHost(opts: ProviderHostOptions = {}): Promise<ProviderHost> {
  const pulumiPkg = path.dirname(require.resolve("@pulumi/pulumi/package.json"));
  // .../node_modules/@pulumi/pulumi -> the project directory holding node_modules.
  const cwd = opts.cwd ?? path.resolve(pulumiPkg, "..", "..", "..");
  // The project's own SDK, as the engine's shim finds it: pulumi/pulumi v3.248.0
  // sdk/nodejs/dist/pulumi-resource-pulumi-nodejs runs
  // `node -e "console.log(require.resolve('@pulumi/pulumi/cmd/dynamic-provider'))"` in the plugin's working
  // directory (the project) and starts that script.
  const script = require.resolve("@pulumi/pulumi/cmd/dynamic-provider", { paths: [cwd] });
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  const callTimeoutMs = opts.callTimeoutMs ?? 30_000;

  const engine = await startFakeEngine();
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) {
    if (!k.startsWith("PULUMI_NODEJS_")) env[k] = v;
  }
  const argv = [process.execPath, script, engine.address];
  const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ["ignore", "pipe", "pipe"], shell: false });
  // A spawn failure (e.g. ENOENT) is reported through "exit"/readPort; swallow the event itself.
  child.on("error", () => undefined);

  let stdout = "";
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString("utf8")));

  let port: number;
  try {
    const first = await readPort(child, startTimeoutMs, () => stderr);
    port = first.port;
    stdout = first.rest;
  } catch (e) {
    await killHost(child);
    await engine.stop();
    throw e;
  }
  child.stdout?.on("data", (c: Buffer) => (stdout += c.toString("utf8")));

  const client = new provrpc.ResourceProviderClient(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
    GRPC_OPTIONS,
  );
  try {
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + startTimeoutMs, (err) => (err ? reject(err) : resolve())),
    );
  } catch (e) {
    client.close();
    await killHost(child);
    await engine.stop();
    throw e;
  }

  let configured: ConfigureResult | undefined;
  let stopped: Promise<void> | undefined;

  const unary = <Res>(method: string, invoke: UnaryInvoker<Res>): Promise<Res> =>
    new Promise<Res>((resolve, reject) => {
      invoke(new grpc.Metadata(), { deadline: Date.now() + callTimeoutMs }, (err, res) =>
        err ? reject(new ProviderHostError(method, err)) : resolve(res),
      );
    });

  /** Marshals properties like the engine: no undefined, secrets stripped unless the host accepts them. */
  const toStruct = (props: Record<string, unknown>): structproto.Struct => {
    const keepSecrets = opts.sendSecretsRaw === true || configured?.acceptSecrets === true;
    const value = keepSecrets ? props : (revealSecrets(props) as Record<string, unknown>); // what the engine does for acceptSecrets=false;
    return structproto.Struct.fromJavaScript(
      dropUndefined(value) as Record<string, structproto.JavaScriptValue>,
    );
  };
  const fromStruct = (s: structproto.Struct | undefined): Record<string, unknown> => s?.toJavaScript() ?? {};

  const host: ProviderHost = {
    argv,
    pid: child.pid ?? -1,
    port,
    engineAddress: engine.address,
    engineLogs: engine.logs,
    output: () => ({ stdout, stderr }),
    async waitForOutput(text, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (!stdout.includes(text) && !stderr.includes(text)) {
        if (Date.now() >= deadline) {
          throw new Error(`host output did not contain ${JSON.stringify(text)} within ${timeoutMs} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return { stdout, stderr };
    },
    get configured() {
      return configured;
    },

    async configure(config = {}) {
      const req = new provproto.ConfigureRequest();
      req.setArgs(
        structproto.Struct.fromJavaScript(
          dropUndefined(config) as Record<string, structproto.JavaScriptValue>,
        ),
      );
      req.setAcceptsecrets(true);
      req.setAcceptresources(true);
      const res = await unary<provproto.ConfigureResponse>("configure", (md, o, cb) =>
        client.configure(req, md, o, cb),
      );
      configured = {
        acceptSecrets: res.getAcceptsecrets(),
        supportsPreview: res.getSupportspreview(),
        acceptResources: res.getAcceptresources(),
        acceptOutputs: res.getAcceptoutputs(),
      };
      return configured;
    },

    async check(urn, olds, news) {
      const { type, name } = urnParts(urn);
      const req = new provproto.CheckRequest();
      req.setUrn(urn);
      req.setName(name);
      req.setType(type);
      req.setOlds(toStruct(olds));
      req.setNews(toStruct(news));
      const res = await unary<provproto.CheckResponse>("check", (md, o, cb) => client.check(req, md, o, cb));
      return {
        inputs: fromStruct(res.getInputs()),
        failures: res.getFailuresList().map((f) => ({ property: f.getProperty(), reason: f.getReason() })),
      };
    },

    async diff(id, urn, olds, news) {
      const { type, name } = urnParts(urn);
      const req = new provproto.DiffRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setName(name);
      req.setType(type);
      req.setOlds(toStruct(olds));
      req.setNews(toStruct(news));
      const res = await unary<provproto.DiffResponse>("diff", (md, o, cb) => client.diff(req, md, o, cb));
      const result: DiffResult = {
        changes: DIFF_CHANGES[res.getChanges()] ?? "DIFF_UNKNOWN",
        replaces: res.getReplacesList(),
        stables: res.getStablesList(),
        deleteBeforeReplace: res.getDeletebeforereplace(),
        diffs: res.getDiffsList(),
      };
      if (res.getHasdetaileddiff()) {
        result.detailedDiff = {};
        res.getDetaileddiffMap().forEach((d, key) => {
          result.detailedDiff![key] = {
            kind: DIFF_KINDS[d.getKind()] ?? "UPDATE",
            inputDiff: d.getInputdiff(),
          };
        });
      }
      return result;
    },

    async create(urn, properties, preview = false) {
      if (preview && !configured?.supportsPreview) {
        // The engine does not call Create during preview unless the provider supports preview.
        return { id: "", properties, previewSkipped: true };
      }
      const { type, name } = urnParts(urn);
      const req = new provproto.CreateRequest();
      req.setUrn(urn);
      req.setName(name);
      req.setType(type);
      req.setProperties(toStruct(properties));
      req.setPreview(preview);
      const res = await unary<provproto.CreateResponse>("create", (md, o, cb) =>
        client.create(req, md, o, cb),
      );
      return { id: res.getId(), properties: fromStruct(res.getProperties()) };
    },

    async update(id, urn, olds, news, preview = false) {
      if (preview && !configured?.supportsPreview) {
        return { properties: news, previewSkipped: true };
      }
      const { type, name } = urnParts(urn);
      const req = new provproto.UpdateRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setName(name);
      req.setType(type);
      req.setOlds(toStruct(olds));
      req.setNews(toStruct(news));
      req.setPreview(preview);
      const res = await unary<provproto.UpdateResponse>("update", (md, o, cb) =>
        client.update(req, md, o, cb),
      );
      return { properties: fromStruct(res.getProperties()) };
    },

    async read(id, urn, properties, inputs) {
      const { type, name } = urnParts(urn);
      const req = new provproto.ReadRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setName(name);
      req.setType(type);
      if (properties !== undefined) req.setProperties(toStruct(properties));
      if (inputs !== undefined) req.setInputs(toStruct(inputs));
      const res = await unary<provproto.ReadResponse>("read", (md, o, cb) => client.read(req, md, o, cb));
      const result: ReadResult = { id: res.getId(), properties: fromStruct(res.getProperties()) };
      if (res.hasInputs()) result.inputs = fromStruct(res.getInputs());
      return result;
    },

    async delete(id, urn, properties) {
      const { type, name } = urnParts(urn);
      const req = new provproto.DeleteRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setName(name);
      req.setType(type);
      req.setProperties(toStruct(properties));
      await unary<emptyproto.Empty>("delete", (md, o, cb) => client.delete(req, md, o, cb));
    },

    stop() {
      stopped ??= (async () => {
        client.close();
        await killHost(child);
        await engine.stop();
      })();
      return stopped;
    },
  };
  return host;
}
