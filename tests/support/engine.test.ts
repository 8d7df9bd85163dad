/**
 * The stand-in engine's own behaviour where a test relies on it: after a failed step nothing else runs
 * (pulumi v3.248.0 step_executor.go executeChain -> cancelDueToError -> cancel), as the real engine does.
 * Local commands only: they touch nothing but a temp directory.
 */
import * as command from "@pulumi/command";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { up } from "./engine";
import { ProviderHost } from "./pulumiHost";
import { removeDir, tempDir } from "./programs";

/** These programs have no dynamic resources. */
const NO_DYNAMIC = new Proxy({} as ProviderHost, {
  get: () => {
    throw new Error("this program has no dynamic resources");
  },
});

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
