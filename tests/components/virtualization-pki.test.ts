/**
 * VirtualizationPki as the mock monitor sees it: the child resources and their stable names, what each
 * host's install holds, and the preview-time errors for bad fleet input.
 */
import { VirtualizationPki, VirtualizationPkiArgs } from "../../components";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { up } from "../support/engine";
import { removeDir, tempDir } from "../support/programs";
import { captureResources, startProviderHost } from "../support/pulumiHost";

const connection = (host: string) => ({ host, user: "root", privateKey: "k" });

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
    const r = await up(() => void new Compiled("prod", args({ hosts, stagingRoot: staging })), host, {});
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
    const server = Object.values(r.state).find((s) => s.name === "prod-compute1")!.outputs;
    expect(server.subjectDn).toBe("O=Virtualization,CN=compute1.example.org");
    expect([...(server.dnsNames as string[])].sort()).toEqual(["compute1", "compute1.example.org"]); // stored normalized
    expect(server.ipAddresses).toEqual(["192.0.2.11"]);
    expect(server.profile).toBe("server+client");
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
  } finally {
    await host.stop();
    await removeDir(staging);
    await removeDir("/tmp/ws");
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
