/**
 * Runs a compiled Pulumi program through the harness ({@link preview}, {@link up}) the way a user runs it with
 * the CLI, and prints what they would see as JSON on stdout:
 *
 * `node runProgram.js PROGRAM.js [EDITED.js]`
 *
 * - `preview`: `pulumi preview` on a new stack;
 * - `up`: `pulumi up`, and `outputs`: the program's stack outputs once it is done (`pulumi stack output`);
 * - `again`: `pulumi preview` right after;
 * - `edited` (with EDITED.js): `pulumi preview --diff` of the edited program against the stack, a little over
 *   a second after the `up` so that re-issued certificates get a later `notAfter` (whole seconds).
 *
 * Plans are {@link formatPlan}'s text. The packed-package test copies the compiled harness (this file and
 * its siblings) into a project made like `pulumi new typescript`, so that `@pulumi/pulumi` here resolves to
 * the project's own SDK: the one the installed package registers its resources with.
 */
import * as path from "path";
import { formatPlan, preview, up } from "./engine";
import { startProviderHost } from "./pulumiHost";

/** What the run prints. */
export interface ProgramRun {
  preview: string;
  up: string;
  outputs: Record<string, unknown>;
  again: string;
  edited?: string;
}

/** A program module's exports, each resolved once known. */
function programRunner(file: string, outputs: Record<string, unknown>): () => void {
  return () => {
    delete require.cache[file];
    const exported = require(file) as Record<string, unknown>; // eslint-disable-line @typescript-eslint/no-require-imports
    for (const [name, value] of Object.entries(exported)) {
      const apply = (value as { apply?: (f: (v: unknown) => unknown) => unknown } | null)?.apply;
      if (typeof apply === "function") apply.call(value, (v: unknown) => (outputs[name] = v));
      else outputs[name] = value;
    }
  };
}

async function main(argv: string[]): Promise<ProgramRun> {
  if (argv.length < 1 || argv.length > 2) throw new Error("usage: runProgram.js PROGRAM.js [EDITED.js]");
  const [file, edited] = argv.map((f) => path.resolve(f));
  const outputs: Record<string, unknown> = {};
  // Run from the project's directory: the engine starts the dynamic-provider host there.
  const host = await startProviderHost({ cwd: process.cwd() });
  try {
    await host.configure();
    const program = programRunner(file, outputs);
    const first = await preview(program, host, {});
    const done = await up(program, host, {});
    const again = await preview(program, host, done.state);
    const run: ProgramRun = {
      preview: formatPlan(first.plan),
      up: formatPlan(done.plan),
      outputs,
      again: formatPlan(again.plan),
    };
    if (edited !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const diff = await preview(programRunner(edited, {}), host, done.state);
      run.edited = formatPlan(diff.plan, { details: true });
    }
    return run;
  } finally {
    await host.stop();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (run) => process.stdout.write(JSON.stringify(run, null, 1) + "\n"),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
