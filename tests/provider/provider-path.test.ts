/**
 * The serialized provider stored in state (`__provider`) must find the handlers after the program's
 * directory moved or the installed package was upgraded: the engine runs Delete and Read (destroy,
 * refresh, the delete after a replacement) with the OLD state's `__provider`.
 *
 * Each case serializes a CertificateAuthority's provider in a separate `node` process whose cwd is the one
 * the engine gives the program (the directory of `main`, pkg/engine/project.go `getPwdMain`), from a copy
 * of the compiled build; the real dynamic-provider host, started with the cwd the engine gives the plugin
 * (the same directory, plugin.go `ExecPlugin` `cmd.Dir = pwd`), then creates the CA. The files then move
 * or change, and a new host reads and deletes with the old `__provider` and the old outputs.
 */
import { existsSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ProviderHost, ProviderHostError, resourceUrn, startProviderHost } from "../support/pulumiHost";
import { copyPackage, makeCheckout, makeProject, markVersion, requireBuild } from "../support/checkout";
import { removeDir, run, tempDir, writeFiles } from "../support/programs";

const CA_TYPE = "pulumi-nodejs:dynamic/virt-pki:CertificateAuthority";

/** Run with cwd = the program's directory: prints the inputs a CA from the package at argv[2] registers. */
const CAPTURE = `
const path = require("path");
const virtpki = require(path.resolve(process.argv[2]));
const pulumi = require(require.resolve("@pulumi/pulumi", { paths: [path.resolve(process.argv[2])] }));
const seen = [];
pulumi.runtime
  .setMocks({
    newResource: (a) => { seen.push(a.inputs); return { id: a.name + "-id", state: a.inputs }; },
    call: (a) => a.inputs,
  }, "moved", "dev", false)
  .then(async () => {
    new virtpki.CertificateAuthority("ca", { subject: { commonName: "Moved CA" }, keySpec: "ecdsa-p256" });
    for (let i = 0; i < 20 && seen.length < 1; i++) { await pulumi.runtime.disconnect(); await new Promise((r) => setTimeout(r, 25)); }
    process.stdout.write(JSON.stringify(seen[0]));
  });
`;

const urn = resourceUrn("ca", { type: CA_TYPE, project: "moved", stack: "dev" });

/** Serializes a CA's provider with the program's cwd `cwd`, and creates it in a host started there. */
async function createCa(cwd: string, pkg: string): Promise<{ id: string; props: Record<string, unknown> }> {
  const script = join(cwd, "capture-ca.js");
  await writeFiles(cwd, { "capture-ca.js": CAPTURE }, 0o644);
  const prog = await run("node", [script, pkg], { cwd, timeoutMs: 60_000 });
  rmSync(script);
  expect(prog.stderr).toBe("");
  const inputs = JSON.parse(prog.stdout) as Record<string, unknown>;
  const host = await startProviderHost({ cwd });
  try {
    await host.configure();
    const checked = await host.check(urn, {}, inputs);
    expect(checked.failures).toEqual([]);
    const created = await host.create(urn, checked.inputs);
    expect(created.properties.subjectDn).toBe("CN=Moved CA");
    return { id: created.id, props: created.properties };
  } finally {
    await host.stop();
  }
}

/** Reads, then deletes, with the old state in a host started in `cwd`; returns the host's output. */
async function readAndDelete(
  cwd: string,
  state: { id: string; props: Record<string, unknown> },
): Promise<string> {
  let host: ProviderHost | undefined;
  try {
    host = await startProviderHost({ cwd });
    await host.configure();
    const read = await host.read(state.id, urn, state.props, {});
    expect(read.id).toBe(state.id);
    expect(read.properties.certPem).toBe(state.props.certPem);
    expect(read.properties.__provider).toBe(state.props.__provider);
    await host.delete(state.id, urn, state.props);
    return host.output().stderr;
  } finally {
    await host?.stop();
  }
}

let tmp: string;
beforeAll(async () => {
  requireBuild();
  tmp = await tempDir("virt-pki-provider-path-");
});
afterAll(async () => {
  await removeDir(tmp);
});

test("a checkout moved to another directory: the old state still reads and deletes", async () => {
  const a = join(tmp, "checkout-a");
  const b = join(tmp, "checkout-b");
  makeCheckout(a);
  // The root Pulumi.yaml's `main` is bin/examples/default/index.js: the engine runs the program and the
  // provider plugin in bin/examples/default.
  const state = await createCa(join(a, "bin", "examples", "default"), join(a, "bin", "index.js"));
  renameSync(a, b);
  expect(existsSync(a)).toBe(false);
  await readAndDelete(join(b, "bin", "examples", "default"), state);

  // What made it work: the path relative to the program's directory, next to the (now stale) absolute one.
  const provider = state.props.__provider as string;
  expect(provider).toContain('"../../provider/handlers/index.js"');
  expect(provider).toContain(`"${join(a, "bin", "provider", "handlers", "index.js")}"`);
  // The lookup (this build's path, then the package inside the project only) costs about 3.2 KB per resource.
  expect(provider.length).toBeLessThan(3_400);
});

test("with no copy of the handlers left, the host reports every place it looked", async () => {
  const c = join(tmp, "checkout-c");
  makeCheckout(c);
  const cwd = join(c, "bin", "examples", "default");
  const state = await createCa(cwd, join(c, "bin", "index.js"));
  rmSync(join(c, "bin", "provider"), { recursive: true });
  const host = await startProviderHost({ cwd });
  try {
    await host.configure();
    const err = await host.delete(state.id, urn, state.props).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProviderHostError);
    expect((err as ProviderHostError).details).toBe(
      `pulumi-virt-pki handlers not found from ${cwd}: tried ` +
        `${join(c, "bin", "provider", "handlers", "index.js")}, ${join(c, "bin", "provider", "handlers", "index.js")}, ` +
        "pulumi-virt-pki/handlers",
    );
  } finally {
    await host.stop();
  }
});

test("a package planted in a parent folder outside the project is never loaded", async () => {
  // Another local user can create /tmp/node_modules for a project under /tmp: Node's lookup by name walks up
  // through every parent's node_modules. Here the genuine handlers are gone and a hostile copy waits above.
  const above = join(tmp, "shared");
  const d = join(above, "checkout-d");
  makeCheckout(d);
  const cwd = join(d, "bin", "examples", "default");
  const state = await createCa(cwd, join(d, "bin", "index.js"));
  rmSync(join(d, "bin", "provider"), { recursive: true });
  const marker = join(tmp, "hostile-ran");
  const hostile = join(above, "node_modules", "pulumi-virt-pki");
  await writeFiles(
    hostile,
    {
      "package.json": JSON.stringify({ name: "pulumi-virt-pki", exports: { "./handlers": "./h.js" } }),
      "h.js": `require("fs").writeFileSync(${JSON.stringify(marker)}, "ran"); module.exports = {};`,
    },
    0o644,
  );
  const host = await startProviderHost({ cwd });
  try {
    await host.configure();
    const err = await host.delete(state.id, urn, state.props).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as ProviderHostError).details).toContain(
      `pulumi-virt-pki/handlers (${join(hostile, "h.js")} is outside the project ${d}: not loaded)`,
    );
    expect(existsSync(marker)).toBe(false);
  } finally {
    await host.stop();
  }
});

test("an installed package upgraded in place: the old state reads and deletes with the new handlers", async () => {
  const project = join(tmp, "project");
  const pkg = join(project, "node_modules", "pulumi-virt-pki");
  makeProject(project, { "node_modules/pulumi-virt-pki": "0.1.0" });
  const state = await createCa(project, pkg);

  // npm replaces the package's files: the old ones are gone, the new ones carry another marker.
  rmSync(pkg, { recursive: true });
  copyPackage(pkg);
  markVersion(pkg, "0.2.0");
  const stderr = await readAndDelete(project, state);
  expect(stderr).toContain("virt-pki handlers 0.2.0 loaded");
  expect(stderr).not.toContain("virt-pki handlers 0.1.0 loaded");
});

test("a nested install, after the project moved, and after it was hoisted", async () => {
  const before = join(tmp, "nested-before");
  const after = join(tmp, "nested-after");
  const nested = join("node_modules", "fleet-lib", "node_modules", "pulumi-virt-pki");
  makeProject(before, { [nested]: "0.1.0" });
  const state = await createCa(before, join(before, nested));

  // The whole project moves: the package name does not resolve from the root (the copy is nested) and the
  // absolute path is gone; the path relative to the project still leads to it.
  renameSync(before, after);
  expect(await readAndDelete(after, state)).toContain("virt-pki handlers 0.1.0 loaded");
  expect(state.props.__provider as string).toContain(
    `"${join(nested, "bin", "provider", "handlers", "index.js")}"`,
  );

  // npm hoists it (and upgrades it) to the top: found by name.
  rmSync(join(after, nested), { recursive: true });
  rmSync(join(after, "node_modules", "pulumi-virt-pki"), { recursive: true, force: true });
  copyPackage(join(after, "node_modules", "pulumi-virt-pki"));
  markVersion(join(after, "node_modules", "pulumi-virt-pki"), "0.2.0");
  expect(await readAndDelete(after, state)).toContain("virt-pki handlers 0.2.0 loaded");
});
