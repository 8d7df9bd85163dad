/**
 * Lifecycle scenarios through the REAL dynamic-provider host over gRPC (tests/support/engine.ts plays
 * the engine). Resources are constructed from the compiled build (bin/), so the serialized providers
 * are what users' programs produce, not ts-jest output.
 */
import { join } from "node:path";
import * as virtpki from "../../bin/index";
import * as command from "@pulumi/command";
import { CheckFailedError, EngineState, formatPlan, planSummary, preview, up } from "../support/engine";
import {
  captureResources,
  isSecretValue,
  ProviderHost,
  resourceUrn,
  startProviderHost,
} from "../support/pulumiHost";
import { removeDir, run, tempDir, writeFiles } from "../support/programs";

interface FleetConfig {
  caSubject: string;
  computeDns: string[];
  shortLeaf?: boolean;
  csrPem?: string;
}

function fleet(cfg: FleetConfig): () => void {
  return () => {
    const ca = new virtpki.CertificateAuthority("ca", {
      subject: { commonName: cfg.caSubject },
      keySpec: "ecdsa-p256",
    });
    new virtpki.ServerCertificate("compute1", {
      ca,
      subject: { organization: "Libvirt Project", commonName: "compute1.libvirt.org" },
      dnsNames: cfg.computeDns,
      ipAddresses: ["127.0.0.1"],
      keySpec: "ecdsa-p256",
    });
    new virtpki.ClientCertificate("client1", {
      ca,
      subject: {
        country: "GB",
        state: "London",
        locality: "London",
        organization: "Libvirt Project",
        commonName: "client1",
      },
      keySpec: "ecdsa-p256",
    });
    new virtpki.CertificateRevocationList("crl", { ca });
    new virtpki.PreSharedKeys("psk", { usernames: ["qemu"] });
    if (cfg.csrPem) new virtpki.ServerCertificate("fromcsr", { ca, csrPem: cfg.csrPem });
  };
}

const byName = (state: EngineState, name: string) => Object.values(state).find((s) => s.name === name)!;
const ops = (plan: { name: string; op: string; replaces?: string[] }[]) =>
  Object.fromEntries(plan.map((s) => [s.name, s.replaces ? `${s.op} [${s.replaces.join(", ")}]` : s.op]));

let host: ProviderHost;
let dir: string;
const printed: string[] = [];
beforeAll(async () => {
  host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  await host.configure();
  dir = await tempDir("virt-pki-lifecycle-");
});
afterAll(async () => {
  await host?.stop();
  await removeDir(dir);
  // The plans, as `pulumi preview --diff` would summarise them (shown with --verbose or on failure).
  if (process.env.PRINT_PLANS) console.log(printed.join("\n\n"));
});

test("up, no-op, SAN change, CA rotation, CSR mode and removal, judged by openssl", async () => {
  const base: FleetConfig = { caSubject: "Libvirt Project", computeDns: ["compute1"] };
  // 1. First up: everything is created; the outputs verify with openssl.
  let r = await up(fleet(base), host, {});
  printed.push(`# first up\n${formatPlan(r.plan)}`);
  expect(ops(r.plan)).toEqual({
    ca: "create",
    compute1: "create",
    client1: "create",
    crl: "create",
    psk: "create",
  });
  const ca1 = byName(r.state, "ca").outputs;
  const server1 = byName(r.state, "compute1").outputs;
  const f = await writeFiles(dir, {
    "ca.pem": ca1.certPem as string,
    "server.pem": server1.certPem as string,
    "crl.pem": byName(r.state, "crl").outputs.crlPem as string,
  });
  const verify = await run("openssl", [
    "verify",
    "-CAfile",
    f["ca.pem"],
    "-purpose",
    "sslserver",
    "-verify_hostname",
    "compute1",
    "-crl_check",
    "-CRLfile",
    f["crl.pem"],
    f["server.pem"],
  ]);
  expect(verify.stdout.trim()).toBe(`${f["server.pem"]}: OK`);
  expect(byName(r.state, "client1").outputs.distinguishedName).toBe(
    "C=GB,ST=London,L=London,O=Libvirt Project,CN=client1",
  );
  expect(byName(r.state, "psk").outputs.keysPsk).toMatch(/^qemu:[0-9a-f]{64}\n$/);
  // No key or CA key leaks into a leaf's state or the host's output.
  expect(JSON.stringify(byName(r.state, "compute1").outputs)).not.toContain(
    (ca1.keyPem as string).split("\n")[1],
  );
  expect(JSON.stringify(host.output())).not.toMatch(/PRIVATE KEY/);

  // 2. Same program again: zero changes.
  r = await up(fleet(base), host, r.state);
  printed.push(`# same program again\n${formatPlan(r.plan)}`);
  expect(r.plan.every((s) => s.op === "same")).toBe(true);

  // 3. Add a DNS name: exactly that certificate is replaced, and says why.
  r = await up(fleet({ ...base, computeDns: ["compute1", "kvm1.libvirt.org"] }), host, r.state);
  printed.push(`# add a DNS name to compute1\n${formatPlan(r.plan)}`);
  expect(ops(r.plan)).toEqual({
    ca: "same",
    compute1: "replace [dnsNames]",
    client1: "same",
    crl: "same",
    psk: "same",
  });
  expect(byName(r.state, "compute1").outputs.serialNumber).not.toBe(server1.serialNumber);

  // 4. Rotate the CA (new subject): the CA and every certificate it issued are replaced; the CRL is re-signed in place.
  const beforeRotation = r.state;
  r = await up(
    fleet({ ...base, caSubject: "Libvirt Project 2026", computeDns: ["compute1", "kvm1.libvirt.org"] }),
    host,
    r.state,
  );
  printed.push(`# rotate the CA\n${formatPlan(r.plan, { details: true })}`);
  expect(ops(r.plan)).toEqual({
    ca: "replace [subject]",
    compute1: "replace [ca]",
    client1: "replace [ca]",
    crl: "update",
    psk: "same",
  });
  expect(byName(r.state, "crl").outputs.crlNumber as number).toBeGreaterThan(
    byName(beforeRotation, "crl").outputs.crlNumber as number,
  );
  const g = await writeFiles(dir, {
    "ca2.pem": byName(r.state, "ca").outputs.certPem as string,
    "server2.pem": byName(r.state, "compute1").outputs.certPem as string,
  });
  expect(
    (
      await run("openssl", [
        "verify",
        "-CAfile",
        g["ca2.pem"],
        "-verify_hostname",
        "kvm1.libvirt.org",
        g["server2.pem"],
      ])
    ).code,
  ).toBe(0);

  // 5. CSR mode: a certificate for a key that never leaves the host; no private key in state.
  const hostKey = await run("openssl", [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
  ]);
  await writeFiles(dir, { "host.key": hostKey.stdout });
  const csr = await run("openssl", [
    "req",
    "-new",
    "-key",
    join(dir, "host.key"),
    "-subj",
    "/O=Libvirt Project/CN=compute9.libvirt.org",
  ]);
  r = await up(
    fleet({
      ...base,
      caSubject: "Libvirt Project 2026",
      computeDns: ["compute1", "kvm1.libvirt.org"],
      csrPem: csr.stdout,
    }),
    host,
    r.state,
  );
  printed.push(`# sign a CSR\n${formatPlan(r.plan)}`);
  expect(ops(r.plan).fromcsr).toBe("create");
  const fromCsr = byName(r.state, "fromcsr");
  expect(fromCsr.outputs.keyPem).toBeUndefined();
  expect(JSON.stringify(fromCsr.outputs)).not.toMatch(/PRIVATE KEY/);
  const c = await writeFiles(dir, { "csr-cert.pem": fromCsr.outputs.certPem as string });
  const mod = await run("openssl", ["x509", "-noout", "-pubkey", "-in", c["csr-cert.pem"]]);
  const keyPub = await run("openssl", ["pkey", "-pubout", "-in", join(dir, "host.key")]);
  expect(mod.stdout).toBe(keyPub.stdout);

  // 6. Remove the CSR certificate from the program: it is deleted, nothing else changes.
  r = await up(
    fleet({ ...base, caSubject: "Libvirt Project 2026", computeDns: ["compute1", "kvm1.libvirt.org"] }),
    host,
    r.state,
  );
  printed.push(`# remove it\n${formatPlan(r.plan)}`);
  expect(ops(r.plan)).toEqual({
    ca: "same",
    compute1: "same",
    client1: "same",
    crl: "same",
    psk: "same",
    fromcsr: "delete",
  });

  // refresh (Read) returns the same state and keeps the provider, and no inputs: the engine keeps the stored
  // ones (RefreshStep), so the next check and diff against them find nothing to change.
  const server = byName(r.state, "compute1");
  const urn = resourceUrn("compute1", { type: server.type });
  const read = await host.read(server.id, urn, server.outputs, server.inputs);
  expect(read.properties.certPem).toBe(server.outputs.certPem);
  expect(read.properties.__provider).toBe(server.outputs.__provider);
  expect(read.inputs).toBeUndefined();
  const program = await captureResources(
    fleet({ ...base, caSubject: "Libvirt Project 2026", computeDns: ["compute1", "kvm1.libvirt.org"] }),
  );
  const news = program.find((c) => c.name === "compute1")!.inputs;
  // The CA's outputs in a mocked program are its inputs: give the leaf the stored CA, as the engine would.
  const checked = await host.check(urn, server.inputs, { ...news, ca: server.inputs.ca });
  expect(checked.failures).toEqual([]);
  expect(checked.inputs.notAfter).toBe(server.inputs.notAfter);
  expect((await host.diff(server.id, urn, read.properties, checked.inputs)).changes).toBe("DIFF_NONE");
});

test("a leaf truncated to its CA is not re-issued for renewal while a new one would end at the same time", async () => {
  // The CA expires in 2 hours; the leaf is truncated to it, so 720 h before its end is already past. A
  // re-issue would end with the CA again: check plans the same end, and nothing changes until the CA is
  // renewed (its own window, 0.5 h), which re-issues the leaf as `ca`.
  const program = () => {
    const ca = new virtpki.CertificateAuthority("shortca", {
      subject: { commonName: "Short CA" },
      keySpec: "ecdsa-p256",
      validityHours: 2,
      renewBeforeHours: 0.5,
    });
    new virtpki.ServerCertificate("shortleaf", {
      ca,
      subject: { commonName: "h1.example.com" },
      keySpec: "ecdsa-p256",
      truncateToIssuer: true,
    });
  };
  let r = await up(program, host, {});
  expect(ops(r.plan)).toEqual({ shortca: "create", shortleaf: "create" });
  expect(byName(r.state, "shortleaf").outputs.notAfter).toBe(byName(r.state, "shortca").outputs.notAfter);
  r = await up(program, host, r.state);
  printed.push(`# leaf truncated to its CA, inside its window\n${formatPlan(r.plan)}`);
  expect(ops(r.plan)).toEqual({ shortca: "same", shortleaf: "same" });
});

test("a CA renewBeforeHours-only change: the preview shows no leaf or install replaced, and the up does just that", async () => {
  const installed = join(dir, "installed.pem");
  const program = (caRenewBeforeHours: number) => () => {
    const ca = new virtpki.CertificateAuthority("policyca", {
      subject: { commonName: "Policy CA" },
      keySpec: "ecdsa-p256",
      renewBeforeHours: caRenewBeforeHours,
    });
    const leaf = new virtpki.ServerCertificate("policyleaf", {
      ca,
      subject: { commonName: "h1.example.com" },
      keySpec: "ecdsa-p256",
    });
    new virtpki.CertificateRevocationList("policycrl", { ca });
    // Stands for an install: it consumes the leaf's certificate.
    new command.local.Command("policyinstall", {
      create: `cat > ${installed}`,
      stdin: leaf.certPem,
      interpreter: ["/bin/sh", "-c"],
    });
  };
  const first = await up(program(720), host, {});
  const p = await preview(program(100), host, first.state);
  printed.push(`# CA renewBeforeHours only: pulumi preview --diff\n${formatPlan(p.plan, { details: true })}`);
  const r = await up(program(100), host, first.state);
  expect(planSummary(p.plan)).toEqual(planSummary(r.plan));
  expect(planSummary(p.plan).filter((l) => /policyleaf|policycrl|policyinstall/.test(l))).toEqual([]);
  expect(byName(r.state, "policyleaf").outputs.certPem).toBe(
    byName(first.state, "policyleaf").outputs.certPem,
  );
});

test("a CRL inside its re-sign window: the preview shows ~nextUpdate, and the up re-signs it in place", async () => {
  let renewAt: string | undefined;
  const program = () => {
    const ca = new virtpki.CertificateAuthority("resignca", {
      subject: { commonName: "Re-sign CA" },
      keySpec: "ecdsa-p256",
    });
    // 1 hour of validity, re-signed in its last 0.9999 hours: due 0.36 s after it was signed.
    const crl = new virtpki.CertificateRevocationList("resigncrl", {
      ca,
      nextUpdateHours: 1,
      renewBeforeHours: 0.9999,
    });
    crl.renewAt.apply((t) => (renewAt = t));
  };
  const first = await up(program, host, {});
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const p = await preview(program, host, first.state);
  printed.push(`# CRL re-sign due: pulumi preview --diff\n${formatPlan(p.plan, { details: true })}`);
  expect(planSummary(p.plan)).toEqual(["resigncrl update [diff: ~nextUpdate]"]);
  const r = await up(program, host, first.state);
  expect(planSummary(r.plan)).toEqual(planSummary(p.plan));
  const before = byName(first.state, "resigncrl").outputs;
  const after = byName(r.state, "resigncrl").outputs;
  expect(after.crlNumber as number).toBeGreaterThan(before.crlNumber as number);
  expect(after.nextUpdate).toBe(byName(r.state, "resigncrl").inputs.nextUpdate);
  // renewAt: the new nextUpdate minus the program's window (0.9999 h), as check plans the re-sign.
  expect(renewAt).toBe(new Date(Date.parse(after.nextUpdate as string) - 0.9999 * 3_600_000).toISOString());
});

test("check failures name the property and the fix, through the host", async () => {
  const ca = (
    await up(
      () =>
        void new virtpki.CertificateAuthority("badca", {
          subject: { commonName: "CA" },
          keySpec: "ecdsa-p256",
        }),
      host,
      {},
    )
  ).state;
  const captured = await captureResources(() => {
    new virtpki.ServerCertificate("badleaf", {
      ca: {
        certPem: byName(ca, "badca").outputs.certPem as string,
        keyPem: byName(ca, "badca").outputs.keyPem as string,
      },
      subject: { commonName: "h1" },
      ipAddresses: ["10.0.0.300"],
      validityHours: 2,
      renewBeforeHours: 2,
    });
  });
  const leaf = captured.find((c) => c.name === "badleaf")!;
  const checked = await host.check(resourceUrn("badleaf", { type: leaf.type }), {}, leaf.inputs);
  expect(checked.failures).toEqual([
    { property: "ipAddresses", reason: 'ipAddresses[0]: "10.0.0.300" is not an IPv4 or IPv6 address' },
    {
      property: "renewBeforeHours",
      reason:
        "renewBeforeHours: 2 hours is not shorter than validityHours (2); the certificate would be due for renewal as soon as it is issued. Lower renewBeforeHours",
    },
  ]);
  expect(JSON.stringify(checked.failures)).not.toMatch(/PRIVATE KEY/);
});

test("a check failure on an input that carries a key is printed without that input's value", async () => {
  // Two CAs: the leaf is given the first CA's certificate with the second CA's key, so `ca` fails its check.
  const cas = (
    await up(
      () => {
        new virtpki.CertificateAuthority("ca-a", { subject: { commonName: "A" }, keySpec: "ecdsa-p256" });
        new virtpki.CertificateAuthority("ca-b", { subject: { commonName: "B" }, keySpec: "ecdsa-p256" });
      },
      host,
      {},
    )
  ).state;
  const keyPem = byName(cas, "ca-b").outputs.keyPem as string;
  // What `up` fails with: the engine's print of these failures (the harness's model of issueCheckFailures).
  const message = await up(
    () =>
      void new virtpki.ServerCertificate("mixed", {
        ca: { certPem: byName(cas, "ca-a").outputs.certPem as string, keyPem },
        subject: { commonName: "h1" },
        ipAddresses: ["10.0.0.300"],
      }),
    host,
    {},
  ).then(
    () => "up succeeded",
    (e: unknown) => {
      expect(e).toBeInstanceOf(CheckFailedError);
      return (e as Error).message;
    },
  );
  printed.push(`# check failures as the engine prints them\n${message}`);
  // The engine's wording (issueCheckFailures): a named property is printed with its value ...
  expect(message).toContain(
    `resource 'mixed': property ipAddresses value {[{10.0.0.300}]} has a problem: ipAddresses[0]: "10.0.0.300" is not an IPv4 or IPv6 address`,
  );
  // ... so the failure on `ca` names no property, only its reason.
  expect(message).toContain(
    "resource 'mixed' has a problem: ca.keyPem: the private key does not match the CA certificate",
  );
  expect(message).not.toMatch(/PRIVATE KEY/);
  for (const line of keyPem.split("\n").filter((l) => l.length > 8 && !l.startsWith("-----"))) {
    expect(message).not.toContain(line);
  }
});

test("where the CA key is stored: a secret in the inputs of each leaf, CRL and intermediate, never in their outputs", async () => {
  const program = () => {
    const root = new virtpki.CertificateAuthority("keyroot", {
      subject: { commonName: "Root" },
      keySpec: "ecdsa-p256",
      pathLength: 1,
    });
    const mid = new virtpki.CertificateAuthority("keymid", {
      subject: { commonName: "Mid" },
      keySpec: "ecdsa-p256",
      parent: root,
      // Longer than the leaf's default 365 days: equal to it, the leaf issued a second after the CA would
      // outlive it and fail its check whenever the two straddle a second (1 run in ~10 did).
      validityHours: 2 * 24 * 365,
    });
    new virtpki.ServerCertificate("keyleaf", {
      ca: mid,
      subject: { commonName: "h1" },
      keySpec: "ecdsa-p256",
    });
    new virtpki.CertificateRevocationList("keycrl", { ca: mid });
  };
  const r = await up(program, host, {});
  const body = (name: string) => (byName(r.state, name).outputs.keyPem as string).split("\n")[1];
  const captured = await captureResources(program);
  const inputOf = (name: string, key: string) => captured.find((c) => c.name === name)!.inputs[key];
  for (const [name, key, signer] of [
    ["keymid", "parent", "keyroot"],
    ["keyleaf", "ca", "keymid"],
    ["keycrl", "ca", "keymid"],
  ] as const) {
    // The program registers this input as a secret (the state encrypts it) ...
    expect(isSecretValue(inputOf(name, key))).toBe(true);
    // ... and the stored inputs hold the signer's key: the provider needs it on every create.
    expect(JSON.stringify(byName(r.state, name).inputs[key])).toContain(body(signer));
    // The resource's outputs (state) hold the signer's certificate, never its key.
    expect(JSON.stringify(byName(r.state, name).outputs)).not.toContain(body(signer));
  }
  // The CA's own key is its secret output.
  expect(captured.find((c) => c.name === "keymid")!.options?.additionalSecretOutputs).toEqual(["keyPem"]);
});

test("the SDK serializes providers that only require the handlers, and marks keys as secret outputs", async () => {
  const captured = await captureResources(fleet({ caSubject: "X", computeDns: [] }));
  const ca = captured.find((c) => c.name === "ca")!;
  expect(ca.type).toBe("pulumi-nodejs:dynamic/virt-pki:CertificateAuthority");
  expect(captured.map((c) => c.type).sort()).toEqual([
    "pulumi-nodejs:dynamic/virt-pki:CertificateAuthority",
    "pulumi-nodejs:dynamic/virt-pki:CertificateRevocationList",
    "pulumi-nodejs:dynamic/virt-pki:ClientCertificate",
    "pulumi-nodejs:dynamic/virt-pki:PreSharedKeys",
    "pulumi-nodejs:dynamic/virt-pki:ServerCertificate",
  ]);
  const provider = ca.inputs.__provider as string;
  // The handlers by package name, then this build's by path relative to the program's cwd, then absolute.
  expect(provider).toContain("[p.resolve(cwd, relative), absolute].find(");
  expect(provider).toContain('require.resolve("pulumi-virt-pki/handlers", { paths: [cwd] })');
  expect(provider).toContain('relative: "bin/provider/handlers/index.js"');
  expect(provider).not.toMatch(/cov_|PRIVATE KEY/);
  expect(provider.length).toBeLessThan(10_000);
  expect(ca.options?.additionalSecretOutputs).toEqual(["keyPem"]);
  expect(captured.find((c) => c.name === "compute1")!.options?.additionalSecretOutputs).toEqual(["keyPem"]);
  expect(captured.find((c) => c.name === "psk")!.options?.additionalSecretOutputs).toEqual(["keysPsk"]);
});

test("the root Pulumi.yaml's default program: first up creates and installs the fleet, the second changes nothing", async () => {
  const { declareFleet } = await import("../../bin/examples/default/fleet");
  const staging = join(dir, "staging");
  const program = () => void declareFleet(undefined, staging);
  let r = await up(program, host, {});
  printed.push(`# default program, first up\n${formatPlan(r.plan)}`);
  expect(r.plan.map((s) => `${s.name} ${s.op}`).sort()).toEqual([
    "fleet-ca create",
    "fleet-ca-crl create",
    "fleet-client-operator create",
    "fleet-client-operator-files create",
    "fleet-compute1 create",
    "fleet-compute1-files create",
    "fleet-compute2 create",
    "fleet-compute2-files create",
    "fleet-compute3 create",
    "fleet-compute3-files create",
    "fleet-psk create",
  ]);
  r = await up(program, host, r.state);
  expect(r.plan.every((s) => s.op === "same")).toBe(true);
  // Each host's files are staged in the layout the host would have; the real judges read them.
  const c2 = join(staging, "compute2");
  // One identity per role: the libvirt server certificate serves only; the libvirt client identity only
  // connects; the QEMU identity does both (migration and NBD, server and client) with the host's IP SAN.
  const verify = async (file: string, purpose: string, ip = true) =>
    (
      await run("openssl", [
        "verify",
        "-CAfile",
        join(c2, "etc/pki/CA/cacert.pem"),
        "-purpose",
        purpose,
        ...(ip ? ["-verify_ip", "127.0.0.12"] : []),
        join(c2, file),
      ])
    ).code;
  expect({
    serverAsServer: await verify("etc/pki/libvirt/servercert.pem", "sslserver"),
    serverAsClient: (await verify("etc/pki/libvirt/servercert.pem", "sslclient")) === 0,
    clientAsClient: await verify("etc/pki/libvirt/clientcert.pem", "sslclient", false),
    clientAsServer: (await verify("etc/pki/libvirt/clientcert.pem", "sslserver", false)) === 0,
    qemuAsServer: await verify("etc/pki/qemu/server-cert.pem", "sslserver"),
    qemuAsClient: await verify("etc/pki/qemu/client-cert.pem", "sslclient"),
  }).toEqual({
    serverAsServer: 0,
    serverAsClient: false,
    clientAsClient: 0,
    clientAsServer: false,
    qemuAsServer: 0,
    qemuAsClient: 0,
  });
  const qemuKey = await run("openssl", ["pkey", "-in", join(c2, "etc/pki/qemu/server-key.pem"), "-noout"]);
  expect(qemuKey.code).toBe(0);
  const operator = await run("virt-pki-query-dn", [
    join(staging, "client-operator/root/.pki/libvirt/clientcert.pem"),
  ]);
  expect(operator.stdout.trim()).toBe("C=GB,ST=London,L=London,O=Example Virt,CN=operator");
});
