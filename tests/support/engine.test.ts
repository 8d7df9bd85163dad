/**
 * The stand-in engine's own behaviour where a test relies on it: after a failed step nothing else runs
 * (pulumi v3.248.0 step_executor.go executeChain -> cancelDueToError -> cancel), as the real engine does.
 * Local commands only: they touch nothing but a temp directory.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { applyIgnoreChanges, formatPlan, partialState, planSummary, preview, refresh, up } from "./engine";
import { NO_DYNAMIC, ProviderHost, isSecretValue, secretValue, startProviderHost } from "./pulumiHost";
import { removeDir, tempDir } from "./programs";

test("after a command fails, the commands that depend on it never run and up rejects with its error", async () => {
  const dir = await tempDir("virt-pki-engine-");
  try {
    const after = join(dir, "after");
    const fromOutput = join(dir, "from-output");
    const program = () => {
      const a = new command.local.Command("a", {
        create: "echo started; exit 3",
        interpreter: ["/bin/sh", "-c"],
      });
      new command.local.Command(
        "b",
        { create: `touch ${after}`, interpreter: ["/bin/sh", "-c"] },
        { dependsOn: [a] },
      );
      new command.local.Command("c", {
        create: a.stdout.apply((o) => `touch ${fromOutput}; echo ${o}`),
        interpreter: ["/bin/sh", "-c"],
      });
    };
    await expect(up(program, NO_DYNAMIC, {})).rejects.toThrow(
      /command:local:Command a: create failed \(exit 3\)/,
    );
    expect(existsSync(after)).toBe(false);
    expect(existsSync(fromOutput)).toBe(false);
  } finally {
    await removeDir(dir);
  }
});

test("at most --parallel steps run at once (PULUMI_PARALLEL, else CPUs x 4), as the engine's step executor", async () => {
  const dir = await tempDir("virt-pki-engine-parallel-");
  const saved = process.env.PULUMI_PARALLEL;
  process.env.PULUMI_PARALLEL = "2";
  try {
    // Each command marks itself running, records how many are running, and stays a while.
    const script = `touch ${dir}/run.$$; ls ${dir} | grep -c '^run\\.' >> ${dir}/seen.log; sleep 0.3; rm ${dir}/run.$$`;
    const program = () => {
      for (let i = 0; i < 6; i++)
        new command.local.Command(`c${i}`, { create: script, interpreter: ["/bin/sh", "-c"] });
    };
    await up(program, NO_DYNAMIC, {});
    const seen = readFileSync(join(dir, "seen.log"), "utf8").trim().split("\n").map(Number);
    expect(seen).toHaveLength(6);
    expect(Math.max(...seen)).toBe(2);
  } finally {
    if (saved === undefined) delete process.env.PULUMI_PARALLEL;
    else process.env.PULUMI_PARALLEL = saved;
    await removeDir(dir);
  }
});

// ---------------------------------------------------------------------------------------------------------
// The engine's behaviours the rest of the suite relies on, each checked against a tiny program. The Counter
// fixture (tests/fixtures/dynamic/counter.js) runs in the REAL dynamic-provider host: `n` replaces, `label`
// updates in place, `doubled` is an output that is not an input.
// ---------------------------------------------------------------------------------------------------------

interface CounterArgs {
  n: pulumi.Input<number>;
  label?: pulumi.Input<string>;
}
type CounterCtor = new (
  name: string,
  args: CounterArgs,
  opts?: pulumi.CustomResourceOptions,
) => {
  doubled: pulumi.Output<number>;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Counter } = require("../fixtures/dynamic/counter.js") as { Counter: CounterCtor };

describe("the stand-in engine", () => {
  let host: ProviderHost;
  let dir: string;
  beforeAll(async () => {
    host = await startProviderHost();
  });
  afterAll(async () => {
    await host.stop();
  });
  beforeEach(async () => {
    dir = await tempDir("virt-pki-engine-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  const sh = ["/bin/sh", "-c"];

  test("a preview runs nothing, and an in-place update leaves outputs that are not inputs unknown", async () => {
    const ran = join(dir, "ran");
    const program = (label: string) => () => {
      const c = new Counter("c", { n: 2, label });
      new command.local.Command("use", {
        create: c.doubled.apply((d) => `echo ${d} >> ${ran}`),
        interpreter: sh,
      });
    };
    const first = await preview(program("a"), host, {});
    expect(planSummary(first.plan)).toEqual(["c create", "use create"]);
    expect(first.state).toEqual({});
    expect(existsSync(ran)).toBe(false);

    const created = await up(program("a"), host, {});
    expect(readFileSync(ran, "utf8")).toBe("4\n");

    // provider_plugin.go Update in a preview returns the inputs: `doubled` is unknown, so the command that
    // uses it shows an update the up will not do.
    const p = await preview(program("b"), host, created.state);
    expect(planSummary(p.plan)).toEqual(["c update [diff: ~label]", "use update [diff: ~create]"]);
    const applied = await up(program("b"), host, created.state);
    expect(planSummary(applied.plan)).toEqual(["c update [diff: ~label]"]);
    expect(readFileSync(ran, "utf8")).toBe("4\n");
  });

  test("the CLI's diff comes from the inputs and skips __ keys; the provider's replaces are json-only", async () => {
    const s1 = await up(() => new Counter("c", { n: 1, label: "x" }), host, {});
    const replaced = await up(() => new Counter("c", { n: 2, label: "y" }), host, s1.state);
    const [step] = replaced.plan;
    expect(step.replaces).toEqual(["n"]);
    expect(planSummary(replaced.plan)).toEqual(["c replace [diff: ~label,n]"]);
    // Same inputs but another serialized provider text: no [diff] key for __provider.
    const s = replaced.state;
    const urn = Object.keys(s)[0];
    const oldProviderText = { ...s, [urn]: { ...s[urn], inputs: { ...s[urn].inputs, __provider: "old" } } };
    const same = await preview(() => new Counter("c", { n: 2, label: "y" }), host, oldProviderText);
    expect(planSummary(same.plan)).toEqual([]);
  });

  test("commands: only triggers replace; delete runs with the stored stdin; a preview runs none", async () => {
    const log = join(dir, "log");
    const program =
      (stdin: string, triggers: string[], create = `cat >> ${log}`) =>
      () => {
        new command.local.Command("cmd", {
          create,
          delete: `(echo deleting; cat) >> ${log}`,
          stdin,
          triggers,
          interpreter: sh,
        });
      };
    const s1 = await up(program("one\n", ["t1"]), host, {});
    // A change of anything but triggers (here stdin and create) is an update that runs `create` again.
    const s2 = await up(program("two\n", ["t1"], `(echo again; cat) >> ${log}`), host, s1.state);
    expect(planSummary(s2.plan)).toEqual(["cmd update [diff: ~create,stdin]"]);
    expect(readFileSync(log, "utf8")).toBe("one\nagain\ntwo\n");
    const p = await preview(program("three\n", ["t2"]), host, s2.state);
    expect(planSummary(p.plan)).toEqual(["cmd replace [diff: ~create,stdin,triggers]"]);
    expect(readFileSync(log, "utf8")).toBe("one\nagain\ntwo\n");
    // Replace: the new one is created, then the old one deleted with ITS stdin.
    await up(program("three\n", ["t2"]), host, s2.state);
    expect(readFileSync(log, "utf8")).toBe("one\nagain\ntwo\nthree\ndeleting\ntwo\n");
  });

  test("an exception in the program fails the up before any delete; what completed is kept", async () => {
    const log = join(dir, "log");
    const gone = () => {
      new command.local.Command("gone", {
        create: "true",
        delete: `echo deleted >> ${log}`,
        interpreter: sh,
      });
    };
    const s1 = await up(gone, host, {});
    const failing = () => {
      const c = new Counter("c", { n: 1, label: "a" });
      new command.local.Command("bad", {
        create: c.doubled.apply((d): string => {
          throw new Error(`layout conflict at ${d}`);
        }),
        interpreter: sh,
      });
    };
    const error = await up(failing, host, s1.state).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(String(error)).toMatch(/layout conflict at 2/);
    expect(existsSync(log)).toBe(false);
    const left = partialState(error)!;
    expect(
      Object.values(left)
        .map((e) => e.name)
        .sort(),
    ).toEqual(["c", "gone"]);
    // The next successful up deletes what left the program.
    await up(() => new Counter("c", { n: 1, label: "a" }), host, left);
    expect(readFileSync(log, "utf8")).toBe("deleted\n");
  });

  test("refresh keeps the inputs Read returns, and a replacement re-checks the raw inputs without ignoreChanges", async () => {
    const s1 = await up(() => new Counter("c", { n: 1, label: "a" }), host, {});
    const refreshed = await refresh(host, s1.state);
    const [entry] = Object.values(refreshed.state);
    expect(entry.inputs).toEqual({ n: 1, label: "a", __provider: expect.any(String) });
    const ignoring = (n: number, label: string) => () =>
      new Counter("c", { n, label }, { ignoreChanges: ["label"] });
    const same = await up(ignoring(1, "b"), host, refreshed.state);
    expect(planSummary(same.plan)).toEqual([]);
    expect(Object.values(same.state)[0].inputs.label).toBe("a");
    const replaced = await up(ignoring(2, "b"), host, same.state);
    expect(planSummary(replaced.plan)).toEqual(["c replace [diff: ~label,n]"]);
    expect(Object.values(replaced.state)[0].outputs.label).toBe("b");
  });
});

test("a secret input stays secret in the state and shows as [secret], as annotateSecrets keeps it", async () => {
  const host = await startProviderHost();
  try {
    const program = (label: string) => () => new Counter("c", { n: 1, label: pulumi.secret(label) });
    const s1 = await up(program("hunter2"), host, {});
    const [entry] = Object.values(s1.state);
    expect(isSecretValue(entry.inputs.label)).toBe(true);
    expect(isSecretValue(entry.outputs.label)).toBe(true);
    const p = await preview(program("letmein"), host, s1.state);
    const shown = formatPlan(p.plan, { details: true });
    expect(shown).toContain("~ label: [secret] => [secret]");
    expect(shown).not.toMatch(/hunter2|letmein/);
  } finally {
    await host.stop();
  }
});

test("applyIgnoreChanges follows PropertyPath.reset: old value, removal when absent, nested paths", () => {
  const olds = { a: 1, o: { x: 1, y: [1, 2] } };
  expect(
    applyIgnoreChanges({ a: 2, b: 3, o: { x: 2, y: [3, 4] } }, olds, ["a", "b", "o.x", "o.y[1]"]),
  ).toEqual({
    a: 1,
    o: { x: 1, y: [3, 2] },
  });
  // The old inputs lack the object: the leaf goes from the new (reset: !hasOld && hasNew walks on).
  expect(applyIgnoreChanges({ n: { z: 1 } }, {}, ["n.z"])).toEqual({ n: {} });
  // A path through an array element the old inputs lack is left alone (the engine logs it).
  expect(applyIgnoreChanges({ l: [1, 2] }, { l: [1] }, ["l[1]"])).toEqual({ l: [1, 2] });
  // A value taken from inside an old secret stays secret.
  expect(applyIgnoreChanges({ c: { k: "new" } }, { c: secretValue({ k: "old" }) }, ["c.k"])).toEqual({
    c: { k: secretValue("old") },
  });
});
