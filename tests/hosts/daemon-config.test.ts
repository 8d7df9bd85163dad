/**
 * The host side end to end on the test bed: `daemonConfig` sets libvirt's TLS settings in the host's own
 * `/etc/libvirt/libvirtd.conf` and `qemu.conf` (Debian's files, every other line kept), `reload: "auto"`
 * restarts a REAL libvirtd after its settings changed (through the host's `/etc/init.d/libvirtd`, as on a
 * host without systemd) and re-reads renewed files with `virt-admin server-update-tls` without dropping an
 * open `virsh` connection, and the host proves which certificate it serves. Judges: libvirtd, virsh (the
 * `test` driver over TLS), virt-admin and openssl on the hosts.
 */
import { X509Certificate } from "crypto";
import { readFileSync } from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { HostCredentialInstall, LayoutArgs } from "../../components";
import {
  IssuedCertificate,
  createCertificateAuthority,
  createCrl,
  issueCertificate,
} from "../../provider/pki";
import { EngineState, formatPlan, up } from "../support/engine";
import { NO_DYNAMIC } from "../support/pulumiHost";
import { freePort, removeDir, tempDir } from "../support/programs";
import { probeVncTls } from "../support/vnc";
import {
  LibvirtdService,
  TestBed,
  TestHost,
  installLibvirtdService,
  startTestBed,
  virshOnHost,
} from "../support/testbed";

const ORG = "Libvirt Project";
const FIXTURES = path.join(__dirname, "..", "fixtures", "libvirt");
const STOCK_LIBVIRTD = readFileSync(path.join(FIXTURES, "libvirtd.conf"), "utf8");
const STOCK_QEMU = readFileSync(path.join(FIXTURES, "qemu.conf"), "utf8");
const MARK = "#pulumi-virt-pki# ";
const QEMU_SITE = [
  "",
  'user = "root"',
  'group = "root"',
  'stdio_handler = "file"',
  "cgroup_controllers = [ ]",
  'vnc_listen = "127.0.0.45"',
  "",
].join("\n");
/** A guest without disks or devices (TCG), with a VNC (or SPICE) display on the host's address. */
const GUEST_XML = (vncPort: number, name = "vnc0", graphics = "vnc") => `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    ${
      graphics === "vnc"
        ? `<graphics type='vnc' port='${vncPort}' autoport='no' listen='127.0.0.45'/>`
        : `<graphics type='spice' autoport='yes' listen='127.0.0.45'/>`
    }
    <video><model type='none'/></video>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;

let bed: TestBed;
let hv: TestHost;
let op: TestHost;
let port: number;
let service: LibvirtdService;
let logDir: string;
let ca: { certPem: string; keyPem: string };
let crlPem: string;
const certs: Record<string, IssuedCertificate> = {};
const printed: string[] = [];
/** The host's libvirtd.conf before the first install: Debian's file and the site's own lines. */
let original: string;

function dn(cn: string): string {
  return `C=GB,ST=London,L=London,O=${ORG},CN=${cn}`;
}

beforeAll(async () => {
  bed = await startTestBed({
    hosts: [
      { name: "hv1.virt.test", address: "127.0.0.45", aliases: ["hv1"], libvirt: true },
      { name: "op.virt.test", address: "127.0.0.46", aliases: ["op"] },
    ],
  });
  [hv, op] = ["hv1", "op"].map((n) => bed.host(n));
  port = await freePort(hv.address);
  logDir = await tempDir("virt-pki-daemon-log-");
  const c = await createCertificateAuthority({
    subject: { organization: ORG, commonName: ORG },
    keySpec: "ecdsa-p256",
  });
  ca = { certPem: c.certPem, keyPem: c.keyPem };
  const server = () =>
    issueCertificate({
      issuer: ca,
      profile: "server+client",
      subject: { organization: ORG, commonName: hv.name },
      dnsNames: [hv.name, "hv1"],
      ipAddresses: [hv.address],
      keySpec: "ecdsa-p256",
    });
  const client = (cn: string) =>
    issueCertificate({
      issuer: ca,
      profile: "client",
      subject: { country: "GB", state: "London", locality: "London", organization: ORG, commonName: cn },
      keySpec: "ecdsa-p256",
    });
  certs.hv = await server();
  certs.renewed = await server();
  certs.operator = await client("operator");
  certs.auditor = await client("auditor");
  crlPem = createCrl({ issuer: ca, revoked: [] }).crlPem;

  // The site's own settings, as an administrator wrote them before TLS: where to listen, TLS off, and a
  // stale DN list and key path that the managed settings must override.
  original =
    STOCK_LIBVIRTD +
    [
      "",
      "# site settings",
      `listen_addr = "${hv.address}"`,
      `tls_port = "${port}"`,
      "listen_tls = 0",
      // A list over two lines (libvirt 9.0 reads no comment inside a list).
      'tls_allowed_dn_list = ["C=GB,O=Libvirt Project,CN=*",',
      '    "CN=old"]',
      '  key_file = "/etc/pki/libvirt/private/old.pem"  # moved',
      // Another key first on the line: left active, yet libvirt takes the block's list (first statement wins).
      'log_level = 3; tls_allowed_dn_list = ["*"]',
      `log_outputs = "1:file:${logDir}/libvirtd.log"`,
      'log_filters = "1:rpc.nettls 3:*"',
      "",
    ].join("\n");
  await hv.writeFile("/etc/libvirt/libvirtd.conf", original);
  // The site's QEMU settings for this bed (not managed): QEMU as root (no /dev/kvm to share), its
  // output to files (no virtlogd), no cgroups (none left behind on the machine), VNC on the host's address.
  await hv.writeFile("/etc/libvirt/qemu.conf", STOCK_QEMU + QEMU_SITE, { mode: "0600" });
  service = await installLibvirtdService(hv);
  await service.start(); // without TLS: listen_tls = 0
}, 90_000);

afterAll(async () => {
  await service?.stop();
  await bed?.stop();
  if (logDir) await removeDir(logDir);
  if (printed.length) console.log(printed.join("\n\n"));
});

function identity(name: string): { certPem: string; keyPem: pulumi.Output<string> } {
  return { certPem: certs[name].certPem, keyPem: pulumi.secret(certs[name].keyPem!) };
}

const installs: Record<string, HostCredentialInstall> = {};

function program(server: string, dns: string[], spice = false): () => void {
  const trust = { caCertPem: ca.certPem, crlPem };
  const layouts: LayoutArgs[] = [
    { kind: "libvirt-server", ...trust, ...identity(server) },
    { kind: "qemu", ...trust, ...identity(server) },
  ];
  // SPICE over TLS: /etc/pki/libvirt-spice and spice_tls = 1.
  if (spice) layouts.push({ kind: "qemu-server", service: "spice", ...trust, ...identity(server) });
  return () => {
    installs.hv = new HostCredentialInstall("hv1", {
      checkDrift: false, // no HostProbe: this program has no dynamic resources
      connection: hv.connection,
      hostLabel: hv.name,
      layouts,
      tlsAllowedDnList: dns,
      daemonConfig: { listenTls: true, qemuTls: spice ? ["vnc", "spice"] : ["vnc"] },
      reload: "auto",
      verifyServed: { address: hv.address, port },
    });
    installs.op = new HostCredentialInstall("op", {
      checkDrift: false, // no HostProbe: this program has no dynamic resources
      connection: op.connection,
      hostLabel: op.name,
      layouts: [{ kind: "libvirt-client", ...trust, ...identity("operator") }],
    });
  };
}

function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/** The file without the managed block and with the commented statements restored: what it was. */
function unmanaged(text: string): string {
  return text
    .replace(/^# BEGIN pulumi-virt-pki[^\n]*\n[\s\S]*?^# END pulumi-virt-pki\n/m, "")
    .split("\n")
    .map((l) => (l.startsWith(MARK) ? l.slice(MARK.length) : l))
    .join("\n");
}

const uri = () => `test+tls://${hv.name}:${port}/default`;
let state: EngineState = {};

describe("libvirt's settings, reload and proof on a real libvirtd", () => {
  it("first up: the settings land in the host's own files, libvirtd restarts with TLS and serves the certificate", async () => {
    const pidBefore = await service.pid();
    const r = await up(program("hv", [dn("operator")]), NO_DYNAMIC, state);
    state = r.state;
    printed.push(`# first up\n${formatPlan(r.plan)}`);

    const conf = await hv.readFile("/etc/libvirt/libvirtd.conf");
    printed.push(
      `# libvirtd.conf, the lines that differ\n${conf
        .split("\n")
        .filter((l) => !original.includes(`${l}\n`))
        .join("\n")}`,
    );
    // Every byte but our keys' statements stays; those are commented out with the marker, lists whole.
    expect(unmanaged(conf)).toBe(original);
    expect(conf.split("\n").filter((l) => l.startsWith(MARK))).toEqual([
      `${MARK}listen_tls = 0`,
      `${MARK}tls_allowed_dn_list = ["C=GB,O=Libvirt Project,CN=*",`,
      `${MARK}    "CN=old"]`,
      `${MARK}  key_file = "/etc/pki/libvirt/private/old.pem"  # moved`,
    ]);
    expect(conf).toContain(
      [
        'ca_file = "/etc/pki/CA/cacert.pem"',
        'cert_file = "/etc/pki/libvirt/servercert.pem"',
        'key_file = "/etc/pki/libvirt/private/serverkey.pem"',
        'crl_file = "/etc/pki/CA/cacrl.pem"',
        `tls_allowed_dn_list = ["${dn("operator")}"]`,
        "tls_no_verify_certificate = 0",
        "listen_tls = 1",
        "# END pulumi-virt-pki",
      ].join("\n"),
    );
    expect(await hv.readFile("/etc/libvirt/libvirtd.conf.virt-pki-prev")).toBe(original);
    const qemuConf = await hv.readFile("/etc/libvirt/qemu.conf");
    expect(unmanaged(qemuConf)).toBe(STOCK_QEMU + QEMU_SITE);
    expect(qemuConf).toContain(
      'default_tls_x509_cert_dir = "/etc/pki/qemu"\ndefault_tls_x509_verify = 1\nvnc_tls = 1\n# END pulumi-virt-pki',
    );
    // qemu.conf keeps its mode (0600 here), libvirtd.conf its 0644.
    expect(await hv.stat("/etc/libvirt/qemu.conf")).toEqual({ mode: "0600", owner: "root", group: "root" });

    // The daemon was running without TLS: the new settings need a restart, and it now serves the certificate.
    expect(await valueOf(installs.hv.reloads)).toEqual(["libvirtd restart"]);
    expect(await service.pid()).not.toBe(pidBefore);
    expect(await valueOf(installs.hv.servedFingerprint)).toBe(
      new X509Certificate(certs.hv.certPem).fingerprint256,
    );

    // libvirtd enforces the DN list it read: the operator gets in, the auditor (same CA) does not.
    const ok = await virshOnHost(op, { uri: uri() });
    expect({ ok: ok.ok, output: ok.output }).toEqual({ ok: true, output: expect.stringContaining("Id") });
    await op.writeFile("/etc/pki/libvirt/clientcert.pem", certs.auditor.certPem);
    await op.writeFile("/etc/pki/libvirt/private/clientkey.pem", certs.auditor.keyPem!, { mode: "0600" });
    const refused = await virshOnHost(op, { uri: uri() });
    expect(refused.ok).toBe(false);
    expect(refused.output).toMatch(/Unable to read TLS confirmation/);
    // The daemon's own log (its log_outputs, in the machine's /tmp) names the reason.
    expect(readFileSync(path.join(logDir, "libvirtd.log"), "utf8")).toMatch(
      /Client's Distinguished Name is not on the list of allowed clients/,
    );
  }, 120_000);

  it("the same program again changes nothing on the host and reloads nothing", async () => {
    const pid = await service.pid();
    const conf = await hv.readFile("/etc/libvirt/libvirtd.conf");
    const r = await up(program("hv", [dn("operator")]), NO_DYNAMIC, state);
    state = r.state;
    // The op install is the same too: the auditor's files written by hand are drift (not seen here).
    expect(r.plan.filter((s) => s.op !== "same").map((s) => s.name)).toEqual([]);
    expect(await hv.readFile("/etc/libvirt/libvirtd.conf")).toBe(conf);
    expect(await service.pid()).toBe(pid);
  }, 60_000);

  it("a renewal re-reads the files with server-update-tls: an open virsh connection stays while the served certificate changes", async () => {
    // The op host's own client files again (the previous test replaced them by hand).
    await op.writeFile("/etc/pki/libvirt/clientcert.pem", certs.operator.certPem);
    await op.writeFile("/etc/pki/libvirt/private/clientkey.pem", certs.operator.keyPem!, { mode: "0600" });
    // One virsh, one connection, reading commands from a FIFO that a sleeping writer keeps open.
    await op.execOrThrow(
      [
        "rm -f /root/vcmd /root/vout && mkfifo /root/vcmd",
        "(sleep 120 >/root/vcmd 2>/dev/null </dev/null &)",
        `(LC_ALL=C setsid virsh -c '${uri()}' </root/vcmd >/root/vout 2>&1 &)`,
        "echo list >/root/vcmd",
      ].join("\n"),
    );
    const clients = async (): Promise<string[]> => {
      const out = (await hv.execOrThrow("LC_ALL=C virt-admin srv-clients-list libvirtd")).stdout;
      return out
        .split("\n")
        .filter((l) => /\btls\b/.test(l))
        .map((l) => l.trim().split(/\s+/)[0]);
    };
    let before: string[] = [];
    for (let i = 0; i < 50 && before.length === 0; i++) {
      before = await clients();
      if (before.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(before).toHaveLength(1);
    const pid = await service.pid();

    const r = await up(program("renewed", [dn("operator")]), NO_DYNAMIC, state);
    state = r.state;
    printed.push(`# renewal\n${formatPlan(r.plan)}`);
    expect(await valueOf(installs.hv.reloads)).toEqual(["libvirtd update-tls"]);
    expect(await service.pid()).toBe(pid);
    expect(await valueOf(installs.hv.servedFingerprint)).toBe(
      new X509Certificate(certs.renewed.certPem).fingerprint256,
    );

    await op.execOrThrow("echo list >/root/vcmd && sleep 1");
    expect(await clients()).toEqual(before);
    const out = await op.readFile("/root/vout");
    expect(out.match(/Id\s+Name\s+State/g)).toHaveLength(2);
    expect(out).not.toMatch(/error/i);
    await op.exec("pkill -x virsh; pkill -x sleep; rm -f /root/vcmd /root/vout");
  }, 120_000);

  it("a new DN list restarts the daemon, which then admits the new client", async () => {
    await op.writeFile("/etc/pki/libvirt/clientcert.pem", certs.auditor.certPem);
    await op.writeFile("/etc/pki/libvirt/private/clientkey.pem", certs.auditor.keyPem!, { mode: "0600" });
    expect((await virshOnHost(op, { uri: uri() })).ok).toBe(false);
    const r = await up(program("renewed", [dn("operator"), dn("auditor")]), NO_DYNAMIC, state);
    state = r.state;
    printed.push(`# DN list\n${formatPlan(r.plan)}`);
    expect(await valueOf(installs.hv.reloads)).toEqual(["libvirtd restart"]);
    expect((await virshOnHost(op, { uri: uri() })).ok).toBe(true);
  }, 120_000);

  it("a renewal reloads the VNC credentials of a running QEMU guest (display-reload), which then serves the new certificate; a SPICE guest is listed", async () => {
    // SPICE over TLS first: a new qemu.conf restarts libvirtd (the guests start after it).
    const withSpice = await up(program("renewed", [dn("operator"), dn("auditor")], true), NO_DYNAMIC, state);
    state = withSpice.state;
    expect(await valueOf(installs.hv.reloads)).toEqual(["libvirtd restart"]);
    const vncPort = await freePort(hv.address);
    await hv.writeFile("/root/vnc0.xml", GUEST_XML(vncPort));
    await hv.writeFile("/root/spice0.xml", GUEST_XML(0, "spice0", "spice"));
    await hv.execOrThrow("LC_ALL=C virsh -c qemu:///system create /root/vnc0.xml", { timeoutMs: 90_000 });
    try {
      await hv.execOrThrow("LC_ALL=C virsh -c qemu:///system create /root/spice0.xml", { timeoutMs: 90_000 });
      expect((await hv.execOrThrow("LC_ALL=C virsh -c qemu:///system dumpxml spice0")).stdout).toMatch(
        /<graphics type='spice' port='\d+' tlsPort='\d+'/,
      );
      const client = { cert: certs.operator.certPem, key: certs.operator.keyPem!, ca: ca.certPem };
      const before = await probeVncTls({ host: hv.address, port: vncPort, ...client });
      expect(before.certificate?.fingerprintSha256).toBe(
        new X509Certificate(certs.renewed.certPem).fingerprint256,
      );

      const r = await up(program("hv", [dn("operator"), dn("auditor")], true), NO_DYNAMIC, state);
      state = r.state;
      printed.push(`# renewal with running guests\n${formatPlan(r.plan)}`);
      expect(await valueOf(installs.hv.reloads)).toEqual([
        "libvirtd update-tls",
        "guest vnc0 display-reload",
      ]);
      expect(await valueOf(installs.hv.guestsNotReloaded)).toEqual(["spice0: cannot-reload spice-tls"]);
      const after = await probeVncTls({ host: hv.address, port: vncPort, ...client });
      expect(after.certificate?.fingerprintSha256).toBe(new X509Certificate(certs.hv.certPem).fingerprint256);
    } finally {
      await hv.exec("LC_ALL=C virsh -c qemu:///system destroy vnc0; virsh -c qemu:///system destroy spice0", {
        timeoutMs: 30_000,
      });
    }
  }, 180_000);

  it("a configuration file it could not edit stops the run before anything is written; mended, the renewal goes in", async () => {
    // A stray begin line in qemu.conf: the install finds it before the first file (step 0), so the host
    // keeps its current certificate, and the daemon serves what is on disk.
    const qemuConf = await hv.readFile("/etc/libvirt/qemu.conf");
    const before = await hv.readFile("/etc/pki/libvirt/servercert.pem");
    await hv.writeFile(
      "/etc/libvirt/qemu.conf",
      `${qemuConf}# BEGIN pulumi-virt-pki: these settings are managed by the Pulumi program; edits here are replaced\n`,
      { mode: "0600" },
    );
    const renewal = program("renewed", [dn("operator"), dn("auditor")], true);
    await expect(up(renewal, NO_DYNAMIC, state)).rejects.toThrow(
      "/etc/libvirt/qemu.conf has the line that begins the pulumi-virt-pki block but not the one that ends it",
    );
    expect(await hv.readFile("/etc/pki/libvirt/servercert.pem")).toBe(before);
    expect(before).not.toBe(certs.renewed.certPem);
    await hv.writeFile("/etc/libvirt/qemu.conf", qemuConf, { mode: "0600" });
    // Mended: the renewed certificate goes in, and libvirtd re-reads the files.
    const r = await up(renewal, NO_DYNAMIC, state);
    state = r.state;
    expect(await hv.readFile("/etc/pki/libvirt/servercert.pem")).toBe(certs.renewed.certPem);
    expect(await valueOf(installs.hv.reloads)).toEqual(["libvirtd update-tls"]);
    expect(await valueOf(installs.hv.servedFingerprint)).toBe(
      new X509Certificate(certs.renewed.certPem).fingerprint256,
    );
  }, 120_000);

  it("a daemon that does not serve the installed certificate fails the up, naming the host", async () => {
    await service.stop();
    const renewal = program("renewed", [dn("operator"), dn("auditor")]);
    await expect(up(renewal, NO_DYNAMIC, state)).rejects.toThrow(
      `hv1.virt.test: libvirt at ${hv.address}:${port} serves no certificate (nothing answered with TLS), not the one installed`,
    );
    // The failed command left no state; the files are in place and the reload stays owed: once the
    // daemon runs, the next up reloads it and the proof holds.
    await service.start();
    const r = await up(renewal, NO_DYNAMIC, state);
    state = r.state;
    // The SPICE layout is gone (qemu.conf changed): one restart, which re-reads the TLS files too.
    expect(await valueOf(installs.hv.reloads)).toEqual(["libvirtd restart"]);
    expect(await valueOf(installs.hv.servedFingerprint)).toBe(
      new X509Certificate(certs.renewed.certPem).fingerprint256,
    );
  }, 120_000);

  it("deleting the install takes the block out and restores the statements it had commented out", async () => {
    const r = await up(() => undefined, NO_DYNAMIC, state);
    state = r.state;
    expect(await hv.readFile("/etc/libvirt/libvirtd.conf")).toBe(original);
    expect(await hv.readFile("/etc/libvirt/qemu.conf")).toBe(STOCK_QEMU + QEMU_SITE);
  }, 60_000);
});
