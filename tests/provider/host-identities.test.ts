/**
 * HostIdentities: one resource, one key per role. The certificates are read back by OpenSSL (subject,
 * key usages, SANs) and each key is matched to its own certificate and to no other.
 */
import { createPublicKey } from "node:crypto";
import { certificateAuthority, hostIdentities, UNKNOWN } from "../../provider/handlers";
import { runOrThrow, tempDir, removeDir, writeFiles } from "../support/programs";

let caCreds: { certPem: string; keyPem: string };
beforeAll(async () => {
  const ca = await certificateAuthority.create({ subject: { organization: "Org", commonName: "Org" } });
  caCreds = { certPem: ca.outs.certPem as string, keyPem: ca.outs.keyPem as string };
});

const inputs = (extra: Record<string, unknown> = {}) => ({
  ca: caCreds,
  subject: { organization: "Org", commonName: "hv1.example.org" },
  dnsNames: ["hv1.example.org", "hv1"],
  ipAddresses: ["192.0.2.7"],
  keySpec: "ecdsa-p256",
  roles: ["client", "qemu"],
  ...extra,
});

function spki(pem: string): string {
  return createPublicKey(pem).export({ type: "spki", format: "der" }).toString("hex");
}

test("issues a server, a libvirt client and a QEMU identity, each with its own key, DN and usages", async () => {
  const checked = hostIdentities.check({}, inputs() as never);
  expect(checked.failures).toBeUndefined();
  const { outs } = await hostIdentities.create(checked.inputs as never);
  const roles = {
    server: [outs.certPem, outs.keyPem],
    client: [outs.clientCertPem, outs.clientKeyPem],
    qemu: [outs.qemuCertPem, outs.qemuKeyPem],
  } as Record<string, [string, string]>;
  const keys = new Set<string>();
  for (const [cert, key] of Object.values(roles)) {
    expect(spki(cert)).toBe(spki(key)); // the key is this certificate's
    keys.add(spki(key));
  }
  expect(keys.size).toBe(3);
  expect(outs.distinguishedName).toBe("O=Org,CN=hv1.example.org");
  expect(outs.clientDistinguishedName).toBe("O=Org,OU=libvirt-client,CN=hv1.example.org");
  expect(outs.qemuDistinguishedName).toBe("O=Org,OU=qemu,CN=hv1.example.org");
  expect(outs.roles).toEqual(["client", "qemu"]);
  expect(outs.profile).toBeUndefined();

  // OpenSSL's view: usages and names per role.
  const dir = await tempDir("virt-pki-hostid-");
  try {
    const files = await writeFiles(dir, {
      server: roles.server[0],
      client: roles.client[0],
      qemu: roles.qemu[0],
      ca: caCreds.certPem,
    });
    const text = async (f: string) =>
      (await runOrThrow("openssl", ["x509", "-noout", "-text", "-in", f])).stdout;
    const server = await text(files.server);
    const client = await text(files.client);
    const qemu = await text(files.qemu);
    expect(server).toMatch(/TLS Web Server Authentication\n/);
    expect(server).not.toMatch(/Client Authentication/);
    expect(server).toMatch(/DNS:hv1, DNS:hv1\.example\.org, IP Address:192\.0\.2\.7/);
    expect(client).toMatch(/TLS Web Client Authentication\n/);
    expect(client).not.toMatch(/Server Authentication|Subject Alternative Name/);
    expect(qemu).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(qemu).toMatch(/DNS:hv1, DNS:hv1\.example\.org, IP Address:192\.0\.2\.7/);
    for (const f of [files.server, files.client, files.qemu]) {
      await runOrThrow("openssl", ["verify", "-CAfile", files.ca, f]);
    }
  } finally {
    await removeDir(dir);
  }
});

test("only the roles asked for; a change of roles replaces, a renewal window alone changes nothing", async () => {
  const serverOnly = hostIdentities.check({}, inputs({ roles: [] }) as never).inputs!;
  expect(serverOnly.roles).toBeUndefined();
  const { id, outs } = await hostIdentities.create(serverOnly as never);
  expect(outs.clientCertPem).toBeUndefined();
  expect(outs.qemuKeyPem).toBeUndefined();
  expect(hostIdentities.diff(id, outs, serverOnly as never)).toEqual({ changes: false });
  const withQemu = hostIdentities.check(serverOnly, inputs({ roles: ["qemu"] }) as never).inputs!;
  expect(hostIdentities.diff(id, outs, withQemu as never)).toEqual({ changes: true, replaces: ["roles"] });
  expect(hostIdentities.diff(id, outs, { ...withQemu, roles: UNKNOWN } as never).replaces).toEqual(["roles"]);
  const newKeyType = hostIdentities.check(
    serverOnly,
    inputs({ roles: [], keySpec: "rsa-2048" }) as never,
  ).inputs!;
  expect(hostIdentities.diff(id, outs, newKeyType as never).replaces).toEqual(["keySpec"]);
  // A "same" step: no output holds the window, so none goes unknown in a preview.
  const wider = hostIdentities.check(
    serverOnly,
    inputs({ roles: [], renewBeforeHours: 100 }) as never,
  ).inputs!;
  expect(wider.notAfter).toBe(outs.notAfter);
  expect(hostIdentities.diff(id, outs, wider as never)).toEqual({ changes: false });
  expect(outs).not.toHaveProperty("renewBeforeHours");
  expect(outs).not.toHaveProperty("renewAt");
});

test("all identities end at the planned end; a due renewal re-issues them all, listed as notAfter", async () => {
  const stored = hostIdentities.check({}, inputs() as never).inputs!;
  const { id, outs } = await hostIdentities.create(stored as never);
  expect([outs.notAfter, outs.clientNotAfter, outs.qemuNotAfter]).toEqual(Array(3).fill(stored.notAfter));
  // 30 days (the default window) before the end of a 365-day certificate: due.
  const due = new Date(Date.parse(stored.notAfter as string) - 719 * 3_600_000);
  const news = hostIdentities.check(stored, inputs() as never, due).inputs!;
  expect(news.notAfter).not.toBe(stored.notAfter);
  expect(hostIdentities.diff(id, outs, news as never)).toEqual({ changes: true, replaces: ["notAfter"] });
  const notYet = new Date(Date.parse(stored.notAfter as string) - 721 * 3_600_000);
  expect(hostIdentities.check(stored, inputs() as never, notYet).inputs!.notAfter).toBe(stored.notAfter);
});

test.each([
  [{ roles: ["server"] }, "roles", 'give a list of "client", "qemu"'],
  [{ roles: ["qemu", "qemu"] }, "roles", "lists a role twice"],
  [{ template: "cn = x\n" }, "template", "HostIdentities takes subject and names"],
  [{ keySpec: "dsa" }, "keySpec", 'unknown key spec "dsa"'],
  [{ autoRenew: false }, "autoRenew", "HostIdentities takes subject and names, not autoRenew"],
  [{ revoked: true }, "revoked", "HostIdentities takes subject and names, not revoked"],
  [
    { subject: { organization: "Org", organizationalUnit: "libvirt-client", commonName: "hv1.example.org" } },
    "subject",
    "makes the server identity's DN that of the client role",
  ],
  [
    // Every subject field also takes a list: the same DN through a one-element OU list.
    { subject: { organization: "Org", organizationalUnit: ["qemu"], commonName: "hv1.example.org" } },
    "subject",
    "makes the server identity's DN that of the qemu role",
  ],
])("%j fails on %s", (extra, property, reason) => {
  const r = hostIdentities.check({}, inputs(extra) as never);
  expect(r.inputs).toBeUndefined();
  expect(r.failures).toEqual(
    expect.arrayContaining([expect.objectContaining({ property, reason: expect.stringContaining(reason) })]),
  );
});

test("a failure on an input holding key text names no property (the engine would print its value)", () => {
  const keyPem = caCreds.keyPem;
  for (const extra of [{ template: keyPem }, { roles: [keyPem] }]) {
    const r = hostIdentities.check({}, inputs(extra) as never);
    expect(r.failures).toEqual([{ property: "", reason: expect.any(String) }]);
    expect(JSON.stringify(r.failures)).not.toContain(keyPem.split("\n")[1]);
  }
});
