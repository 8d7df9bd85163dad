/**
 * The package as users get it: `npm pack`, installed into a temporary project, the program run with
 * that project's own @pulumi/pulumi, and the serialized provider executed by the real dynamic-provider
 * host started in that project (so `require("pulumi-virt-pki/handlers")` resolves from its node_modules).
 */
import { join } from "node:path";
import { readdir } from "node:fs/promises";
import { ProviderHost, resourceUrn, startProviderHost } from "../support/pulumiHost";
import { removeDir, run, tempDir, writeFiles } from "../support/programs";

const ROOT = join(__dirname, "..", "..");

/** Runs in the temporary project: captures what its @pulumi/pulumi sends for a CA and a server certificate. */
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

let project: string;
let host: ProviderHost | undefined;
beforeAll(async () => {
  project = await tempDir("virt-pki-packed-");
  const pack = await run("npm", ["pack", "--pack-destination", project], { cwd: ROOT, timeoutMs: 120_000 });
  expect(pack.code).toBe(0);
  const tgz = (await readdir(project)).find((f) => f.endsWith(".tgz"))!;
  await writeFiles(
    project,
    { "package.json": '{ "name": "packed-user", "private": true }\n', "program.js": PROGRAM },
    0o644,
  );
  const install = await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", `./${tgz}`], {
    cwd: project,
    timeoutMs: 240_000,
  });
  expect(install.code).toBe(0);
}, 360_000);
afterAll(async () => {
  await host?.stop();
  await removeDir(project);
});

test("a CA from the installed package goes through check, create, diff and delete in the real host", async () => {
  const prog = await run("node", ["program.js"], { cwd: project, timeoutMs: 60_000 });
  expect(prog.code).toBe(0);
  const [ca] = JSON.parse(prog.stdout) as { type: string; name: string; inputs: Record<string, unknown> }[];
  expect(ca.type).toBe("pulumi-nodejs:dynamic/virt-pki:CertificateAuthority");
  const provider = ca.inputs.__provider as string;
  expect(provider).toContain("[p.resolve(cwd, relative), absolute].find(");
  expect(provider).toContain('require.resolve("pulumi-virt-pki/handlers", { paths: [cwd] })');
  expect(provider).toContain('relative: "node_modules/pulumi-virt-pki/bin/provider/handlers/index.js"');
  expect(provider).toContain(`${project}/node_modules/pulumi-virt-pki/bin/provider/handlers/index.js`);

  host = await startProviderHost({ cwd: project });
  await host.configure();
  const urn = resourceUrn("ca", { type: ca.type, project: "packed", stack: "dev" });
  const checked = await host.check(urn, {}, ca.inputs);
  expect(checked.failures).toEqual([]);
  const created = await host.create(urn, checked.inputs);
  expect(created.properties.subjectDn).toBe("CN=Packed CA");
  expect(created.properties.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  expect((await host.diff(created.id, urn, created.properties, checked.inputs)).changes).toBe("DIFF_NONE");
  await host.delete(created.id, urn, created.properties);
});
