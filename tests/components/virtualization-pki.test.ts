/**
 * VirtualizationPki as the mock monitor sees it: the child resources and their stable names, what each
 * host's install holds, and the preview-time errors for bad fleet input.
 */
import { VirtualizationPki, VirtualizationPkiArgs } from "../../components";
import { createPublicKey } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { up } from "../support/engine";
import { removeDir, tempDir } from "../support/programs";
import { captureResources, isSecretValue, revealSecrets, startProviderHost } from "../support/pulumiHost";

/** A syntactically valid OpenSSH host key line (the mock monitor never connects). */
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKw6hJ3n9m0C2mA4y1s9gXo2o8P0rQ6mQp3ZxXb3Yk2F";
const connection = (host: string) => ({ host, user: "root", privateKey: "k", hostKey: HOST_KEY });

function args(extra: Partial<VirtualizationPkiArgs> = {}): VirtualizationPkiArgs {
  return {
    ca: { subject: { commonName: "Fleet CA" } },
    hosts: [
      {
        name: "compute1",
        fqdn: "compute1.example.org",
        ipAddresses: ["192.0.2.11"],
        connection: connection("192.0.2.11"),
      },
      {
        name: "compute2",
        fqdn: "compute2.example.org",
        qemu: ["default", "vnc"],
        connection: connection("192.0.2.12"),
      },
    ],
    clients: [
      {
        name: "admin",
        subject: { organization: "Example", commonName: "admin" },
        install: { root: "/tmp/ws" },
      },
    ],
    pskUsers: ["qemu"],
    ...extra,
  };
}

test("children are named after the component; each host gets its certificate and one install", async () => {
  // Real certificates from the real provider host; installs run locally under a temp staging root.
  const host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  const staging = await tempDir("virt-pki-fleet-");
  try {
    await host.configure();
    const { VirtualizationPki: Compiled } = await import("../../bin/components");
    const hosts = args().hosts.map(({ connection: _c, ...h }) => h);
    let allowed: string[] = [];
    let earliestRenewAt: string | undefined;
    let fleetConf = "";
    let hostConf = "";
    const r = await up(
      () => {
        const fleet = new Compiled("prod", args({ hosts, stagingRoot: staging }));
        fleet.tlsAllowedDnList.apply((l) => (allowed = l));
        fleet.earliestRenewAt.apply((t) => (earliestRenewAt = t));
        fleet.libvirtdConf.apply((c) => (fleetConf = c));
        fleet.installs.compute1.libvirtdConf.apply((c) => (hostConf = c));
      },
      host,
      {},
    );
    expect(r.plan.map((s) => `${s.name} ${s.op}`).sort()).toEqual(
      [
        "prod-ca",
        "prod-client-admin",
        "prod-ca-crl",
        "prod-psk",
        "prod-compute1",
        "prod-compute2",
        "prod-compute1-files",
        "prod-compute2-files",
        "prod-client-admin-files",
      ]
        .map((n) => `${n} create`)
        .sort(),
    );
    // renewAt is computed by the program from each notAfter output and the window (720 h by default): no
    // resource stores it, so a new window changes no output.
    const ends = ["prod-ca", "prod-compute1", "prod-compute2", "prod-client-admin"].map((n) => {
      const outputs = Object.values(r.state).find((s) => s.name === n)!.outputs;
      expect(outputs).not.toHaveProperty("renewAt");
      return Date.parse(outputs.notAfter as string);
    });
    // The DN list, which depends on every certificate, is in the fleet's libvirtdConf once, after the
    // install's own lines, exactly as libvirtdConfSnippet renders it; no install carries it (N^2 otherwise).
    expect(hostConf).not.toContain("tls_allowed_dn_list");
    expect(fleetConf).toBe(`${hostConf}tls_allowed_dn_list = [${allowed.map((d) => `"${d}"`).join(", ")}]\n`);
    // peerDnList "exact" (the default): each host's libvirt client identity, then the client.
    expect(allowed).toEqual([
      "O=Virtualization,OU=libvirt-client,CN=compute1.example.org",
      "O=Virtualization,OU=libvirt-client,CN=compute2.example.org",
      "O=Example,CN=admin",
    ]);
    // The soonest is the CRL's re-sign (nextUpdate minus a third of its 720 h), not a certificate's renewal.
    const crl = Object.values(r.state).find((s) => s.name === "prod-ca-crl")!;
    const crlResign = Date.parse(crl.outputs.nextUpdate as string) - 240 * 3_600_000;
    expect(crlResign).toBeLessThan(Math.min(...ends) - 720 * 3_600_000);
    expect(earliestRenewAt).toBe(new Date(crlResign).toISOString());
    const server = Object.values(r.state).find((s) => s.name === "prod-compute1")!;
    expect(server.type).toBe("pulumi-nodejs:dynamic/virt-pki:HostIdentities");
    expect(server.outputs.subjectDn).toBe("O=Virtualization,CN=compute1.example.org");
    expect(server.outputs.clientDistinguishedName).toBe(
      "O=Virtualization,OU=libvirt-client,CN=compute1.example.org",
    );
    expect(server.outputs.qemuDistinguishedName).toBe("O=Virtualization,OU=qemu,CN=compute1.example.org");
    expect(server.outputs.roles).toEqual(["client", "qemu"]);
    expect([...(server.outputs.dnsNames as string[])].sort()).toEqual(["compute1", "compute1.example.org"]); // stored normalized
    expect(server.outputs.ipAddresses).toEqual(["192.0.2.11"]);
    const files = Object.values(r.state).find((s) => s.name === "prod-compute2-files")!;
    expect(files.type).toBe("command:local:Command");
    for (const path of [
      "etc/pki/libvirt/servercert.pem",
      "etc/pki/qemu/server-key.pem",
      "etc/pki/libvirt-vnc/client-cert.pem",
      "etc/pki/qemu-psk/keys.psk",
      "etc/pki/CA/cacrl.pem",
    ]) {
      expect(String(files.outputs.stdout)).toContain(`virt-pki-file /${path} `);
      expect(existsSync(join(staging, "compute2", path))).toBe(true);
    }
    expect(String(files.outputs.stdout)).toMatch(/changed=1/);
    const admin = Object.values(r.state).find((s) => s.name === "prod-client-admin-files")!;
    expect(String(admin.outputs.stdout)).toContain("virt-pki-file /etc/pki/libvirt/private/clientkey.pem ");
    expect(existsSync("/tmp/ws/etc/pki/libvirt/private/clientkey.pem")).toBe(true);

    // One key per role: no two roles (nor two hosts) share a key; no key is readable by "other", and only
    // the QEMU identity's key is readable by a group (QEMU's, which runs with it).
    const keyFiles = (root: string): string[] =>
      readdirSync(root, { recursive: true, encoding: "utf8" })
        .map((f) => join(root, f))
        .filter((f) => statSync(f).isFile() && readFileSync(f, "utf8").includes("PRIVATE KEY-----"));
    const publicKeyOf = (f: string): string =>
      createPublicKey(readFileSync(f, "utf8")).export({ type: "spki", format: "der" }).toString("hex");
    const roles: Record<string, string> = {};
    for (const h of ["compute1", "compute2"]) {
      const root = join(staging, h);
      const byRole = {
        server: publicKeyOf(join(root, "etc/pki/libvirt/private/serverkey.pem")),
        client: publicKeyOf(join(root, "etc/pki/libvirt/private/clientkey.pem")),
        qemu: publicKeyOf(join(root, "etc/pki/qemu/server-key.pem")),
      };
      for (const [role, key] of Object.entries(byRole)) {
        expect({ key: `${h} ${role}`, sharedWith: roles[key] }).toEqual({
          key: `${h} ${role}`,
          sharedWith: undefined,
        });
        roles[key] = `${h} ${role}`;
      }
      for (const f of keyFiles(root)) {
        const mode = statSync(f).mode & 0o777;
        const inQemuDir = /\/etc\/pki\/(qemu|libvirt-[a-z]+)\//.test(f);
        expect({ f, mode: mode.toString(8) }).toEqual({
          f,
          mode: f.endsWith("keys.psk") ? "600" : inQemuDir ? "640" : "600",
        });
        if (inQemuDir && !f.endsWith("keys.psk")) expect(publicKeyOf(f)).toBe(byRole.qemu);
      }
    }
    expect(Object.keys(roles)).toHaveLength(6);
    // Neither a server nor a QEMU DN is listed, nor would the prefix entry of peerDnList "prefix" admit it.
    for (const role of ["subjectDn", "qemuDistinguishedName"]) {
      const dn = server.outputs[role] as string;
      expect({ role, admitted: dn.startsWith("O=Virtualization,OU=libvirt-client,CN=") }).toEqual({
        role,
        admitted: false,
      });
    }
  } finally {
    await host.stop();
    await removeDir(staging);
    await removeDir("/tmp/ws");
  }
});

test("with daemonConfig and peerDnList exact each host's own libvirtd.conf and qemu.conf get the settings, every host's DN listed", async () => {
  const host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  const staging = await tempDir("virt-pki-fleet-daemon-");
  try {
    await host.configure();
    const { VirtualizationPki: Compiled } = await import("../../bin/components");
    const hosts = args().hosts.map(({ connection: _c, ...h }) => h);
    let allowed: string[] = [];
    const r = await up(
      () => {
        const fleet = new Compiled(
          "prod",
          args({
            hosts,
            stagingRoot: staging,
            clients: [],
            peerDnList: "exact",
            daemonConfig: { daemon: "libvirtd", qemuTls: ["vnc"] },
          }),
        );
        fleet.tlsAllowedDnList.apply((l) => (allowed = l));
      },
      host,
      {},
    );
    expect(r.plan.every((s) => s.op === "create")).toBe(true);
    expect(allowed).toEqual([
      "O=Virtualization,OU=libvirt-client,CN=compute1.example.org",
      "O=Virtualization,OU=libvirt-client,CN=compute2.example.org",
    ]);
    for (const h of ["compute1", "compute2"]) {
      const conf = readFileSync(join(staging, h, "etc/libvirt/libvirtd.conf"), "utf8");
      expect(conf).toContain(
        `tls_allowed_dn_list = [${allowed.map((d) => `"${d}"`).join(", ")}]\ntls_no_verify_certificate = 0\n` +
          "listen_tls = 1\n# END pulumi-virt-pki\n",
      );
      expect(conf).toContain('cert_file = "/etc/pki/libvirt/servercert.pem"');
      expect(readFileSync(join(staging, h, "etc/libvirt/qemu.conf"), "utf8")).toContain("vnc_tls = 1\n");
    }
  } finally {
    await host.stop();
    await removeDir(staging);
  }
});

const bad: [string, Partial<VirtualizationPkiArgs>, RegExp][] = [
  ["no hosts", { hosts: [] }, /^hosts: is required/],
  [
    "duplicate host",
    {
      hosts: [
        { name: "a", fqdn: "a.x", connection: connection("192.0.2.1") },
        { name: "a", fqdn: "b.x", connection: connection("192.0.2.2") },
      ],
    },
    /^hosts\[1\]\.name: "a" is used twice/,
  ],
  [
    "host without connection or stagingRoot",
    { hosts: [{ name: "a", fqdn: "a.x" }] },
    /^hosts\[0\]\.connection: is required unless the fleet has a stagingRoot/,
  ],
  [
    "unknown QEMU service",
    { hosts: [{ name: "a", fqdn: "a.x", qemu: ["rdp" as never], connection: connection("192.0.2.1") }] },
    /^hosts\[0\]\.qemu: "rdp" is not one of default, vnc/,
  ],
  [
    "issuingCa not a CA id",
    { issuingCa: "ca-2027" },
    /^issuingCa: "ca-2027" is not the id of a CA in ca \(ca\)/,
  ],
  [
    "two CAs with one id",
    { ca: [{ subject: { commonName: "A" } }, { subject: { commonName: "B" } }] },
    /^ca\[1\]\.id: "ca" is used twice/,
  ],
  [
    "a host connection without a host key",
    {
      hosts: [{ name: "a", fqdn: "a.x", connection: { host: "192.0.2.1", privateKey: "k" } }],
    },
    /^hosts\[0\]\.hostKey: is required: without it @pulumi\/command accepts any host key/,
  ],
  [
    "a host key that is not an OpenSSH public key line",
    {
      hosts: [
        {
          name: "a",
          fqdn: "a.x",
          connection: { host: "192.0.2.1", privateKey: "k" },
          hostKey: "AAAA; rm -rf /",
        },
      ],
    },
    /^hosts\[0\]\.hostKey: is not an OpenSSH public key line/,
  ],
  [
    "a hostKey that differs from the connection's",
    {
      hosts: [
        {
          name: "a",
          fqdn: "a.x",
          connection: connection("192.0.2.1"),
          hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOther",
        },
      ],
    },
    /^hosts\[0\]\.hostKey: differs from connection\.hostKey/,
  ],
  [
    "a hostKey without a connection",
    { hosts: [{ name: "a", fqdn: "a.x", hostKey: HOST_KEY }], stagingRoot: "/tmp/s" },
    /^hosts\[0\]\.hostKey: is only used with a connection/,
  ],
  [
    "a bastion without its host key",
    {
      hosts: [
        {
          name: "a",
          fqdn: "a.x",
          connection: { ...connection("192.0.2.1"), proxy: { host: "192.0.2.254", privateKey: "k" } },
        },
      ],
    },
    /^hosts\[0\]\.connection\.proxy\.hostKey: is required/,
  ],
  [
    "a client install connection without a host key",
    {
      clients: [
        {
          name: "admin",
          subject: { commonName: "admin" },
          install: { connection: { host: "192.0.2.9", privateKey: "k" } },
        },
      ],
    },
    /^clients\[0\]\.install\.hostKey: is required/,
  ],
  [
    "a world-readable key for a user's own install",
    {
      clients: [
        {
          name: "admin",
          subject: { commonName: "admin" },
          install: { root: "/tmp/ws", user: "alice", keyReadableByAllUsers: true },
        },
      ],
    },
    /^clients\[0\]\.install\.keyReadableByAllUsers: applies to the system-wide client key only/,
  ],
  [
    "revoking an unknown client",
    { revokedClients: ["bob"] },
    /^revokedClients\[0\]: "bob" is not in clients; keep a revoked client listed/,
  ],
  [
    "a record without its certificate's serial, date and notAfter",
    { revokedClients: [{ name: "bob", reason: "keyCompromise", serialNumber: "1a2b" }] },
    /^revokedClients\[0\]: "bob" is not in clients; .* or give its record \{ name, reason, serialNumber, revokedAt, notAfter \}/,
  ],
  [
    "an unknown revocation reason",
    { revokedClients: [{ name: "admin", reason: "stolen" as never }] },
    /^revokedClients\[0\]\.reason: unknown reason "stolen"; use one of unspecified, keyCompromise/,
  ],
  [
    "a reason that is an Object.prototype name",
    { revokedClients: [{ name: "admin", reason: "toString" as never }] },
    /^revokedClients\[0\]\.reason: unknown reason "toString"/,
  ],
  [
    "a serial for a client whose certificate is here",
    { revokedClients: [{ name: "admin", serialNumber: "1a2b" }] },
    /^revokedClients\[0\]\.serialNumber: "admin" is in clients: its certificate gives the serialNumber/,
  ],
  [
    "a revocation date that is not a date",
    { revokedClients: [{ name: "admin", revokedAt: "last week" }] },
    /^revokedClients\[0\]\.revokedAt: "last week" is not a date/,
  ],
  [
    "a peerDnList that is neither",
    { peerDnList: "glob" as never },
    /^peerDnList: "glob" is not "prefix" or "exact"/,
  ],
  [
    "a client whose DN the hosts' prefix would admit",
    {
      peerDnList: "prefix",
      clients: [
        {
          name: "ops",
          subject: {
            organization: "Virtualization",
            organizationalUnit: "libvirt-client",
            commonName: "ops",
          },
        },
      ],
    },
    /^clients\[0\]\.subject: its DN "O=Virtualization,OU=libvirt-client,CN=ops" is one the hosts' entry "O=Virtualization,OU=libvirt-client,CN=\*" admits/,
  ],
  [
    "a retired host still in hosts",
    {
      retiredHosts: [
        { name: "compute1", certificates: [{ serialNumber: "1a", notAfter: "2027-01-01T00:00:00Z" }] },
      ],
    },
    /^retiredHosts\[0\]\.name: "compute1" is still in hosts; remove it from hosts when you retire it/,
  ],
  [
    "a retirement reason that is lifted later",
    {
      retiredHosts: [
        {
          name: "old",
          reason: "certificateHold",
          certificates: [{ serialNumber: "1a", notAfter: "2027-01-01T00:00:00Z" }],
        },
      ],
    },
    /^retiredHosts\[0\]\.reason: give one of cessationOfOperation, keyCompromise, superseded, affiliationChanged/,
  ],
  [
    "a retired host without certificates",
    { retiredHosts: [{ name: "old", certificates: [] }] },
    /^retiredHosts\[0\]\.certificates: give the host's certificates/,
  ],
  [
    "a retired host's serial that is not hex",
    {
      retiredHosts: [
        { name: "old", certificates: [{ serialNumber: "zz", notAfter: "2027-01-01T00:00:00Z" }] },
      ],
    },
    /^retiredHosts\[0\]\.certificates\[0\]\.serialNumber: /,
  ],
  [
    "a client revoked twice",
    { revokedClients: ["admin", { name: "admin" }] },
    /^revokedClients\[1\]: "admin" is listed twice/,
  ],
];
test.each(bad)("bad input: %s", async (_name, extra, message) => {
  await expect(
    captureResources(() => {
      new VirtualizationPki("prod", args(extra));
    }),
  ).rejects.toThrow(message);
});

test("every role's key is a secret output of the host's one HostIdentities resource", async () => {
  const resources = await captureResources(
    () => {
      new VirtualizationPki("prod", args());
    },
    { preview: true },
  );
  const ids = resources.find((r) => r.name === "prod-compute1" && r.type.endsWith(":HostIdentities"))!;
  expect(ids).toBeDefined();
  expect(ids.type).toBe("pulumi-nodejs:dynamic/virt-pki:HostIdentities");
  expect([...(ids.options?.additionalSecretOutputs ?? [])].sort()).toEqual([
    "clientKeyPem",
    "keyPem",
    "qemuKeyPem",
  ]);
});

test("a reloadCommand never runs on the machine running Pulumi for a staged host", async () => {
  const staged = { name: "s1", fqdn: "s1.example.org" };
  // Given on the staged host itself, it is refused at preview.
  await expect(
    captureResources(
      () => {
        new VirtualizationPki(
          "prod",
          args({
            hosts: [{ ...staged, reloadCommand: "systemctl reload libvirtd" }],
            stagingRoot: "/tmp/stage",
          }),
        );
      },
      { preview: true },
    ),
  ).rejects.toThrow(/^hosts\[0\]\.reloadCommand: a staged host \(no connection\)/);
  // The fleet's reloadCommand is for the hosts it reaches: a staged host's install gets none (the install
  // itself refuses a reloadCommand under a staging root, so this up would fail if it were passed on).
  const host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  const staging = await tempDir("virt-pki-fleet-reload-");
  try {
    await host.configure();
    const { VirtualizationPki: Compiled } = await import("../../bin/components");
    const r = await up(
      () =>
        void new Compiled(
          "prod",
          args({ hosts: [staged], clients: [], stagingRoot: staging, reloadCommand: ["touch", "/tmp/x"] }),
        ),
      host,
      {},
    );
    const install = Object.values(r.state).find((s) => s.name === "prod-s1-files")!;
    expect(JSON.stringify(revealSecrets(install.inputs.stdin))).not.toMatch(/\\nreload /);
    expect(existsSync(join(staging, "s1/etc/pki/libvirt/servercert.pem"))).toBe(true);
  } finally {
    await host.stop();
    await removeDir(staging);
  }
});

test("an unreachable client's install needs no host key: it is never contacted again", async () => {
  const clients = [
    {
      name: "admin",
      subject: { commonName: "admin" },
      install: { connection: { host: "192.0.2.9", privateKey: "k" }, unreachable: true },
    },
  ];
  await expect(
    captureResources(
      () => {
        new VirtualizationPki("prod", args({ clients, revokedClients: ["admin"] }));
      },
      { preview: true },
    ),
  ).resolves.toBeDefined();
});

test("skipHostKeyVerification is the explicit way to connect without host keys", async () => {
  const hosts = [{ name: "a", fqdn: "a.x", connection: { host: "192.0.2.1", privateKey: "k" } }];
  await expect(
    captureResources(
      () => {
        new VirtualizationPki("prod", args({ hosts, skipHostKeyVerification: true }));
      },
      { preview: true },
    ),
  ).resolves.toBeDefined();
});

test("a host's hostKey goes into its install's connection", async () => {
  const hosts = [
    {
      name: "a",
      fqdn: "a.x",
      connection: { host: "192.0.2.1", privateKey: "k" },
      hostKey: HOST_KEY,
    },
  ];
  const resources = await captureResources(
    () => {
      new VirtualizationPki("prod", args({ hosts }));
    },
    { preview: true },
  );
  const cmd = resources.find((r) => r.name === "prod-a-files")!;
  // @pulumi/command keeps the whole connection secret.
  expect(isSecretValue(cmd.inputs.connection)).toBe(true);
  expect((revealSecrets(cmd.inputs.connection) as { hostKey: string }).hostKey).toBe(HOST_KEY);
});

test("earliestRenewAt leaves out a revoked client's frozen certificate, and an empty DN list admits nobody", async () => {
  const host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  const staging = await tempDir("virt-pki-fleet-frozen-");
  try {
    await host.configure();
    const { VirtualizationPki: Compiled } = await import("../../bin/components");
    const seen: { earliest?: string; clients?: Record<string, { notAfter: string }>; conf?: string } = {};
    const program = (extra: Partial<VirtualizationPkiArgs>) => () => {
      const fleet = new Compiled(
        "prod",
        args({
          // No libvirt client identity and, once revoked, no admitted client: the DN list is empty.
          hosts: [{ name: "h1", fqdn: "h1.example.org", libvirtClient: false }],
          clients: [{ name: "old", subject: { commonName: "old" }, install: { root: join(staging, "ws") } }],
          pskUsers: [],
          stagingRoot: staging,
          // The CRL's re-sign (two thirds of 100 days) comes after the first up's client renewal (2000 - 720 h).
          crlNextUpdateHours: 2400,
          ...extra,
        }),
      );
      fleet.earliestRenewAt.apply((t) => (seen.earliest = t));
      fleet.clients.apply((c) => (seen.clients = c));
      fleet.libvirtdConf.apply((c) => (seen.conf = c));
    };
    const hours = (h: number) => h * 3600_000;
    const first = await up(program({ validityHours: 2000 }), host, {});
    const clientRenewAt = Date.parse(seen.clients!.old.notAfter) - hours(720);
    expect(Date.parse(seen.earliest!)).toBe(clientRenewAt);
    // Revoked, the client's certificate stays as it was (its renewal date is still the soonest of the
    // fleet's certificates), while the host is re-issued for a year: the next change is the CRL's re-sign.
    await up(program({ validityHours: 8760, revokedClients: ["old"] }), host, first.state);
    expect(Date.parse(seen.clients!.old.notAfter) - hours(720)).toBe(clientRenewAt);
    expect(Date.parse(seen.earliest!)).toBeGreaterThan(clientRenewAt);
    expect(Date.parse(seen.earliest!)).toBeGreaterThan(Date.now() + hours(1500));
    expect(seen.conf).toContain('tls_allowed_dn_list = ["no client is admitted"]\n');
  } finally {
    await host.stop();
    await removeDir(staging);
  }
});
