/**
 * examples/shared-ca: the CA stack's program runs first; its exported `caCertPem` and `caKeyPem` reach the
 * host stack's program through `pulumi.StackReference` (the harness hands the first stack's outputs to
 * the reference), which issues and installs the hosts' credentials over SSH. Judged by libvirtd + virsh
 * between the two hosts and by openssl against the CA stack's certificate.
 */
import { join } from "node:path";
import { EngineState, formatPlan, up } from "../support/engine";
import { StackOutputs, exampleProgram, outputValue } from "../support/examples";
import { ProviderHost, startProviderHost } from "../support/pulumiHost";
import { RemoteLibvirtd, TestBed, startLibvirtdOnHost, startTestBed, virshOnHost } from "../support/testbed";

let bed: TestBed;
let provider: ProviderHost;
let libvirtd: RemoteLibvirtd | undefined;
const printed: string[] = [];

beforeAll(async () => {
  bed = await startTestBed({
    hosts: [
      { name: "site1.shared.test", address: "127.0.0.51", aliases: ["site1"] },
      { name: "site2.shared.test", address: "127.0.0.52", aliases: ["site2"] },
    ],
  });
  provider = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  await provider.configure();
}, 60_000);

afterAll(async () => {
  await libvirtd?.stop();
  await provider?.stop();
  await bed?.stop();
  console.log(printed.join("\n\n"));
});

test("a CA stack and a host stack that reads it with StackReference", async () => {
  let caExports: StackOutputs = {};
  const ca = await up(
    exampleProgram("shared-ca/ca", { commonName: "Shared CA" }, [], (e) => (caExports = e)),
    provider,
    {},
  );
  printed.push(`# shared-ca/ca, first up\n${formatPlan(ca.plan)}`);
  expect(ca.plan.map((s) => `${s.name} ${s.op}`)).toEqual(["fleet-ca create"]);
  const caStack = {
    caCertPem: await outputValue(caExports, "caCertPem"),
    caKeyPem: await outputValue(caExports, "caKeyPem"),
  };
  expect(String(caStack.caKeyPem)).toMatch(/PRIVATE KEY/);

  const config = {
    caStack: "organization/shared-ca-ca/prod",
    sshPrivateKey: bed.privateKey,
    // The bed's hosts run no libvirtd: the fleet leaves daemons alone (fleet-daemons.test.ts runs the defaults).
    manageDaemons: false,
    reload: "none",
    // The test bed's sshd ports are not 22.
    hosts: bed.hosts.map((h) => ({
      name: h.aliases[0],
      fqdn: h.name,
      address: h.address,
      hostKey: h.hostKey,
      port: h.port,
    })),
  };
  let state: EngineState = {};
  const program = exampleProgram("shared-ca/hosts", config, ["sshPrivateKey"]);
  const stacks = { "organization/shared-ca-ca/prod": caStack };
  let r = await up(program, provider, state, stacks);
  state = r.state;
  printed.push(`# shared-ca/hosts, first up\n${formatPlan(r.plan)}`);
  expect(r.plan.map((s) => `${s.name} ${s.op}`).sort()).toEqual([
    "site-shared-crl create",
    "site-site1 create",
    "site-site1-files create",
    "site-site2 create",
    "site-site2-files create",
  ]);
  r = await up(program, provider, state, stacks);
  expect(r.plan.every((s) => s.op === "same")).toBe(true);

  const site1 = bed.host("site1");
  expect(await site1.readFile("/etc/pki/CA/cacert.pem")).toBe(`${String(caStack.caCertPem).trim()}\n`);
  const verify = await site1.exec(
    "openssl verify -CAfile /etc/pki/CA/cacert.pem /etc/pki/libvirt/servercert.pem",
  );
  expect(verify.stdout).toContain("OK");
  libvirtd = await startLibvirtdOnHost(site1);
  const v = await virshOnHost(bed.host("site2"), {
    uri: `test+tls://site1.shared.test:${libvirtd.port}/default`,
  });
  expect(v.ok).toBe(true);
  printed.push("virsh site2 -> site1 (certificates from the shared CA stack): ok");
});
