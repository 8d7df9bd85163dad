/**
 * Runs an example program (its compiled `bin/examples/<name>/index.js`, the file `pulumi up` would run)
 * inside the engine test harness: stack config is set as `pulumi config set` would, then the file is
 * evaluated afresh on every call with this test's module registry, so `@pulumi/pulumi` is the instance the
 * harness's mocks are installed in and `pulumi-virt-pki` is the compiled package (jest moduleNameMapper).
 */
import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "fs";
import * as path from "path";
import { DEFAULT_PROJECT } from "./pulumiHost";

/** What one evaluation of the example exported (its stack outputs). */
export type StackOutputs = Record<string, unknown>;

/**
 * A program for `up()` that sets `config` (keys without the project prefix; values JSON-encoded unless
 * strings) and evaluates the example; `onExports` receives its exports. Secret keys become secret config.
 */
export function exampleProgram(
  name: string,
  config: Record<string, unknown>,
  secretKeys: readonly string[] = [],
  onExports?: (outputs: StackOutputs) => void,
  /**
   * A built checkout to run the example from (tests/support/checkout.ts `makeCheckout`): its compiled
   * example, with `pulumi-virt-pki` resolved to its `bin/index.js`. @default this repository
   */
  checkout?: string,
): () => void {
  const root = checkout ?? path.resolve(__dirname, "../..");
  const file = path.join(root, "bin/examples", name, "index.js");
  const source = readFileSync(file, "utf8");
  const load = (id: string): unknown =>
    /* eslint-disable @typescript-eslint/no-require-imports -- the example's own require, as Node gives it */
    checkout !== undefined && id === "pulumi-virt-pki"
      ? require(path.join(root, "bin/index.js"))
      : require(id);
  /* eslint-enable @typescript-eslint/no-require-imports */
  return () => {
    const prefixed = (k: string) => `${DEFAULT_PROJECT}:${k}`;
    const values = Object.fromEntries(
      Object.entries(config)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [prefixed(k), typeof v === "string" ? v : JSON.stringify(v)]),
    );
    pulumi.runtime.setAllConfig(values, secretKeys.map(prefixed));
    const module = { exports: {} as StackOutputs };
    // The compiled example is CommonJS: evaluate it like Node's module wrapper does.
    new Function("require", "exports", "module", "__filename", "__dirname", source)(
      load,
      module.exports,
      module,
      file,
      path.dirname(file),
    );
    onExports?.(module.exports);
  };
}

/** The value of a stack output (an `Output` the program exported) once the run has settled. */
export function outputValue<T>(outputs: StackOutputs, name: string): Promise<T> {
  const o = outputs[name] as pulumi.Output<T> | undefined;
  if (o === undefined) throw new Error(`the program exports no ${name}`);
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}
