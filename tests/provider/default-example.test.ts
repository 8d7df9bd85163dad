/**
 * The root Pulumi.yaml's program (`main: bin/examples/default/index.js`) stages into `./staging/hosts` of
 * the project, as the README says, although the engine runs it in the directory of `main`: the engine's
 * pwd is `filepath.Dir(main)` (pkg/engine/project.go `getPwdMain`), the nodejs language host passes it as
 * `--pwd` and sdk/nodejs/cmd/run/run.ts does `process.chdir(pwd)` before loading the program.
 *
 * The program runs from a copy of the build (a temporary checkout), in-process under the engine test
 * harness, after the same chdir; the real dynamic-provider host runs in that directory too, as the engine
 * starts plugins there (sdk/go/common/resource/plugin/plugin.go `ExecPlugin`, `cmd.Dir = pwd`).
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { up } from "../support/engine";
import { makeCheckout, requireBuild } from "../support/checkout";
import { ProviderHost, startProviderHost } from "../support/pulumiHost";
import { removeDir, tempDir } from "../support/programs";

let checkout: string;
let host: ProviderHost | undefined;
const cwd = process.cwd();
beforeAll(async () => {
  requireBuild();
  checkout = await tempDir("virt-pki-default-example-");
  makeCheckout(checkout);
});
afterAll(async () => {
  process.chdir(cwd);
  await host?.stop();
  await removeDir(checkout);
});

test("pulumi up of the root project stages under <project>/staging/hosts, not next to main", async () => {
  const mainDir = join(checkout, "bin", "examples", "default");
  host = await startProviderHost({ cwd: mainDir });
  await host.configure();
  process.chdir(mainDir);
  const r = await up(
    () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(join(mainDir, "index.js"));
    },
    host,
    {},
  );
  process.chdir(cwd);
  expect(r.plan.filter((s) => s.op !== "create")).toEqual([]);
  expect(r.plan).toHaveLength(11);

  const staging = join(checkout, "staging", "hosts");
  expect(readdirSync(staging).sort()).toEqual(["client-operator", "compute1", "compute2", "compute3"]);
  expect(existsSync(join(staging, "compute2", "etc", "pki", "libvirt", "servercert.pem"))).toBe(true);
  expect(existsSync(join(staging, "client-operator", "root", ".pki", "libvirt", "clientcert.pem"))).toBe(
    true,
  );
  expect(existsSync(join(mainDir, "staging"))).toBe(false);
});
