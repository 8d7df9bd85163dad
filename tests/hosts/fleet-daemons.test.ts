/**
 * The fleet's defaults on the test bed: a `VirtualizationPki` whose hosts are reached over SSH manages each
 * host's libvirtd.conf/qemu.conf, turns the TLS listener on, restarts or `server-update-tls`es a REAL
 * libvirtd (through the host's `/etc/init.d/libvirtd`) and proves what it serves, with no option set for it.
 * Its hosts admit each other by one DN prefix entry (`peerDnList: "prefix"`, opt-in): adding a host touches no
 * other host, and a retired host is cut off by the CRL, re-read without a restart. Judges: libvirtd, virsh (the
 * `test` driver over TLS) and openssl on the hosts. One host checks what it serves at its name (a host's
 * `verifyServed.address`), one not at all (`verifyServed: false`).
 */
import { X509Certificate } from "crypto";
import { readFileSync } from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
// The built package: the dynamic-provider host loads the resources' handlers from bin/ (provider/providers.ts).
import { FleetRetiredHost, VirtualizationPki } from "../../bin/components";
import { requireBuild } from "../support/checkout";
import { EngineState, PlanStep, formatPlan, up } from "../support/engine";
import { ProviderHost, revealSecrets, startProviderHost } from "../support/pulumiHost";
import { freePort, removeDir, tempDir } from "../support/programs";
import {
  LibvirtdService,
  TestBed,
  TestHost,
  installLibvirtdService,
  startTestBed,
  virshOnHost,
} from "../support/testbed";

const ORG = "Fleet Daemons";
const PEERS = `O=${ORG},OU=libvirt-client,CN=*`;
const OPERATOR_DN = `O=${ORG},OU=operators,CN=operator`;
const STOCK_LIBVIRTD = readFileSync(
  path.join(__dirname, "..", "fixtures", "libvirt", "libvirtd.conf"),
  "utf8",
);
const STOCK_QEMU = readFileSync(path.join(__dirname, "..", "fixtures", "libvirt", "qemu.conf"), "utf8");
const NAMES = ["c1", "c2", "c3"] as const;

let bed: TestBed;
let op: TestHost;
let provider: ProviderHost;
let port: number;
let logDir: string;
const services: Record<string, LibvirtdService> = {};
const printed: string[] = [];
let state: EngineState = {};
/** c3's record as retired (step 3), given again by later programs. */
let retired: FleetRetiredHost | undefined;

beforeAll(async () => {
  requireBuild();
  bed = await startTestBed({
    hosts: [
      ...NAMES.map((n, i) => ({
        name: `${n}.daemons.test`,
        address: `127.0.0.${81 + i}`,
        aliases: [n],
        libvirt: true,
      })),
      { name: "op.daemons.test", address: "127.0.0.84", aliases: ["op"] },
    ],
  });
  op = bed.host("op");
  port = await freePort("127.0.0.81");
  logDir = await tempDir("virt-pki-fleet-daemons-");
  for (const n of NAMES) {
    const h = bed.host(n);
    // The site's own settings before TLS: where to listen, TLS off, a log the test reads.
    await h.writeFile(
      "/etc/libvirt/libvirtd.conf",
      STOCK_LIBVIRTD +
        [
          `listen_addr = "${h.address}"`,
          `tls_port = "${port}"`,
          "listen_tls = 0",
          `log_outputs = "1:file:${logDir}/${n}.log"`,
          'log_filters = "1:rpc.nettls 3:*"',
          "",
        ].join("\n"),
    );
    // QEMU as root and without cgroups on the bed (no guests run here; the driver still reads the file).
    await h.writeFile(
      "/etc/libvirt/qemu.conf",
      STOCK_QEMU + 'user = "root"\ngroup = "root"\ncgroup_controllers = [ ]\n',
      { mode: "0600" },
    );
    services[n] = await installLibvirtdService(h);
    await services[n].start();
  }
  provider = await startProviderHost({ cwd: path.join(__dirname, "..", "..") });
  await provider.configure();
}, 120_000);

afterAll(async () => {
  for (const s of Object.values(services)) await s.stop();
  await provider?.stop();
  await bed?.stop();
  if (logDir) await removeDir(logDir);
  if (printed.length) console.log(printed.join("\n\n"));
});

interface Seen {
  retirements?: Record<string, FleetRetiredHost>;
  served?: Record<string, string | undefined>;
  reloads?: Record<string, string[]>;
}
let seen: Seen = {};

/** The fleet with no daemon option set: hosts, an operator, `peerDnList: "prefix"` and the bed's port. */
function program(hosts: readonly string[], retiredHosts?: FleetRetiredHost[]): () => void {
  return () => {
    seen = {};
    const fleet = new VirtualizationPki("fleet", {
      organization: ORG,
      ca: { id: "ca", subject: { organization: ORG, commonName: "Fleet Daemons CA" } },
      hosts: hosts.map((n) => {
        const h = bed.host(n);
        return {
          name: n,
          fqdn: h.name,
          ipAddresses: [h.address],
          connection: h.connection,
          hostKey: h.hostKey,
          // c2 checks what it serves at its name (c2.daemons.test) rather than its connection's address; c3 does not check.
          ...(n === "c2" ? { verifyServed: { address: h.name } } : {}),
          ...(n === "c3" ? { verifyServed: false } : {}),
        };
      }),
      clients: [
        {
          name: "operator",
          subject: { organization: ORG, organizationalUnit: "operators", commonName: "operator" },
          install: { connection: op.connection, hostKey: op.hostKey },
        },
      ],
      retiredHosts,
      // Besides the bed's port, the one option set: peers by one DN prefix (the default is "exact").
      peerDnList: "prefix",
      verifyServed: { port },
    });
    fleet.retirements.apply((r) => (seen.retirements = r));
    pulumi
      .all(Object.fromEntries(hosts.map((n) => [n, fleet.installs[n].servedFingerprint])))
      .apply((s) => (seen.served = s));
    pulumi
      .all(Object.fromEntries(hosts.map((n) => [n, fleet.installs[n].reloads])))
      .apply((r) => (seen.reloads = r));
  };
}

async function runUp(
  title: string,
  hosts: readonly string[],
  retired?: FleetRetiredHost[],
): Promise<string[]> {
  const r = await up(program(hosts, retired), provider, state);
  state = r.state;
  printed.push(`# ${title}\n${formatPlan(r.plan)}\nreloads: ${JSON.stringify(seen.reloads)}`);
  return changes(r.plan);
}

function changes(plan: PlanStep[]): string[] {
  return plan
    .filter((s) => s.op !== "same")
    .map((s) => `${s.name} ${s.op}`)
    .sort();
}

const uri = (n: string, query = "") => `test+tls://${bed.host(n).name}:${port}/default${query}`;

async function pids(): Promise<Record<string, number | undefined>> {
  return Object.fromEntries(await Promise.all(NAMES.map(async (n) => [n, await services[n].pid()] as const)));
}

describe("a fleet's defaults on hosts with a real libvirtd", () => {
  it("first up: each host's settings, the TLS listener, a restart, the served certificate proven; peers get in, QEMU identities do not", async () => {
    const before = await pids();
    const plan = await runUp("first up of c1 and c2", ["c1", "c2"]);
    expect(plan).toEqual(
      [
        "fleet-ca create",
        "fleet-ca-crl create",
        "fleet-client-operator create",
        "fleet-client-operator-files create",
        "fleet-c1 create",
        "fleet-c1-files create",
        "fleet-c2 create",
        "fleet-c2-files create",
      ].sort(),
    );
    const after = await pids();
    for (const n of ["c1", "c2"]) {
      const h = bed.host(n);
      const conf = await h.readFile("/etc/libvirt/libvirtd.conf");
      expect(conf).toContain(
        [
          'crl_file = "/etc/pki/CA/cacrl.pem"',
          `tls_allowed_dn_list = ["${PEERS}", "${OPERATOR_DN}"]`,
          "tls_no_verify_certificate = 0",
          "listen_tls = 1",
          "# END pulumi-virt-pki",
        ].join("\n"),
      );
      expect(await h.readFile("/etc/libvirt/qemu.conf")).toContain(
        'default_tls_x509_cert_dir = "/etc/pki/qemu"',
      );
      // The daemon ran without TLS: restarted once (new settings and qemu.conf), then serving the host's cert.
      expect({ n, reloads: seen.reloads![n] }).toEqual({ n, reloads: ["libvirtd restart"] });
      expect(after[n]).not.toBe(before[n]);
      const served = new X509Certificate(await h.readFile("/etc/pki/libvirt/servercert.pem")).fingerprint256;
      expect({ n, served: seen.served![n] }).toEqual({ n, served });
      // Where the host looked: its connection's address, or c2's own verifyServed.address.
      const report = revealSecrets(
        Object.values(state).find((e) => e.name === `fleet-${n}-files`)!.outputs.stdout,
      ) as string;
      const at = n === "c2" ? h.name : h.address;
      expect(report).toMatch(new RegExp(`^virt-pki-served ${at.replace(/\./g, "\\.")}:${port} `, "m"));
    }
    printed.push(
      `c1's block:\n${(await bed.host("c1").readFile("/etc/libvirt/libvirtd.conf")).split("# END")[0]}`,
    );
    // c1's own libvirt client identity (migration) gets into c2; the operator gets into both.
    const peer = await virshOnHost(bed.host("c1"), { uri: uri("c2") });
    expect({ ok: peer.ok, output: peer.ok ? "" : peer.output }).toEqual({ ok: true, output: "" });
    for (const n of ["c1", "c2"]) {
      const r = await virshOnHost(op, { uri: uri(n) });
      expect({ n, ok: r.ok, output: r.ok ? "" : r.output }).toEqual({ n, ok: true, output: "" });
    }
    // c1's QEMU identity (same CA, clientAuth, OU=qemu) does not match the prefix: refused.
    const c1 = bed.host("c1");
    await c1.execOrThrow(
      "rm -rf /root/as-qemu && mkdir -m 700 /root/as-qemu && cp /etc/pki/qemu/ca-cert.pem /root/as-qemu/cacert.pem && " +
        "cp /etc/pki/qemu/client-cert.pem /root/as-qemu/clientcert.pem && cp /etc/pki/qemu/client-key.pem /root/as-qemu/clientkey.pem",
    );
    const asQemu = await virshOnHost(c1, { uri: uri("c2", "?pkipath=/root/as-qemu") });
    expect(asQemu.ok).toBe(false);
    expect(readFileSync(path.join(logDir, "c2.log"), "utf8")).toMatch(
      /Client's Distinguished Name is not on the list of allowed clients/,
    );
  }, 240_000);

  it("adding a host creates only its resources: no other host's files or daemon change, and the new host is admitted", async () => {
    const before = await pids();
    const confs = await Promise.all(
      ["c1", "c2"].map((n) => bed.host(n).readFile("/etc/libvirt/libvirtd.conf")),
    );
    const plan = await runUp("c3 joins", ["c1", "c2", "c3"]);
    expect(plan).toEqual(["fleet-c3 create", "fleet-c3-files create"]);
    const after = await pids();
    expect({ c1: after.c1, c2: after.c2 }).toEqual({ c1: before.c1, c2: before.c2 });
    expect(
      await Promise.all(["c1", "c2"].map((n) => bed.host(n).readFile("/etc/libvirt/libvirtd.conf"))),
    ).toEqual(confs);
    expect(seen.reloads!.c3).toEqual(["libvirtd restart"]);
    expect(seen.served).toEqual({
      c1: expect.stringMatching(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/),
      c2: expect.stringMatching(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/),
      c3: undefined, // verifyServed: false
    });
    // c1's daemon, never restarted, admits c3's client identity through the prefix; and the other way.
    for (const [from, to] of [
      ["c3", "c1"],
      ["c1", "c3"],
    ]) {
      const r = await virshOnHost(bed.host(from), { uri: uri(to) });
      expect({ from, to, ok: r.ok, output: r.ok ? "" : r.output }).toEqual({
        from,
        to,
        ok: true,
        output: "",
      });
    }
  }, 240_000);

  it("retiring a host: its certificates go into the CRL, which the others re-read without a restart, and it is refused", async () => {
    const record = seen.retirements!.c3;
    expect(record.certificates).toHaveLength(3); // server, libvirt client, QEMU
    const c3 = bed.host("c3");
    // What a decommissioned host's disk still holds: its libvirt client identity.
    await c3.execOrThrow(
      "rm -rf /root/kept && mkdir -m 700 /root/kept && cp /etc/pki/CA/cacert.pem /root/kept/cacert.pem && " +
        "cp /etc/pki/libvirt/clientcert.pem /etc/pki/libvirt/private/clientkey.pem /root/kept/",
    );
    const before = await pids();
    retired = { ...record, revokedAt: "2026-11-25T00:00:00Z" };
    const plan = await runUp("c3 retired", ["c1", "c2"], [retired]);
    expect(plan).toEqual(
      [
        "fleet-c3 delete",
        "fleet-c3-files delete",
        "fleet-ca-crl update",
        "fleet-c1-files replace",
        "fleet-c2-files replace",
        "fleet-client-operator-files replace",
      ].sort(),
    );
    const after = await pids();
    expect({ c1: after.c1, c2: after.c2 }).toEqual({ c1: before.c1, c2: before.c2 });
    for (const n of ["c1", "c2"]) {
      expect({ n, reloads: seen.reloads![n] }).toEqual({ n, reloads: ["libvirtd update-tls"] });
      const crl = (await bed.host(n).execOrThrow("openssl crl -in /etc/pki/CA/cacrl.pem -noout -text"))
        .stdout;
      for (const c of record.certificates) {
        expect({
          n,
          serial: c.serialNumber,
          listed: crl.toUpperCase().includes(c.serialNumber.toUpperCase()),
        }).toEqual({
          n,
          serial: c.serialNumber,
          listed: true,
        });
      }
      expect(crl).toContain("Cessation Of Operation");
    }
    const refused = await virshOnHost(c3, { uri: uri("c1", "?pkipath=/root/kept") });
    expect(refused.ok).toBe(false);
    expect(readFileSync(path.join(logDir, "c1.log"), "utf8")).toMatch(/revoked/i);
    // The remaining peers still get in.
    const peer = await virshOnHost(bed.host("c2"), { uri: uri("c1") });
    expect({ ok: peer.ok, output: peer.ok ? "" : peer.output }).toEqual({ ok: true, output: "" });
  }, 240_000);

  it("the same program again changes nothing and reloads nothing", async () => {
    const before = await pids();
    const plan = await runUp("again", ["c1", "c2"], [retired!]);
    expect(plan).toEqual([]);
    expect(await pids()).toEqual(before);
  }, 120_000);
});
