/**
 * HostCredentialInstall against REAL hosts: three SSH hosts of the test bed (mount/PID/UTS namespaces with
 * private /etc/pki, /root, /home), the component's commands run over real SSH with its own connection
 * values (tests/support/engine.ts runs `command:remote:Command` resources), then judged by the real
 * consumers reading libvirt's and QEMU's DEFAULT paths: libvirtd + virsh, qemu-nbd + qemu-img (as the
 * libvirt-qemu user), and virt-pki-validate.
 */
import * as pulumi from "@pulumi/pulumi";
import { HostCredentialInstall, LayoutArgs } from "../../components";
import { InstalledFile } from "../../components/install";
import {
  IssuedCertificate,
  createCertificateAuthority,
  createCrl,
  createPreSharedKeys,
  issueCertificate,
} from "../../provider/pki";
import {
  EngineState,
  formatPlan,
  interruptCapturedCommand,
  planSummary,
  preview,
  up,
} from "../support/engine";
import { NO_DYNAMIC, revealSecrets } from "../support/pulumiHost";
import {
  RemoteLibvirtd,
  TestBed,
  TestHost,
  installLeftovers,
  qemuImgInfoOnHost,
  runRemoteCommand,
  startLibvirtdOnHost,
  startQemuNbdOnHost,
  startTestBed,
  virshOnHost,
} from "../support/testbed";

const ORG = "Libvirt Project";

let bed: TestBed;
let s1: TestHost;
let s2: TestHost;
let ws: TestHost;
let ca: { certPem: string; keyPem: string };
let crlPem: string;
let keysPsk: string;
const certs: Record<string, IssuedCertificate> = {};
let libvirtd: RemoteLibvirtd | undefined;
const printed: string[] = [];

function dn(cn: string): string {
  return `C=GB,ST=London,L=London,O=${ORG},CN=${cn}`;
}

beforeAll(async () => {
  bed = await startTestBed({
    hosts: [
      { name: "s1.virt.test", address: "127.0.0.31", aliases: ["s1", "not-in-san.virt.test"] },
      { name: "s2.virt.test", address: "127.0.0.32", aliases: ["s2"] },
      { name: "ws.virt.test", address: "127.0.0.33", aliases: ["ws"] },
    ],
    users: ["virtop"],
  });
  [s1, s2, ws] = ["s1", "s2", "ws"].map((n) => bed.host(n));
  // The libvirt guide's CA: CN and O "Libvirt Project" (virt-pki-validate compares the CA's CN with the
  // leaves' O).
  const c = await createCertificateAuthority({
    subject: { organization: ORG, commonName: ORG },
    keySpec: "ecdsa-p256",
  });
  ca = { certPem: c.certPem, keyPem: c.keyPem };
  const server = (h: TestHost) =>
    issueCertificate({
      issuer: ca,
      profile: "server+client",
      subject: { organization: ORG, commonName: h.name },
      dnsNames: [h.name, h.aliases[0]],
      ipAddresses: [h.address],
      keySpec: "ecdsa-p256",
    });
  const client = (cn: string) =>
    issueCertificate({
      issuer: ca,
      profile: "client",
      subject: { country: "GB", state: "London", locality: "London", organization: ORG, commonName: cn },
      keySpec: "ecdsa-p256",
    });
  certs.s1 = await server(s1);
  certs.s2 = await server(s2);
  certs.operator = await client("operator");
  certs.intruder = await client("intruder");
  certs.stolen = await client("stolen");
  crlPem = createCrl({
    issuer: ca,
    revoked: [{ serialNumber: certs.stolen.serialNumber, reason: "keyCompromise" }],
  }).crlPem;
  keysPsk = createPreSharedKeys(["qemu"]).keysPsk;
}, 60_000);

afterAll(async () => {
  await libvirtd?.stop();
  await bed?.stop();
  if (printed.length) console.log(printed.join("\n\n"));
});

function identity(name: string): { certPem: string; keyPem: pulumi.Output<string> } {
  return { certPem: certs[name].certPem, keyPem: pulumi.secret(certs[name].keyPem!) };
}

function serverLayouts(host: "s1" | "s2", cert = identity(host)): LayoutArgs[] {
  const trust = { caCertPem: ca.certPem, crlPem };
  return [
    { kind: "libvirt-server", ...trust, ...cert },
    { kind: "libvirt-client", ...trust, ...cert },
    { kind: "qemu", ...trust, ...cert },
    host === "s1"
      ? { kind: "qemu-server", service: "nbd", ...trust, ...cert }
      : { kind: "qemu-client", service: "nbd", caCertPem: ca.certPem, ...cert },
    { kind: "qemu-psk", dir: "/etc/pki/qemu-psk", keysPsk },
  ];
}

function workstationLayouts(): LayoutArgs[] {
  return [
    // A shared workstation: every local user connects as "operator" (libvirt's 0644 client key, asked for).
    {
      kind: "libvirt-client",
      caCertPem: ca.certPem,
      crlPem,
      ...identity("operator"),
      keyReadableByAllUsers: true,
    },
    { kind: "libvirt-client-user", user: "virtop", caCertPem: ca.certPem, ...identity("intruder") },
    {
      kind: "libvirt-client-user",
      user: "root",
      dir: "~/.pki/stolen",
      caCertPem: ca.certPem,
      ...identity("stolen"),
    },
  ];
}

type Installs = Record<string, HostCredentialInstall>;

function program(layouts: Record<string, LayoutArgs[]>, out: Installs): () => void {
  return () => {
    for (const [name, l] of Object.entries(layouts)) {
      out[name] = new HostCredentialInstall(name, {
        checkDrift: false, // no HostProbe: this program has no dynamic resources
        connection: bed.host(name).connection,
        hostLabel: bed.host(name).name,
        layouts: l,
        // Exact DNs: the component refuses libvirt's wildcards (the daemon below is given a glob directly).
        tlsAllowedDnList: [
          dn("operator"),
          dn("stolen"),
          certs.s1.distinguishedName,
          certs.s2.distinguishedName,
        ],
      });
    }
  };
}

function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

let state: EngineState = {};
const installs: Installs = {};

describe("installing onto three SSH hosts", () => {
  it("first up: every layout lands with the planned owners and modes; the component checks the manifest", async () => {
    const r = await up(
      program({ s1: serverLayouts("s1"), s2: serverLayouts("s2"), ws: workstationLayouts() }, installs),
      NO_DYNAMIC,
      state,
    );
    state = r.state;
    printed.push(`# first up\n${formatPlan(r.plan)}`);
    expect(
      r.plan
        .filter((s) => s.op === "create")
        .map((s) => s.name)
        .sort(),
    ).toEqual(["s1-files", "s2-files", "ws-files"]);

    const files: InstalledFile[] = await valueOf(installs.s1.files);
    // One ssh session at a time: sshd's MaxStartups drops bursts of concurrent connections.
    const table: string[] = [];
    for (const f of files) {
      const st = await s1.stat(f.hostPath);
      table.push(`${f.path} ${st?.mode} ${st?.owner}:${st?.group}`);
    }
    expect(table).toEqual([
      "/etc/pki/CA/cacert.pem 0644 root:root",
      "/etc/pki/CA/cacrl.pem 0644 root:root",
      "/etc/pki/libvirt/servercert.pem 0644 root:root",
      "/etc/pki/libvirt/private/serverkey.pem 0600 root:root",
      "/etc/pki/libvirt/clientcert.pem 0644 root:root",
      "/etc/pki/libvirt/private/clientkey.pem 0600 root:root",
      "/etc/pki/qemu/ca-cert.pem 0644 root:root",
      "/etc/pki/qemu/ca-crl.pem 0644 root:root",
      "/etc/pki/qemu/server-cert.pem 0644 root:root",
      "/etc/pki/qemu/server-key.pem 0640 root:libvirt-qemu",
      "/etc/pki/qemu/client-cert.pem 0644 root:root",
      "/etc/pki/qemu/client-key.pem 0640 root:libvirt-qemu",
      "/etc/pki/libvirt-nbd/ca-cert.pem 0644 root:root",
      "/etc/pki/libvirt-nbd/ca-crl.pem 0644 root:root",
      "/etc/pki/libvirt-nbd/server-cert.pem 0644 root:root",
      "/etc/pki/libvirt-nbd/server-key.pem 0640 root:libvirt-qemu",
      "/etc/pki/qemu-psk/keys.psk 0600 root:root",
    ]);
    for (const dir of ["/etc/pki/CA", "/etc/pki/libvirt", "/etc/pki/libvirt/private", "/etc/pki/qemu"]) {
      expect(await s1.stat(dir)).toEqual({ mode: "0755", owner: "root", group: "root" });
    }
    expect(await s1.readFile("/etc/pki/libvirt/private/serverkey.pem")).toBe(certs.s1.keyPem);

    const wsFiles: InstalledFile[] = await valueOf(installs.ws.files);
    expect(
      wsFiles
        .filter((f) => f.path.startsWith("~"))
        .map((f) => `${f.hostPath} ${f.mode} ${f.owner}:${f.group}`),
    ).toEqual([
      "/home/virtop/.pki/libvirt/cacert.pem 0600 virtop:virtop",
      "/home/virtop/.pki/libvirt/clientcert.pem 0600 virtop:virtop",
      "/home/virtop/.pki/libvirt/clientkey.pem 0600 virtop:virtop",
      "/root/.pki/stolen/cacert.pem 0600 root:root",
      "/root/.pki/stolen/clientcert.pem 0600 root:root",
      "/root/.pki/stolen/clientkey.pem 0600 root:root",
    ]);
    expect(await ws.stat("/home/virtop/.pki/libvirt")).toEqual({
      mode: "0700",
      owner: "virtop",
      group: "virtop",
    });
    expect(await valueOf(installs.s1.libvirtdConf)).toContain('crl_file = "/etc/pki/CA/cacrl.pem"');
  });

  it("the same program again runs nothing; re-running the script by hand changes nothing", async () => {
    const before = await s1.exec("stat -c '%i %Y' /etc/pki/libvirt/private/serverkey.pem");
    const r = await up(
      program({ s1: serverLayouts("s1"), s2: serverLayouts("s2"), ws: workstationLayouts() }, installs),
      NO_DYNAMIC,
      state,
    );
    state = r.state;
    printed.push(`# same program again\n${formatPlan(r.plan)}`);
    expect(r.plan.every((s) => s.op === "same")).toBe(true);
    // The state keeps secrets as secrets (the stdin and the connection's key); the command runs with their values.
    const cmd = revealSecrets(
      state[Object.keys(state).find((u) => u.endsWith("::s1-files"))!].inputs,
    ) as Record<string, unknown>;
    const again = await runRemoteCommand(cmd.connection as never, cmd.create as string, cmd.stdin as string);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/changed=0/);
    const after = await s1.exec("stat -c '%i %Y' /etc/pki/libvirt/private/serverkey.pem");
    expect(after.stdout).toBe(before.stdout); // same inode: nothing was rewritten
  });

  it("virt-pki-validate passes on a host with libvirt-server + libvirt-client", async () => {
    const r = await s1.exec("virt-pki-validate");
    printed.push(`# virt-pki-validate on s1\n${r.stdout}${r.stderr}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Found client private key /etc/pki/libvirt/private/clientkey.pem");
    expect(r.stdout).toContain("Found server private key /etc/pki/libvirt/private/serverkey.pem");
    // The one advice: the root-only client key (0600) is not libvirt's 0644 for shared use. A hint, exit 0.
    const advice = r.stdout
      .split("\n")
      .filter((l) => /should|need|do not match|does not seem|as root do|Missing|Did not find/.test(l));
    expect(advice).toEqual([
      "The client private key need to be read by client tools",
      "as root do: chmod 644 /etc/pki/libvirt/private/clientkey.pem",
    ]);
    // On the shared workstation that asked for it, the key is 0644 and virt-pki-validate has no advice on it.
    const ws = bed.host("ws");
    expect(await ws.stat("/etc/pki/libvirt/private/clientkey.pem")).toEqual({
      mode: "0644",
      owner: "root",
      group: "root",
    });
    const w = await ws.exec("virt-pki-validate");
    printed.push(`# virt-pki-validate on ws\n${w.stdout}${w.stderr}`);
    expect(w.stdout).toContain("Found client private key /etc/pki/libvirt/private/clientkey.pem");
    expect(w.stdout).not.toMatch(/client private key need|chmod 644/);
  });

  it("real libvirtd with default paths: SAN name and IP accepted, other names, DNs and revoked clients refused", async () => {
    libvirtd = await startLibvirtdOnHost(s1, {
      tlsAllowedDnList: [dn("operator"), dn("stolen"), `O=${ORG},CN=s*.virt.test`],
    });
    const uri = (host: string, extra = "") => `test+tls://${host}:${libvirtd!.port}/default${extra}`;
    const byName = await virshOnHost(ws, { uri: uri("s1.virt.test") });
    expect(byName.output).toMatch(/Id\s+Name\s+State/);
    expect(byName.ok).toBe(true);
    expect((await virshOnHost(ws, { uri: uri("127.0.0.31") })).ok).toBe(true);
    // Migration: s2 connects with its own (server+client) certificate from /etc/pki/libvirt.
    expect((await virshOnHost(s2, { uri: uri("s1") })).ok).toBe(true);

    const wrongName = await virshOnHost(ws, { uri: uri("not-in-san.virt.test") });
    expect(wrongName.ok).toBe(false);
    expect(wrongName.output).toMatch(/owner does not match the hostname not-in-san\.virt\.test/);

    const intruder = await virshOnHost(ws, { uri: uri("s1.virt.test"), user: "virtop" });
    expect(intruder.ok).toBe(false);
    expect(
      await libvirtd.waitForLog(
        /Client's x509 Distinguished Name is not within the allowed list|is not on the list/,
      ),
    ).toBeDefined();
    expect(libvirtd.log()).toContain(dn("intruder"));

    const stolen = await virshOnHost(ws, { uri: uri("s1.virt.test", "?pkipath=/root/.pki/stolen") });
    expect(stolen.ok).toBe(false);
    const revokedLine = await libvirtd.waitForLog(/revoked/i);
    expect(revokedLine).toBeDefined();
    printed.push(
      [
        "# libvirtd on s1 (default paths), virsh from ws",
        `by name: ${byName.ok}, by IP: ok, from s2 (migration): ok`,
        `name not in SAN: ${wrongName.output.split("\n").find((l) => /does not match the hostname/.test(l))}`,
        `DN not allowed: ${libvirtd
          .log()
          .split("\n")
          .find((l) => l.includes(dn("intruder")))}`,
        `revoked: ${revokedLine}`,
      ].join("\n"),
    );
  });

  it("real qemu-nbd: per-service server/client dirs, the combined layout both ways, and TLS-PSK", async () => {
    const nbd = await startQemuNbdOnHost(s1, {
      kind: "x509",
      dir: "/etc/pki/libvirt-nbd",
      runAs: "libvirt-qemu",
    });
    try {
      const r = await qemuImgInfoOnHost(s2, {
        serverName: "s1.virt.test",
        port: nbd.port,
        kind: "x509",
        dir: "/etc/pki/libvirt-nbd",
        runAs: "libvirt-qemu",
      });
      expect(r.output).toMatch(/virtual size:/);
      expect(r.ok).toBe(true);
    } finally {
      await nbd.stop();
    }
    for (const [server, client] of [
      [s1, s2],
      [s2, s1],
    ]) {
      const q = await startQemuNbdOnHost(server, {
        kind: "x509",
        dir: "/etc/pki/qemu",
        runAs: "libvirt-qemu",
      });
      try {
        const r = await qemuImgInfoOnHost(client, {
          serverName: server.name,
          port: q.port,
          kind: "x509",
          dir: "/etc/pki/qemu",
          runAs: "libvirt-qemu",
        });
        expect(r.ok).toBe(true);
      } finally {
        await q.stop();
      }
    }
    const psk = await startQemuNbdOnHost(s1, { kind: "psk", dir: "/etc/pki/qemu-psk" });
    try {
      const r = await qemuImgInfoOnHost(s2, {
        serverName: "s1.virt.test",
        port: psk.port,
        kind: "psk",
        dir: "/etc/pki/qemu-psk",
        username: "qemu",
      });
      expect(r.ok).toBe(true);
    } finally {
      await psk.stop();
    }
  });

  it("a re-issued certificate whose transfer dies mid-way leaves the old files intact; the next run installs it", async () => {
    const oldCert = await s1.readFile("/etc/pki/libvirt/servercert.pem");
    const oldKey = await s1.readFile("/etc/pki/libvirt/private/serverkey.pem");
    const renewed = await issueCertificate({
      issuer: ca,
      profile: "server+client",
      subject: { organization: ORG, commonName: s1.name },
      dnsNames: [s1.name, "s1"],
      ipAddresses: [s1.address],
      keySpec: "ecdsa-p256",
    });
    const newIdentity = { certPem: renewed.certPem, keyPem: pulumi.secret(renewed.keyPem!) };
    const cut = await interruptCapturedCommand(
      program({ s1: serverLayouts("s1", newIdentity) }, {}),
      (stdin) => Math.floor(stdin.length / 2),
    );
    expect(cut.signal).toBe("SIGKILL");
    expect(cut.code).toBeNull(); // cut while it ran, not after it had ended
    // The remote script sees EOF (or SIGHUP) and exits through its trap: its temp files go.
    expect(await installLeftovers(s1, ["/etc/pki", "/var/lib/virt-pki"])).toBe("");
    expect(await s1.readFile("/etc/pki/libvirt/servercert.pem")).toBe(oldCert);
    expect(await s1.readFile("/etc/pki/libvirt/private/serverkey.pem")).toBe(oldKey);
    const verify = await s1.exec(
      "openssl verify -CAfile /etc/pki/CA/cacert.pem /etc/pki/libvirt/servercert.pem",
    );
    expect(verify.stdout).toContain("OK");

    // Through the harness: the triggers (content hashes) changed, so the command is replaced: the new one
    // is created, then the old one's delete runs and keeps every file the new one now claims.
    const r = await up(
      program(
        { s1: serverLayouts("s1", newIdentity), s2: serverLayouts("s2"), ws: workstationLayouts() },
        installs,
      ),
      NO_DYNAMIC,
      state,
    );
    state = r.state;
    printed.push(`# s1 re-issued\n${formatPlan(r.plan)}`);
    expect(r.plan.filter((s) => s.op !== "same").map((s) => `${s.name} ${s.op} ${s.replaces}`)).toEqual([
      "s1-files replace triggers",
    ]);
    expect(await s1.readFile("/etc/pki/libvirt/servercert.pem")).toBe(renewed.certPem);
    expect(await s1.readFile("/etc/pki/CA/cacert.pem")).toBe(ca.certPem);
    expect(await s1.stat("/etc/pki/libvirt/private/serverkey.pem")).toEqual({
      mode: "0600",
      owner: "root",
      group: "root",
    });
    // A daemon started now uses the new certificate.
    await libvirtd?.stop();
    libvirtd = await startLibvirtdOnHost(s1, { tlsAllowedDnList: [dn("operator")] });
    expect((await virshOnHost(ws, { uri: `test+tls://s1.virt.test:${libvirtd.port}/default` })).ok).toBe(
      true,
    );
  });

  it("removing an install deletes only its files", async () => {
    const r = await up(
      program({ s1: serverLayouts("s1", identity("s1")), s2: serverLayouts("s2") }, installs),
      NO_DYNAMIC,
      state,
    );
    state = r.state;
    printed.push(`# workstation removed (and s1 back to its first certificate)\n${formatPlan(r.plan)}`);
    expect(r.plan.find((s) => s.name === "ws-files")?.op).toBe("delete");
    expect(await ws.exists("/etc/pki/libvirt/private/clientkey.pem")).toBe(false);
    expect(await ws.exists("/home/virtop/.pki/libvirt/clientkey.pem")).toBe(false);
    expect(await ws.exists("/etc/pki/libvirt/private")).toBe(true); // directories stay
    expect(await s2.exists("/etc/pki/libvirt/private/clientkey.pem")).toBe(true);
  });

  it("a new connection target replaces the install, so the old host loses its files; new credentials alone update it in place", async () => {
    // pulumi-command 1.2.1 updates a command in place when `connection` changes (only `triggers` replace),
    // so the install puts its target (user@host:port) into the triggers.
    const KEY = "/etc/pki/libvirt-backup/client-key.pem";
    const mover =
      (host: TestHost, extra: Record<string, unknown> = {}): (() => void) =>
      () =>
        new HostCredentialInstall("mover", {
          checkDrift: false, // no HostProbe: this program has no dynamic resources
          connection: { ...host.connection, ...extra },
          hostLabel: host.name,
          layouts: [
            { kind: "qemu-client", service: "backup", caCertPem: ca.certPem, ...identity("operator") },
          ],
        });
    let r = await up(mover(ws), NO_DYNAMIC, state);
    state = r.state;
    expect(await ws.readFile(KEY)).toBe(certs.operator.keyPem);

    // New credentials for the same target: an update that re-runs the install there; nothing is deleted.
    const sameTarget = await preview(mover(ws, { dialErrorLimit: 3 }), NO_DYNAMIC, state);
    expect(planSummary(sameTarget.plan)).toEqual(["mover-files update [diff: ~connection]"]);
    r = await up(mover(ws, { dialErrorLimit: 3 }), NO_DYNAMIC, state);
    state = r.state;
    expect(planSummary(r.plan)).toEqual(planSummary(sameTarget.plan));
    expect(await ws.readFile(KEY)).toBe(certs.operator.keyPem);

    // Another host: the new command installs there, then the old one's delete runs with ITS stored connection.
    const moved = await preview(mover(s1), NO_DYNAMIC, state);
    expect(planSummary(moved.plan)).toEqual(["mover-files replace [diff: ~connection,stdin,triggers]"]);
    r = await up(mover(s1), NO_DYNAMIC, state);
    state = r.state;
    printed.push(`# an install moved to another host\n${formatPlan(r.plan, { details: true })}`);
    expect(planSummary(r.plan)).toEqual(planSummary(moved.plan));
    expect(await s1.readFile(KEY)).toBe(certs.operator.keyPem);
    expect(await ws.exists(KEY)).toBe(false);
  });
});
