/**
 * The package as users get it: `npm pack` (its `prepack` builds), installed into fresh projects made like
 * `pulumi new typescript` (its package.json and stock tsconfig: strict, no `skipLibCheck`, no
 * `esModuleInterop`), one on the lowest `@pulumi/pulumi` the peer range claims and one on the version this
 * repository tests with. In each: one copy of the SDK (`npm ls`), every example and every complete README
 * program compiles, a program runs with that project's own SDK, its CA going through check, create, diff
 * and delete in the real dynamic-provider host found the way the engine finds it (from the project), and the
 * README's quick start, compiled there, runs through the harness (tests/support/runProgram.ts, copied into
 * the project so that it drives the project's SDK) and does what the README shows it doing.
 */
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ProviderHost, resourceUrn, startProviderHost } from "../support/pulumiHost";
import { RunResult, openssl, removeDir, run, tempDir, writeFiles } from "../support/programs";
import type { ProgramRun } from "../support/runProgram";

const ROOT = join(__dirname, "..", "..");
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  files: string[];
};
/** The lowest SDK the peer range claims (`^3.142.0` -> 3.142.0), and the one the suite runs on. */
const SDKS = [
  { label: "lowest claimed", version: PKG.peerDependencies["@pulumi/pulumi"].replace(/^\^/, "") },
  { label: "current", version: PKG.devDependencies["@pulumi/pulumi"] },
];

/** `pulumi new typescript`'s tsconfig.json (templates/typescript), with the files to compile. */
function stockTsconfig(files: string[]): string {
  return JSON.stringify(
    {
      compilerOptions: {
        strict: true,
        outDir: "bin",
        target: "es2020",
        module: "commonjs",
        moduleResolution: "node",
        sourceMap: true,
        experimentalDecorators: true,
        pretty: true,
        noFallthroughCasesInSwitch: true,
        noImplicitReturns: true,
        forceConsistentCasingInFileNames: true,
      },
      files,
    },
    null,
    4,
  );
}

/** Runs in a project: captures what its @pulumi/pulumi sends for a CA. */
const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const virtpki = require("pulumi-virt-pki");
const seen = [];
pulumi.runtime
  .setMocks({
    newResource: (a) => { seen.push({ type: a.type, name: a.name, inputs: a.inputs }); return { id: a.name + "-id", state: a.inputs }; },
    call: (a) => a.inputs,
  }, "packed", "dev", false)
  .then(async () => {
    new virtpki.CertificateAuthority("ca", { subject: { commonName: "Packed CA" }, keySpec: "ecdsa-p256" });
    for (let i = 0; i < 20 && seen.length < 1; i++) { await pulumi.runtime.disconnect(); await new Promise((r) => setTimeout(r, 25)); }
    process.stdout.write(JSON.stringify(seen));
  });
`;

/** The README's complete programs: its ```ts blocks that import the package (the rest are fragments). */
async function readmePrograms(): Promise<string[]> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  return [...readme.matchAll(/```ts\n([\s\S]*?)```/g)]
    .map((m) => m[1])
    .filter((b) => /from "pulumi-virt-pki"/.test(b));
}

/** Every .ts file of the examples, with the repository-relative import of the package made the package's name. */
async function copyExamples(project: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory() && e.name !== "node_modules") await walk(p);
      else if (e.isFile() && e.name.endsWith(".ts")) {
        const to = join(project, "examples", relative(join(ROOT, "examples"), p));
        await mkdir(join(to, ".."), { recursive: true });
        // examples/default and pki-quickstart run in this repository as its main job: "../../index" there
        // is the package's entry point.
        const text = (await readFile(p, "utf8")).replace(
          /from "\.\.\/\.\.\/index"/g,
          'from "pulumi-virt-pki"',
        );
        await writeFile(to, text);
        files.push(relative(project, to));
      }
    }
  };
  await walk(join(ROOT, "examples"));
  return files.sort();
}

/**
 * The README's text in the first fenced block after `marker`: what the README says a command shows. Fails
 * when the README lost the marker, so a reworded README cannot quietly drop out of the check.
 */
async function readmeBlockAfter(marker: string): Promise<string> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const at = readme.indexOf(marker);
  if (at < 0) throw new Error(`README.md no longer says ${JSON.stringify(marker)}`);
  const block = /```[a-z]*\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!block) throw new Error(`README.md has no block after ${JSON.stringify(marker)}`);
  return block[1].trimEnd();
}

/** The plan's rows, sorted: an `up` runs steps in parallel, so its rows come in the order they finish. */
function sortedRows(plan: string): string[] {
  return plan.split("\n").sort();
}

let parent: string;
let tgz: string;
const hosts: ProviderHost[] = [];
beforeAll(async () => {
  parent = await tempDir("virt-pki-packed-");
  const pack = await run("npm", ["pack", "--pack-destination", parent], { cwd: ROOT, timeoutMs: 240_000 });
  expect({ code: pack.code, stderr: pack.code === 0 ? "" : pack.stderr }).toEqual({ code: 0, stderr: "" });
  tgz = join(
    parent,
    (await readdir(parent)).find((f) => f.endsWith(".tgz"))!,
  );
}, 300_000);
afterAll(async () => {
  for (const h of hosts) await h.stop();
  await removeDir(parent);
});

test("the tarball holds the built package, LICENSE and CHANGELOG, and no tests or sources", async () => {
  const list = await run("tar", ["-tzf", tgz]);
  const entries = list.stdout.trim().split("\n");
  for (const f of [
    "package/LICENSE",
    "package/CHANGELOG.md",
    "package/README.md",
    "package/bin/index.d.ts",
  ]) {
    expect(entries).toContain(f);
  }
  expect(entries).toContain("package/bin/components/install/sh/install.sh");
  expect(
    entries.filter((e) => /^package\/(tests|bin\/tests|bin\/examples|provider|components)\//.test(e)),
  ).toEqual([]);
});

describe.each(SDKS)(
  "a `pulumi new typescript` project on @pulumi/pulumi $version ($label)",
  ({ version }) => {
    let project: string;
    let compiled: RunResult;
    beforeAll(async () => {
      project = join(parent, `project-${version}`);
      await mkdir(project);
      const examples = await copyExamples(project);
      const readme = await readmePrograms();
      const readmeFiles = readme.map((_, i) => `readme/program-${i}.ts`);
      await writeFiles(
        project,
        {
          // templates/typescript's package.json, the SDK pinned to the version under test.
          "package.json": JSON.stringify(
            {
              name: "adopter",
              main: "index.ts",
              devDependencies: { "@types/node": "^20.0.0" },
              dependencies: { "@pulumi/pulumi": version },
            },
            null,
            2,
          ),
          "tsconfig.json": stockTsconfig([...examples, ...readmeFiles]),
          "program.js": PROGRAM,
          ...Object.fromEntries(readme.map((text, i) => [readmeFiles[i], text])),
        },
        0o644,
      );
      const install = await run(
        "npm",
        ["install", "--prefer-offline", "--no-audit", "--no-fund", `@pulumi/pulumi@${version}`, tgz],
        { cwd: project, timeoutMs: 300_000 },
      );
      expect({ code: install.code, stderr: install.code === 0 ? "" : install.stderr }).toEqual({
        code: 0,
        stderr: "",
      });
      // `tsc` as the user's build runs it (the next tests check its result and run its output).
      compiled = await run(
        process.execPath,
        [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "."],
        {
          cwd: project,
          timeoutMs: 180_000,
        },
      );
      // The compiled harness, beside the project's SDK (see runProgram.ts).
      await mkdir(join(project, "harness"));
      for (const f of await readdir(join(ROOT, "bin", "tests", "support"))) {
        if (f.endsWith(".js")) {
          await writeFile(
            join(project, "harness", f),
            await readFile(join(ROOT, "bin", "tests", "support", f)),
          );
        }
      }
    }, 600_000);

    test("one copy of the SDK and of @pulumi/command: the project's, which the package takes as peers", async () => {
      const ls = await run("npm", ["ls", "--all", "--json", "@pulumi/pulumi", "@pulumi/command"], {
        cwd: project,
        timeoutMs: 60_000,
      });
      const versions: Record<string, Set<string>> = {
        "@pulumi/pulumi": new Set(),
        "@pulumi/command": new Set(),
      };
      const walk = (
        deps: Record<string, { version?: string; dependencies?: Record<string, unknown> }> = {},
      ): void => {
        for (const [name, d] of Object.entries(deps)) {
          if (name in versions && d.version) versions[name].add(d.version);
          walk(d.dependencies as never);
        }
      };
      walk((JSON.parse(ls.stdout) as { dependencies: never }).dependencies);
      expect([...versions["@pulumi/pulumi"]]).toEqual([version]);
      // npm installs the peer itself, the newest in the claimed range: the README says which that is.
      expect([...versions["@pulumi/command"]]).toEqual([PKG.devDependencies["@pulumi/command"]]);
    }, 60_000);

    test("every example and README program compiles with the stock tsconfig", async () => {
      expect({ code: compiled.code, output: compiled.stdout + compiled.stderr }).toEqual({
        code: 0,
        output: "",
      });
      // What was compiled: the examples and at least the README's fleet and quick-start programs.
      const tsconfig = JSON.parse(await readFile(join(project, "tsconfig.json"), "utf8")) as {
        files: string[];
      };
      expect(tsconfig.files).toEqual(
        expect.arrayContaining(["examples/ssh-fleet/index.ts", "readme/program-0.ts"]),
      );
      expect(tsconfig.files.filter((f) => f.startsWith("readme/")).length).toBeGreaterThanOrEqual(3);
    }, 30_000);

    test("a CA from the installed package goes through check, create, diff and delete in the real host", async () => {
      const prog = await run("node", ["program.js"], { cwd: project, timeoutMs: 60_000 });
      expect({ code: prog.code, stderr: prog.stderr }).toEqual({ code: 0, stderr: "" });
      const [ca] = JSON.parse(prog.stdout) as {
        type: string;
        name: string;
        inputs: Record<string, unknown>;
      }[];
      expect(ca.type).toBe("pulumi-nodejs:dynamic/virt-pki:CertificateAuthority");
      const provider = ca.inputs.__provider as string;
      expect(provider).toContain('require.resolve("pulumi-virt-pki/handlers", { paths: [cwd] })');
      expect(provider).toContain(`${project}/node_modules/pulumi-virt-pki/bin/provider/handlers/index.js`);

      // The host is the project's own @pulumi/pulumi (startProviderHost resolves it from cwd, as the shim does).
      const host = await startProviderHost({ cwd: project });
      hosts.push(host);
      expect(host.argv[1]).toBe(join(project, "node_modules/@pulumi/pulumi/cmd/dynamic-provider/index.js"));
      await host.configure();
      const urn = resourceUrn("ca", { type: ca.type, project: "packed", stack: "dev" });
      const checked = await host.check(urn, {}, ca.inputs);
      expect(checked.failures).toEqual([]);
      const created = await host.create(urn, checked.inputs);
      expect(created.properties.subjectDn).toBe("CN=Packed CA");
      expect(created.properties.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
      expect((await host.diff(created.id, urn, created.properties, checked.inputs)).changes).toBe(
        "DIFF_NONE",
      );
      await host.delete(created.id, urn, created.properties);
    }, 120_000);

    test("the README's quick start, compiled here, runs through the harness and shows what the README says", async () => {
      const program = join(project, "bin", "readme", "program-0.js");
      // The README's edit: compute1 gets a DNS name more.
      const text = await readFile(program, "utf8");
      const edit = 'fqdn: "compute1.example.org", ';
      expect(text).toContain(edit);
      await writeFile(
        join(project, "bin", "readme", "program-0.edited.js"),
        text.replace(edit, `${edit}dnsNames: ["virt1.example.org"], `),
      );
      const started = Date.now();
      const ran = await run(
        process.execPath,
        ["harness/runProgram.js", "bin/readme/program-0.js", "bin/readme/program-0.edited.js"],
        { cwd: project, timeoutMs: 120_000 },
      );
      expect({ code: ran.code, stderr: ran.code === 0 ? "" : ran.stderr }).toEqual({ code: 0, stderr: "" });
      const seen = JSON.parse(ran.stdout) as ProgramRun;

      expect(seen.preview).toBe(await readmeBlockAfter("`pulumi preview` on the new stack:"));
      expect(sortedRows(seen.up)).toEqual(sortedRows(await readmeBlockAfter("`pulumi up` creates them")));
      expect(seen.again).toBe(
        await readmeBlockAfter("A second `pulumi preview` or `pulumi up` changes nothing:"),
      );
      const shown = JSON.parse(await readmeBlockAfter("The\nstack outputs (`pulumi stack output`)")) as {
        tlsAllowedDnList: string[];
        earliestRenewAt: string;
      };
      expect(seen.outputs.tlsAllowedDnList).toEqual(shown.tlsAllowedDnList);
      // "the CRL's re-sign, 20 days after this `up`": in whole seconds, from some time during the run.
      const renew = Date.parse(seen.outputs.earliestRenewAt as string);
      const days20 = 20 * 24 * 3600 * 1000;
      expect(renew).toBeGreaterThanOrEqual(Math.floor(started / 1000) * 1000 + days20);
      expect(renew).toBeLessThanOrEqual(Date.now() + days20);

      // The edit's `preview --diff`: the same rows, and the same inputs changing. The values the README
      // shows that depend on when and where it ran (dates, the staging path, the cut) are compared by key.
      const byKey = (plan: string) =>
        plan
          .split("\n")
          .map((l) => (/^\s+~ (notAfter|triggers):/.test(l) ? l.replace(/^(\s+~ \w+):.*$/, "$1") : l));
      expect(byKey(seen.edited!)).toEqual(
        byKey(await readmeBlockAfter("An edit shows as the inputs it changes.")),
      );

      // The staged files, listed as the README lists them.
      const staging = join(project, "bin", "readme");
      const find = await run(
        "sh",
        [
          "-c",
          "find staging/compute1 staging/client-operator -printf '%M %p\\n' | sort -k2 | grep -v /claims/",
        ],
        { cwd: staging, env: { LC_ALL: "C" } },
      );
      expect(find.stdout.trimEnd()).toBe(await readmeBlockAfter("The files it staged"));

      // And what they hold is a working PKI: openssl checks the host's and the operator's certificates
      // against the staged CA and CRL, and each key against its certificate.
      const host = join(staging, "staging", "compute1", "etc", "pki");
      const alice = join(staging, "staging", "client-operator", "home", "alice", ".pki", "libvirt");
      for (const [ca, crl, cert, key] of [
        [
          `${host}/CA/cacert.pem`,
          `${host}/CA/cacrl.pem`,
          `${host}/libvirt/servercert.pem`,
          `${host}/libvirt/private/serverkey.pem`,
        ],
        [
          `${host}/qemu/ca-cert.pem`,
          `${host}/qemu/ca-crl.pem`,
          `${host}/qemu/server-cert.pem`,
          `${host}/qemu/server-key.pem`,
        ],
        [`${alice}/cacert.pem`, `${alice}/cacrl.pem`, `${alice}/clientcert.pem`, `${alice}/clientkey.pem`],
      ]) {
        const verify = await openssl(["verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, cert]);
        expect(verify.stdout.trim()).toBe(`${cert}: OK`);
        const fromCert = await openssl(["x509", "-in", cert, "-noout", "-pubkey"]);
        const fromKey = await openssl(["pkey", "-in", key, "-pubout"]);
        expect(fromKey.stdout).toBe(fromCert.stdout);
        expect(fromCert.stdout).toMatch(/^-----BEGIN PUBLIC KEY-----/);
      }
    }, 180_000);
  },
);
