/**
 * Proves the dynamic-provider test harness (tests/support/pulumiHost.ts) against the real
 * @pulumi/pulumi dynamic-provider host, with the tiny Counter provider in tests/fixtures/dynamic/counter.js.
 */
import * as pulumi from "@pulumi/pulumi";

import {
  CapturedResource,
  captureResources,
  dynamicInputs,
  dynamicTypeToken,
  isSecretValue,
  PROVIDER_KEY,
  ProviderHost,
  ProviderHostError,
  resourceUrn,
  secretValue,
  startProviderHost,
} from "./pulumiHost";

interface CounterArgs {
  n: pulumi.Input<number>;
  label?: pulumi.Input<string>;
  failWith?: pulumi.Input<string>;
}
type CounterCtor = new (
  name: string,
  args: CounterArgs,
  opts?: pulumi.CustomResourceOptions,
) => pulumi.CustomResource;

// Plain CommonJS fixture, loaded through jest's module registry so it shares this file's @pulumi/pulumi.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Counter } = require("../fixtures/dynamic/counter.js") as { Counter: CounterCtor };

const COUNTER_TYPE = "pulumi-nodejs:dynamic/test:Counter";

describe("captureResources", () => {
  it("records a dynamic resource with its serialized __provider, URN and wire options", async () => {
    const captured = await captureResources(() => {
      new Counter("c1", { n: 2 });
    });
    expect(captured).toHaveLength(1);
    const [c1] = captured;
    expect(c1.type).toBe(COUNTER_TYPE);
    expect(c1.type).toBe(dynamicTypeToken("test", "Counter"));
    expect(c1.name).toBe("c1");
    expect(c1.urn).toBe(`urn:pulumi:stack::project::${COUNTER_TYPE}::c1`);
    expect(c1.urn).toBe(resourceUrn("c1", { type: COUNTER_TYPE }));
    expect(c1.options?.additionalSecretOutputs).toEqual(["secretThing"]);
    expect(c1.options?.custom).toBe(true);

    const { provider, props } = dynamicInputs(c1);
    expect(props).toEqual({ n: 2 });
    expect(provider).toContain("exports.handler");
    expect(provider).toContain("async function /*create*/");
    // The fixture is plain JS: no ts-jest/istanbul artefacts in the serialized closure.
    expect(provider).not.toMatch(/cov_|__importStar|ts-jest/);
  });

  it("can run again in the same file, honours project/stack, and waits for registrations made in apply", async () => {
    const captured = await captureResources(
      () => {
        const a = new Counter("a", { n: 1, label: pulumi.secret("hush") });
        // Registered only once a's id resolves: captureResources must wait for it.
        a.id.apply((id) => new Counter("b", { n: 3, label: id }, { parent: a }));
      },
      { project: "proj", stack: "dev" },
    );
    expect(captured.map((c) => c.name)).toEqual(["a", "b"]);
    const [a, b] = captured;
    expect(a.urn).toBe(resourceUrn("a", { type: COUNTER_TYPE, project: "proj", stack: "dev" }));
    // A child's URN type is qualified by its parent's type.
    expect(b.urn).toBe(`urn:pulumi:dev::proj::${COUNTER_TYPE}$${COUNTER_TYPE}::b`);
    expect(b.options?.parent).toBe(a.urn);
    // Secret inputs reach the mocks as secret sentinels.
    expect(isSecretValue(a.inputs.label)).toBe(true);
    expect(dynamicInputs(b).props).toEqual({ n: 3, label: "a-id" });
  });

  it("rethrows errors thrown by the program", async () => {
    await expect(
      captureResources(() => {
        throw new Error("program exploded");
      }),
    ).rejects.toThrow("program exploded");
  });
});

describe("startProviderHost drives the real dynamic-provider host", () => {
  const urn = resourceUrn("c1", { type: COUNTER_TYPE });
  let host: ProviderHost;
  let captured: CapturedResource;
  let provider: string;
  const started: ProviderHost[] = [];

  beforeAll(async () => {
    [captured] = await captureResources(() => {
      new Counter("c1", { n: 2, label: "first" });
    });
    provider = dynamicInputs(captured).provider;
    host = await startProviderHost();
    started.push(host);
  });

  afterAll(async () => {
    await Promise.all(started.map((h) => h.stop()));
  });

  it("is launched like the engine's pulumi-resource-pulumi-nodejs shim", () => {
    expect(host.argv).toEqual([
      process.execPath,
      require.resolve("@pulumi/pulumi/cmd/dynamic-provider"),
      host.engineAddress,
    ]);
    expect(host.engineAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(host.port).toBeGreaterThan(0);
  });

  it("answers Configure with acceptSecrets=false and no preview support", async () => {
    await expect(host.configure()).resolves.toEqual({
      acceptSecrets: false,
      supportsPreview: false,
      acceptResources: false,
      acceptOutputs: false,
    });
  });

  it("runs check, create, diff, update, read and delete through the serialized provider", async () => {
    // check: ok, with __provider put back into the inputs.
    const checked = await host.check(urn, {}, captured.inputs);
    expect(checked.failures).toEqual([]);
    expect(checked.inputs).toEqual({ n: 2, label: "first", [PROVIDER_KEY]: provider });

    // check: failure naming the property.
    const bad = await host.check(urn, {}, { ...captured.inputs, n: -1 });
    expect(bad.failures).toEqual([{ property: "n", reason: "n must be a number >= 0" }]);

    // create
    const created = await host.create(urn, checked.inputs);
    expect(created.id).toMatch(/^counter-[0-9a-f]{8}$/);
    const { secretThing, ...rest } = created.properties;
    expect(rest).toEqual({ n: 2, label: "first", doubled: 4, [PROVIDER_KEY]: provider });
    // additionalSecretOutputs is applied by the engine, not by the host: the host returns a plain string.
    expect(typeof secretThing).toBe("string");
    expect(secretThing).toMatch(/^[0-9a-f]{32}$/);
    expect(isSecretValue(secretThing)).toBe(false);

    // diff: olds are the stored outputs, news the checked inputs.
    const same = await host.diff(created.id, urn, created.properties, checked.inputs);
    expect(same).toEqual({
      changes: "DIFF_NONE",
      replaces: [],
      stables: [],
      deleteBeforeReplace: false,
      diffs: [],
    });
    const replace = await host.diff(created.id, urn, created.properties, { ...checked.inputs, n: 3 });
    expect(replace.changes).toBe("DIFF_SOME");
    expect(replace.replaces).toEqual(["n"]);
    const relabel = { ...checked.inputs, label: "second" };
    const inPlace = await host.diff(created.id, urn, created.properties, relabel);
    expect(inPlace.changes).toBe("DIFF_SOME");
    expect(inPlace.replaces).toEqual([]);

    // update keeps the secret output and changes the label.
    const updated = await host.update(created.id, urn, created.properties, relabel);
    expect(updated.properties).toEqual({ ...created.properties, label: "second" });

    // read returns the props and the inputs the provider derived (with __provider).
    const read = await host.read(created.id, urn, updated.properties, relabel);
    expect(read.id).toBe(created.id);
    expect(read.properties).toEqual(updated.properties);
    expect(read.inputs).toEqual({ n: 2, label: "second", [PROVIDER_KEY]: provider });

    await host.delete(created.id, urn, updated.properties);

    // The provider's console output arrives on the host's stdout; the secret never shows up anywhere.
    // Pipe data can trail the RPC reply, so wait (bounded) for the last line.
    const out = await host.waitForOutput(`counter: deleted ${created.id}`);
    expect(out.stdout).toContain(`counter: created ${created.id} with n=2`);
    expect(out.stdout).toContain(`counter: deleted ${created.id}`);
    const everything = out.stdout + out.stderr + JSON.stringify(host.engineLogs);
    expect(everything).not.toContain(secretThing as string);
    // The host never connects to the engine address it is given.
    expect(host.engineLogs).toEqual([]);
  });

  it("surfaces errors thrown by create as gRPC errors carrying the message", async () => {
    const inputs = { ...captured.inputs, failWith: "create refused on purpose" };
    const err = await host.create(urn, inputs).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProviderHostError);
    const e = err as ProviderHostError;
    expect(e.method).toBe("create");
    expect(e.codeName).toBe("UNKNOWN");
    expect(e.details).toBe("create refused on purpose");
    expect(e.message).toContain("create refused on purpose");
    expect(e.initFailure).toBeUndefined();
  });

  it("skips Create and Update during preview, as the engine does for a host without preview support", async () => {
    const inputs = { ...captured.inputs, failWith: "must not be called in preview" };
    await expect(host.create(urn, inputs, true)).resolves.toEqual({
      id: "",
      properties: inputs,
      previewSkipped: true,
    });
    await expect(host.update("some-id", urn, inputs, inputs, true)).resolves.toEqual({
      properties: inputs,
      previewSkipped: true,
    });
  });

  it("strips secret inputs like the engine does for acceptSecrets=false; raw sentinels reach provider code as objects", async () => {
    const news = { ...captured.inputs, label: secretValue("hush") };
    // Engine-like: the secret is unwrapped before it is sent.
    const stripped = await host.check(urn, {}, news);
    expect(stripped.failures).toEqual([]);
    expect(stripped.inputs.label).toBe("hush");

    // Probe: the host itself does not unwrap sentinels in CRUD calls; provider code sees the raw object.
    const raw = await startProviderHost({ sendSecretsRaw: true });
    started.push(raw);
    await raw.configure();
    const probed = await raw.check(urn, {}, news);
    expect(probed.failures).toEqual([{ property: "label", reason: "label must be a string, got object" }]);
    expect(isSecretValue(probed.inputs.label)).toBe(true);
  });
});
