/**
 * The seven `pulumi up` lifecycles of issue 5, run on the examples/ssh-fleet program itself (its compiled
 * index.js, configured through stack config) by the engine test harness: dynamic resources go to the REAL
 * dynamic-provider host over gRPC, `command:remote:Command`s run over real SSH on the test bed's hosts.
 * The program runs from a copy of the built checkout, in the directory of its compiled main (where the
 * language host runs it), so that the checkout can move half-way. Before each `up` a `pulumi preview` runs,
 * and what it announces must be exactly what the up then does; both are printed as the CLI shows them.
 * After each run real handshakes are made on the hosts at libvirt's and QEMU's default paths: libvirtd +
 * virsh, qemu-nbd + qemu-img.
 */
import { mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EngineState, PlanStep, formatPlan, planSummary, preview, refresh, up } from "../support/engine";
import { makeCheckout, requireBuild } from "../support/checkout";
import { StackOutputs, exampleProgram, outputValue } from "../support/examples";
import { ProviderHost, startProviderHost } from "../support/pulumiHost";
import {
  RemoteLibvirtd,
  RemoteQemuNbd,
  TestBed,
  TestHost,
  qemuImgInfoOnHost,
  startLibvirtdOnHost,
  startQemuNbdOnHost,
  startTestBed,
  virshOnHost,
} from "../support/testbed";

const ORG = "Fleet Test";
const OPERATOR_DN = `C=GB,ST=London,L=London,O=${ORG},CN=operator`;
const NAMES = ["compute1", "compute2", "compute3"];

let bed: TestBed;
let provider: ProviderHost;
/** The temp folder holding the checkout, which moves from checkout-a to checkout-b in step 5c. */
let parent: string;
let checkout: string;
/** Where the language host runs the program, and the engine the dynamic-provider host: the directory of main. */
const programDir = () => join(checkout, "bin", "examples", "ssh-fleet");
let ws: TestHost;
let state: EngineState = {};
let exported: StackOutputs = {};
const daemons = new Map<string, RemoteLibvirtd>();
const printed: string[] = [];

beforeAll(async () => {
  bed = await startTestBed({
    hosts: [
      { name: "compute1.fleet.test", address: "127.0.0.41", aliases: ["compute1", "hv1.fleet.test"] },
      { name: "compute2.fleet.test", address: "127.0.0.42", aliases: ["compute2"] },
      { name: "compute3.fleet.test", address: "127.0.0.43", aliases: ["compute3"] },
      { name: "ws.fleet.test", address: "127.0.0.44", aliases: ["ws"] },
    ],
  });
  ws = bed.host("ws");
  requireBuild();
  parent = mkdtempSync(join(tmpdir(), "virt-pki-fleet-"));
  checkout = join(parent, "checkout-a");
  makeCheckout(checkout);
  provider = await startProviderHost({ cwd: programDir() });
  await provider.configure();
}, 60_000);

afterAll(async () => {
  await stopDaemons();
  await provider?.stop();
  await bed?.stop();
  if (parent) rmSync(parent, { recursive: true, force: true });
  console.log(printed.join("\n\n"));
});

interface Settings {
  hosts?: string[];
  extraDns?: Record<string, string[]>;
  renewBeforeHours?: number;
  revoked?: string[];
  cas?: { id: string; commonName: string }[];
  issuingCa?: string;
}

function config(s: Settings): Record<string, unknown> {
  return {
    organization: ORG,
    sshPrivateKey: bed.privateKey,
    hosts: (s.hosts ?? NAMES).map((n) => {
      const h = bed.host(n);
      return {
        name: n,
        fqdn: h.name,
        address: h.address,
        hostKey: h.hostKey,
        port: h.port,
        dnsNames: s.extraDns?.[n],
      };
    }),
    clients: [
      {
        name: "operator",
        subject: {
          country: "GB",
          state: "London",
          locality: "London",
          organization: ORG,
          commonName: "operator",
        },
        install: { address: ws.address, port: ws.port, hostKey: ws.hostKey },
      },
    ],
    pskUsers: ["qemu"],
    // These hosts run libvirtd as the test starts it (restartDaemons), on private ports: the fleet leaves
    // their settings and daemons alone (tests/hosts/fleet-daemons.test.ts runs the managed defaults).
    manageDaemons: false,
    reload: "none",
    // Short-lived leaves (1 hour), renewed in their last half hour unless a scenario says otherwise.
    validityHours: 1,
    renewBeforeHours: s.renewBeforeHours ?? 0.5,
    revokedClients: s.revoked,
    cas: s.cas,
    issuingCa: s.issuingCa,
  };
}

/**
 * `pulumi preview` then `pulumi up` of the example with settings `s`, in the directory of main (sdk/nodejs/cmd/
 * run/run.ts `process.chdir(pwd)`). The preview must announce exactly the steps and diffs the up performs.
 */
async function runUp(title: string, s: Settings): Promise<PlanStep[]> {
  const program = exampleProgram("ssh-fleet", config(s), ["sshPrivateKey"], (e) => (exported = e), checkout);
  const cwd = process.cwd();
  process.chdir(programDir());
  try {
    const p = await preview(program, provider, state);
    const r = await up(program, provider, state);
    state = r.state;
    const shown = formatPlan(p.plan, { details: true });
    // Secret inputs (the CA key in each leaf's `ca`, the install's stdin) are shown as [secret], as the CLI does.
    expect(shown).not.toMatch(/PRIVATE KEY|virt-pki-plan/);
    printed.push(`# ${title}\n## pulumi preview --diff\n${shown}\n## pulumi up\n${formatPlan(r.plan)}`);
    expect({ title, announced: changes(p.plan) }).toEqual({ title, announced: changes(r.plan) });
    return r.plan;
  } finally {
    process.chdir(cwd);
  }
}

/** The changed steps as the CLI shows them (`name op [diff: ...]`), sorted. */
function changes(plan: PlanStep[]): string[] {
  return planSummary(plan).sort();
}

function valueOf<T>(name: string): Promise<T> {
  return outputValue<T>(exported, name);
}

async function stopDaemons(): Promise<void> {
  for (const d of daemons.values()) await d.stop();
  daemons.clear();
}

/** (Re)starts libvirtd on each host with the fleet's tls_allowed_dn_list (libvirtd reads certificates at start). */
async function restartDaemons(hosts: string[]): Promise<void> {
  await stopDaemons();
  const allowed = await valueOf<string[]>("tlsAllowedDnList");
  for (const n of hosts)
    daemons.set(n, await startLibvirtdOnHost(bed.host(n), { tlsAllowedDnList: allowed }));
}

function uri(n: string, via = bed.host(n).name): string {
  return `test+tls://${via}:${daemons.get(n)!.port}/default`;
}

/**
 * Real handshakes between the hosts: virsh from each host to the next (migration identity), the operator
 * workstation to every host, qemu-nbd on each host read by the next with qemu-img (as libvirt-qemu), and
 * TLS-PSK once. Returns a one-line summary for the printed log.
 */
async function handshakes(hosts: string[], opts: { operator: boolean; restart?: boolean }): Promise<string> {
  if (opts.restart !== false) await restartDaemons(hosts);
  const results: string[] = [];
  for (const [i, n] of hosts.entries()) {
    const peer = hosts[(i + 1) % hosts.length];
    const r = await virshOnHost(bed.host(peer), { uri: uri(n) });
    expect({ from: peer, to: n, ok: r.ok, output: r.ok ? "" : r.output }).toEqual({
      from: peer,
      to: n,
      ok: true,
      output: "",
    });
    results.push(`virsh ${peer}->${n} ok`);
    const op = await virshOnHost(ws, { uri: uri(n) });
    expect({ to: n, ok: op.ok }).toEqual({ to: n, ok: opts.operator });
    results.push(`virsh operator->${n} ${op.ok ? "ok" : "refused"}`);
  }
  for (const [i, n] of hosts.entries()) {
    const peer = hosts[(i + 1) % hosts.length];
    const nbd = await startQemuNbdOnHost(bed.host(n), {
      kind: "x509",
      dir: "/etc/pki/qemu",
      runAs: "libvirt-qemu",
    });
    try {
      const q = await qemuImgInfoOnHost(bed.host(peer), {
        serverName: bed.host(n).name,
        port: nbd.port,
        kind: "x509",
        dir: "/etc/pki/qemu",
        runAs: "libvirt-qemu",
      });
      expect({ from: peer, to: n, ok: q.ok, output: q.ok ? "" : q.output }).toEqual({
        from: peer,
        to: n,
        ok: true,
        output: "",
      });
      results.push(`qemu-img ${peer}->${n} ok`);
    } finally {
      await nbd.stop();
    }
  }
  const psk = await startQemuNbdOnHost(bed.host(hosts[0]), { kind: "psk", dir: "/etc/pki/qemu-psk" });
  try {
    const q = await qemuImgInfoOnHost(bed.host(hosts[1]), {
      serverName: bed.host(hosts[0]).name,
      port: psk.port,
      kind: "psk",
      dir: "/etc/pki/qemu-psk",
      username: "qemu",
    });
    expect(q.ok).toBe(true);
    results.push(`psk ${hosts[1]}->${hosts[0]} ok`);
  } finally {
    await psk.stop();
  }
  return results.join(", ");
}

const CREATE_ALL = [
  "fleet-ca create",
  "fleet-ca-crl create",
  "fleet-client-operator create",
  "fleet-client-operator-files create",
  ...NAMES.flatMap((n) => [`fleet-${n} create`, `fleet-${n}-files create`]),
  "fleet-psk create",
].sort();

describe("pulumi up lifecycles of examples/ssh-fleet on three SSH hosts and a workstation", () => {
  it("1. first up of a 3-host fleet + 1 operator client: every host serves libvirt TLS and QEMU NBD TLS", async () => {
    expect(changes(await runUp("1. first up", {}))).toEqual(CREATE_ALL);
    printed.push(`handshakes: ${await handshakes(NAMES, { operator: true })}`);
    // The QEMU group's key cannot manage libvirtd: compute2's QEMU identity is refused by compute1's
    // libvirtd (its DN is in no tls_allowed_dn_list), while the same virsh with compute2's libvirt client
    // identity from a pkipath folder is let in.
    const c2 = bed.host("compute2");
    await c2.execOrThrow(
      "rm -rf /root/as-qemu /root/as-client && mkdir -m 700 /root/as-qemu /root/as-client && " +
        "cp /etc/pki/qemu/ca-cert.pem /root/as-qemu/cacert.pem && " +
        "cp /etc/pki/qemu/client-cert.pem /root/as-qemu/clientcert.pem && " +
        "cp /etc/pki/qemu/client-key.pem /root/as-qemu/clientkey.pem && " +
        "cp /etc/pki/CA/cacert.pem /root/as-client/cacert.pem && " +
        "cp /etc/pki/libvirt/clientcert.pem /etc/pki/libvirt/private/clientkey.pem /root/as-client/",
    );
    try {
      const asClient = await virshOnHost(c2, { uri: `${uri("compute1")}?pkipath=/root/as-client` });
      expect({ ok: asClient.ok, output: asClient.ok ? "" : asClient.output }).toEqual({
        ok: true,
        output: "",
      });
      const asQemu = await virshOnHost(c2, { uri: `${uri("compute1")}?pkipath=/root/as-qemu` });
      expect(asQemu.ok).toBe(false);
      const refused = await daemons.get("compute1")!.waitForLog(/not on the list of allowed clients/);
      expect(refused).toBeDefined();
      printed.push(`QEMU identity of compute2 -> libvirtd on compute1: refused (${refused?.trim()})`);
    } finally {
      await c2.execOrThrow("rm -rf /root/as-qemu /root/as-client");
    }
    expect(await valueOf<string[]>("tlsAllowedDnList")).toEqual([
      // The hosts' libvirt client identities: never their server or QEMU identities.
      ...NAMES.map((n) => `O=${ORG},OU=libvirt-client,CN=${n}.fleet.test`),
      OPERATOR_DN,
    ]);
  });

  it("2. the same program again: zero changes", async () => {
    expect(changes(await runUp("2. same program again", {}))).toEqual([]);
  });

  it("3. a DNS name added to one host: exactly its certificate and install are replaced", async () => {
    await restartDaemons(NAMES);
    const before = await virshOnHost(ws, { uri: uri("compute1", "hv1.fleet.test") });
    expect(before.ok).toBe(false); // not in the SAN yet
    const plan = await runUp("3. add hv1.fleet.test to compute1", {
      extraDns: { compute1: ["hv1.fleet.test"] },
    });
    expect(changes(plan)).toEqual([
      "fleet-compute1 replace [diff: ~dnsNames,notAfter]",
      "fleet-compute1-files replace [diff: ~stdin,triggers]",
    ]);
    printed.push(`handshakes: ${await handshakes(NAMES, { operator: true })}`);
    expect((await virshOnHost(ws, { uri: uri("compute1", "hv1.fleet.test") })).ok).toBe(true);
  });

  it("4. renewal due: the plan names it, new certificates go live while connections keep working", async () => {
    const settings: Settings = { extraDns: { compute1: ["hv1.fleet.test"] } };
    const before = await valueOf<Record<string, { fingerprintSha256: string }>>("fleetHosts");
    // A server started before the renewal keeps serving with the old (still valid) certificate.
    const running: RemoteQemuNbd = await startQemuNbdOnHost(bed.host("compute1"), {
      kind: "x509",
      dir: "/etc/pki/qemu",
      runAs: "libvirt-qemu",
    });
    try {
      // Widening the renewal window puts every leaf inside it: what the passage of time does.
      const plan = await runUp("4. renewal due", { ...settings, renewBeforeHours: 0.9999 });
      expect(changes(plan)).toEqual(
        [
          "fleet-client-operator replace [diff: ~notAfter,renewBeforeHours]",
          "fleet-client-operator-files replace [diff: ~stdin,triggers]",
          ...NAMES.flatMap((n) => [
            `fleet-${n} replace [diff: ~notAfter,renewBeforeHours]`,
            `fleet-${n}-files replace [diff: ~stdin,triggers]`,
          ]),
        ].sort(),
      );
      const q = await qemuImgInfoOnHost(bed.host("compute2"), {
        serverName: "compute1.fleet.test",
        port: running.port,
        kind: "x509",
        dir: "/etc/pki/qemu",
        runAs: "libvirt-qemu",
      });
      expect(q.ok).toBe(true); // renewed client, server still on its old certificate: same CA, no outage
      printed.push("during renewal: qemu-img compute2 (renewed) -> compute1 (old certificate, running) ok");
    } finally {
      await running.stop();
    }
    const after = await valueOf<Record<string, { fingerprintSha256: string }>>("fleetHosts");
    for (const n of NAMES) expect(after[n].fingerprintSha256).not.toBe(before[n].fingerprintSha256);
    const served = await bed
      .host("compute1")
      .exec("openssl x509 -noout -fingerprint -sha256 -in /etc/pki/libvirt/servercert.pem");
    expect(served.stdout.replace(/[^0-9A-F]/gi, "").toLowerCase()).toContain(
      after.compute1.fingerprintSha256.replace(/:/g, "").toLowerCase().slice(-32),
    );
    printed.push(`handshakes: ${await handshakes(NAMES, { operator: true })}`);
    // Back to the normal window: no certificate changes, so nothing is announced and nothing happens (a
    // policy-only edit is no in-place update, whose preview would leave every certificate unknown and show
    // every install replaced).
    expect(changes(await runUp("4b. normal renewal window again", settings))).toEqual([]);
  });

  it("5. revoking the operator: the CRL is installed everywhere and that client is refused", async () => {
    const plan = await runUp("5. revoke operator", {
      extraDns: { compute1: ["hv1.fleet.test"] },
      revoked: ["operator"],
    });
    expect(changes(plan)).toEqual(
      [
        // The CRL is re-signed with the new entry, and a fresh nextUpdate.
        "fleet-ca-crl update [diff: ~nextUpdate,revoked]",
        // A revoked certificate is never renewed (a new serial would not be in the CRL).
        "fleet-client-operator update [diff: +autoRenew,revoked]",
        "fleet-client-operator-files replace [diff: ~stdin,triggers]",
        ...NAMES.map((n) => `fleet-${n}-files replace [diff: ~stdin,triggers]`),
      ].sort(),
    );
    for (const n of NAMES) {
      const crl = await bed.host(n).exec("openssl crl -in /etc/pki/CA/cacrl.pem -noout -text");
      expect(crl.stdout).toContain("Key Compromise");
    }
    printed.push(`handshakes: ${await handshakes(NAMES, { operator: false })}`);
    const line = await daemons.get("compute1")!.waitForLog(/revoked/i);
    expect(line).toMatch(/The certificate has been revoked/);
    printed.push(`libvirtd on compute1: ${line}`);
  });

  it("5b. pulumi refresh, then the same program: zero changes", async () => {
    const settings: Settings = { extraDns: { compute1: ["hv1.fleet.test"] }, revoked: ["operator"] };
    const r = await refresh(provider, state);
    printed.push(`# 5b. pulumi refresh\n${formatPlan(r.plan, { details: true })}`);
    state = r.state;
    expect(changes(await runUp("5b. up after refresh", settings))).toEqual([]);
  });

  it("5c. the checkout moves: the same program changes nothing, and later deletes still find the handlers", async () => {
    const settings: Settings = { extraDns: { compute1: ["hv1.fleet.test"] }, revoked: ["operator"] };
    await provider.stop();
    const moved = join(parent, "checkout-b");
    renameSync(checkout, moved);
    checkout = moved;
    provider = await startProviderHost({ cwd: programDir() });
    await provider.configure();
    expect(changes(await runUp("5c. same program from the moved checkout", settings))).toEqual([]);
  });

  it("6. CA rotation in three ups, with handshakes between every step", async () => {
    const base: Settings = { extraDns: { compute1: ["hv1.fleet.test"] }, revoked: ["operator"] };
    const both = [
      { id: "ca", commonName: ORG }, // the first CA, as created in 1. (CN = organization)
      { id: "ca-2027", commonName: "Fleet CA 2027" },
    ];
    // 6a. The new CA is trusted next to the old one; nothing is re-issued.
    const a = await runUp("6a. rotation: trust the new CA too", { ...base, cas: both, issuingCa: "ca" });
    expect(changes(a)).toEqual(
      [
        "fleet-ca-2027 create",
        "fleet-ca-2027-crl create",
        "fleet-client-operator-files replace [diff: ~stdin,triggers]",
        ...NAMES.map((n) => `fleet-${n}-files replace [diff: ~stdin,triggers]`),
      ].sort(),
    );
    expect(
      (await bed.host("compute2").readFile("/etc/pki/CA/cacert.pem")).match(/BEGIN CERTIFICATE/g),
    ).toHaveLength(2);
    printed.push(`handshakes: ${await handshakes(NAMES, { operator: false })}`);

    // 6b. Leaves are re-issued by the new CA. The daemons started in 6a (old leaves, both CAs) keep
    // accepting peers that already have new leaves: no refusal at any point.
    const b = await runUp("6b. rotation: issue with the new CA", {
      ...base,
      cas: both,
      issuingCa: "ca-2027",
    });
    expect(changes(b)).toEqual(
      NAMES.flatMap((n) => [
        `fleet-${n} replace [diff: ~ca,issuer,notAfter]`,
        `fleet-${n}-files replace [diff: ~stdin,triggers]`,
      ]).sort(),
    );
    printed.push(
      `handshakes with the 6a daemons still running: ${await handshakes(NAMES, { operator: false, restart: false })}`,
    );
    printed.push(`handshakes after restart: ${await handshakes(NAMES, { operator: false })}`);
    const issuer = await bed
      .host("compute3")
      .exec("openssl x509 -noout -issuer -in /etc/pki/libvirt/servercert.pem");
    expect(issuer.stdout).toContain("Fleet CA 2027");

    // 6c. The old CA is dropped.
    const c = await runUp("6c. rotation: drop the old CA", { ...base, cas: [both[1]], issuingCa: "ca-2027" });
    expect(changes(c)).toEqual(
      [
        "fleet-ca delete",
        "fleet-ca-crl delete",
        "fleet-client-operator-files replace [diff: ~stdin,triggers]",
        ...NAMES.map((n) => `fleet-${n}-files replace [diff: ~stdin,triggers]`),
      ].sort(),
    );
    expect(
      (await bed.host("compute2").readFile("/etc/pki/CA/cacert.pem")).match(/BEGIN CERTIFICATE/g),
    ).toHaveLength(1);
    printed.push(`handshakes: ${await handshakes(NAMES, { operator: false })}`);
  });

  it("7. removing a host deletes its installs, the rest is untouched", async () => {
    const base: Settings = {
      extraDns: { compute1: ["hv1.fleet.test"] },
      revoked: ["operator"],
      cas: [{ id: "ca-2027", commonName: "Fleet CA 2027" }],
      issuingCa: "ca-2027",
    };
    const kept = await bed.host("compute1").readFile("/etc/pki/libvirt/servercert.pem");
    const plan = await runUp("7. remove compute3", { ...base, hosts: ["compute1", "compute2"] });
    expect(changes(plan)).toEqual(["fleet-compute3 delete", "fleet-compute3-files delete"]);
    const c3 = bed.host("compute3");
    for (const f of [
      "/etc/pki/CA/cacert.pem",
      "/etc/pki/libvirt/private/serverkey.pem",
      "/etc/pki/qemu/server-key.pem",
      "/etc/pki/qemu-psk/keys.psk",
    ]) {
      expect({ f, exists: await c3.exists(f) }).toEqual({ f, exists: false });
    }
    expect(await bed.host("compute1").readFile("/etc/pki/libvirt/servercert.pem")).toBe(kept);
    printed.push(`handshakes: ${await handshakes(["compute1", "compute2"], { operator: false })}`);
  });
});
