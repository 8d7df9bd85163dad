/**
 * What only the fleet knows, asked before anything reaches a host: every CA of the trust bundle is one libvirt
 * and QEMU accept now (an expired CA left in the bundle stops libvirtd on every host: CloudStack #9562), a CA
 * ending before the coming renewal is a warning, every name and address a host is reached through (FQDN,
 * short name, IPs, migration addresses) is in its certificates as GnuTLS matches them, and a host taking TLS
 * migrations has a QEMU identity libvirt would use for it. Real certificates from the real provider host;
 * installs run locally under a temporary staging root.
 */
import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { VirtualizationPki, VirtualizationPkiArgs } from "../../components";
import { pki } from "../../index";
import { up } from "../support/engine";
import { removeDir, tempDir } from "../support/programs";
import { captureResources, ProviderHost, startProviderHost } from "../support/pulumiHost";

const HOUR = 3_600_000;

let host: ProviderHost;
let staging: string;
let Compiled: typeof VirtualizationPki;

beforeAll(async () => {
  host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  await host.configure();
  ({ VirtualizationPki: Compiled } = await import("../../bin/components"));
}, 60_000);
afterAll(async () => {
  await host?.stop();
});
beforeEach(async () => {
  staging = await tempDir("virt-pki-fleet-acceptance-");
});
afterEach(async () => {
  await removeDir(staging);
});

/** A CA from elsewhere (another stack's export), issued at `now` for `validityHours`. */
async function existingCa(id: string, now: Date, validityHours: number) {
  const ca = await pki.createCertificateAuthority({
    subject: { commonName: `Old CA ${id}` },
    keySpec: "ecdsa-p256",
    validityHours,
    now,
  });
  return { id, certPem: ca.certPem, keyPem: ca.keyPem };
}

function fleet(extra: Partial<VirtualizationPkiArgs> = {}): VirtualizationPkiArgs {
  return {
    ca: { subject: { commonName: "Fleet CA" } },
    hosts: [{ name: "compute1", fqdn: "compute1.example.org", ipAddresses: ["192.0.2.11"] }],
    stagingRoot: staging,
    ...extra,
  };
}

test("migration addresses go into the host's certificates, and every name is checked against them", async () => {
  const r = await up(
    () => {
      new Compiled(
        "prod",
        fleet({
          hosts: [
            {
              name: "compute1",
              fqdn: "compute1.example.org",
              ipAddresses: ["192.0.2.11"],
              migrationAddresses: ["10.1.0.11", "compute1.migration.example.org"],
              qemu: ["migrate"],
            },
          ],
        }),
      );
    },
    host,
    {},
  );
  const ids = Object.values(r.state).find((s) => s.name === "prod-compute1")!;
  expect([...(ids.outputs.ipAddresses as string[])].sort()).toEqual(["10.1.0.11", "192.0.2.11"]);
  expect([...(ids.outputs.dnsNames as string[])].sort()).toEqual([
    "compute1",
    "compute1.example.org",
    "compute1.migration.example.org",
  ]);
  // The QEMU identity of the migrate service carries them: what the source QEMU checks as tls-hostname.
  const qemuCert = ids.outputs.qemuCertPem as string;
  for (const name of ["10.1.0.11", "compute1.migration.example.org", "compute1.example.org"]) {
    expect({ name, matches: pki.gnutlsCheckHostname(qemuCert, name) }).toEqual({ name, matches: true });
  }
  expect(existsSync(join(staging, "compute1", "etc/pki/libvirt-migrate/server-cert.pem"))).toBe(true);
});

test("a name the host is reached through that its certificate cannot match fails the up before anything is written", async () => {
  // Clients use the FQDN as given ("qemu+tls://compute1.example.org./system"); the certificate holds the
  // normalised name without the final dot, which GnuTLS does not match (certtool --verify-hostname agrees).
  const program = () => {
    new Compiled("prod", fleet({ hosts: [{ name: "compute1", fqdn: "compute1.example.org." }] }));
  };
  await expect(up(program, host, {})).rejects.toThrow(
    /layouts\[0\]: would be refused: libvirt server: Certificate \[session\] owner does not match the hostname compute1\.example\.org\./,
  );
  expect(existsSync(join(staging, "compute1", "etc"))).toBe(false);
});

test("an expired CA left in the trust bundle fails the up, naming it, before anything is written", async () => {
  const old = await existingCa("old", new Date(Date.now() - 48 * HOUR), 24);
  const program = () => {
    new Compiled("prod", fleet({ ca: [{ subject: { commonName: "Fleet CA" } }, old] }));
  };
  await expect(up(program, host, {})).rejects.toThrow(
    /ca\[1\]: \(old\) would be refused in every host's CA file: The CA certificate \/etc\/pki\/CA\/cacert\.pem has expired; rotate it out/,
  );
  expect(existsSync(join(staging, "compute1", "etc"))).toBe(false);
});

test("a CA that ends within the coming renewal window is a warning on the fleet", async () => {
  const old = await existingCa("old", new Date(Date.now() - HOUR), 240);
  const logged = jest.spyOn(console, "warn").mockImplementation(() => undefined);
  try {
    await up(
      () => {
        new Compiled("prod", fleet({ ca: [{ subject: { commonName: "Fleet CA" } }, old] }));
      },
      host,
      {},
    );
    const text = logged.mock.calls.map((c) => String(c[0])).join("\n");
    expect(text).toMatch(
      /ca\[1\] \(old\): The CA certificate CN=Old CA old in \/etc\/pki\/CA\/cacert\.pem expires at \S+, before the coming renewal window \(renewBeforeHours from now\)/,
    );
    expect(text).not.toContain("ca[0]");
  } finally {
    logged.mockRestore();
  }
});

test("in its CA's last days hosts are still issued, ending with the CA, a warning says so, and nothing churns", async () => {
  // The issuing CA ends in 20 days: sooner than a year's certificate, and inside the 30-day renewal window.
  const ending = await existingCa("ending", new Date(Date.now() - HOUR), 20 * 24 + 1);
  const caEnd = new X509Certificate(ending.certPem).validTo;
  const logged = jest.spyOn(console, "warn").mockImplementation(() => undefined);
  try {
    const program = () => {
      new Compiled("prod", fleet({ ca: ending }));
    };
    const first = await up(program, host, {});
    const ids = Object.values(first.state).find((s) => s.name === "prod-compute1")!;
    expect(Date.parse(ids.outputs.notAfter as string)).toBe(Date.parse(caEnd));
    const text = logged.mock.calls.map((c) => String(c[0])).join("\n");
    expect(text).toMatch(
      /ca \(ending\): the issuing CA ends \S+, before certificates issued now would \(validityHours 8760\): new and renewed host and client certificates end with it\. Rotate it before then/,
    );
    // Renewal is due (the end is within 30 days) but would give the same end: no re-issue at every up.
    const again = await up(program, host, first.state);
    expect(again.plan.filter((s) => s.op !== "same")).toEqual([]);
  } finally {
    logged.mockRestore();
  }
});

test("a host taking TLS migrations needs a QEMU identity libvirt would use for them", async () => {
  await expect(
    captureResources(() => {
      new VirtualizationPki(
        "prod",
        fleet({
          hosts: [
            {
              name: "compute1",
              fqdn: "compute1.example.org",
              migrationAddresses: ["10.1.0.11"],
              qemu: ["vnc"],
            },
          ],
        }),
      );
    }),
  ).rejects.toThrow(
    /^hosts\[0\]\.qemu: has no QEMU identity for migration, but migrationAddresses are given: .* add "migrate" or "default" to qemu/,
  );
  await expect(
    captureResources(() => {
      new VirtualizationPki(
        "prod",
        fleet({ hosts: [{ name: "compute1", fqdn: "compute1.example.org", migrationAddresses: [""] }] }),
      );
    }),
  ).rejects.toThrow(/^hosts\[0\]\.migrationAddresses: must be a list of names or addresses/);
});

test("addresses are matched as clients pass them: an IPv6 address in brackets, migration addresses with spaces", async () => {
  const logged = jest.spyOn(console, "warn").mockImplementation(() => undefined);
  try {
    const r = await up(
      () => {
        new Compiled(
          "prod",
          fleet({
            hosts: [
              {
                name: "compute1",
                fqdn: "compute1.example.org",
                ipAddresses: ["[2001:db8::11]"],
                migrationAddresses: [" 10.1.0.11", "[2001:DB8::12]"],
              },
              { name: "compute2", fqdn: "compute2.example.org" },
            ],
          }),
        );
      },
      host,
      {},
    );
    const ids = Object.values(r.state).find((s) => s.name === "prod-compute1")!;
    expect([...(ids.outputs.ipAddresses as string[])].sort()).toEqual([
      "10.1.0.11",
      "2001:db8::11",
      "2001:db8::12",
    ]);
    // This library's EC leaves make libvirt 9.0 warn on every host alike: one warning per message for the fleet.
    const text = logged.mock.calls.map((c) => String(c[0])).join("\n");
    expect(text).toContain(
      "2 host(s) (compute1, compute2): layouts[0] (libvirt server): Certificate /etc/pki/libvirt/servercert.pem usage does not permit key encipherment",
    );
    expect(text.match(/usage does not permit key encipherment/g)).toHaveLength(2); // server and client layouts
  } finally {
    logged.mockRestore();
  }
});

test("a migration address that is neither a name nor an address is refused where it was written", async () => {
  for (const [address, message] of [
    ["not a name!", /^hosts\[0\]\.migrationAddresses\[0\]: "not a name!" is not a valid DNS name/],
    ["fe80::1%eth0", /^hosts\[0\]\.migrationAddresses\[0\]: "fe80::1%eth0" has a zone/],
  ] as const) {
    await expect(
      captureResources(() => {
        new VirtualizationPki(
          "prod",
          fleet({
            hosts: [{ name: "compute1", fqdn: "compute1.example.org", migrationAddresses: [address] }],
          }),
        );
      }),
    ).rejects.toThrow(message);
  }
});
