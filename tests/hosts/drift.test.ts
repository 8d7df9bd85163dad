/**
 * Drift seen in the preview, on the SSH test bed: each install's `HostProbe` (a dynamic resource run by the
 * REAL dynamic-provider host of `@pulumi/pulumi`) reads its host's files over SSH at preview. A deleted file,
 * a key made 0644, a certificate replaced by another, and an unreachable host each show as exactly that
 * host's probe with the reason in its input `drift` (and that host's install as updating); the `up` repairs
 * the hosts; the next preview is empty; `pulumi refresh` reports drift too.
 */
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
// The built package: the dynamic-provider host loads the probe's handlers from bin/ (provider/providers.ts).
import { HostCredentialInstall, LayoutArgs } from "../../bin/components";
import { requireBuild } from "../support/checkout";
import { probeDrift } from "../../provider/drift";
import { IssuedCertificate, createCertificateAuthority, issueCertificate } from "../../provider/pki";
import { EngineState, PlanStep, formatPlan, preview, refresh, up } from "../support/engine";
import { ProviderHost, revealSecrets, startProviderHost } from "../support/pulumiHost";
import { TestBed, TestHost, startTestBed } from "../support/testbed";

const ORG = "Libvirt Project";
let bed: TestBed;
let hosts: TestHost[];
let provider: ProviderHost;
let ca: { certPem: string; keyPem: string };
const certs: Record<string, IssuedCertificate> = {};
const printed: string[] = [];

beforeAll(async () => {
  requireBuild();
  bed = await startTestBed({
    hosts: [
      { name: "d1.virt.test", address: "127.0.0.51" },
      { name: "d2.virt.test", address: "127.0.0.52" },
      { name: "d3.virt.test", address: "127.0.0.53" },
    ],
  });
  hosts = ["d1.virt.test", "d2.virt.test", "d3.virt.test"].map((n) => bed.host(n));
  provider = await startProviderHost({ cwd: path.join(__dirname, "..", "..") });
  const c = await createCertificateAuthority({
    subject: { organization: ORG, commonName: ORG },
    keySpec: "ecdsa-p256",
  });
  ca = { certPem: c.certPem, keyPem: c.keyPem };
  for (const h of hosts) {
    certs[h.name] = await issueCertificate({
      issuer: ca,
      profile: "server+client",
      subject: { organization: ORG, commonName: h.name },
      dnsNames: [h.name],
      ipAddresses: [h.address],
      keySpec: "ecdsa-p256",
    });
  }
  certs.foreign = await issueCertificate({
    issuer: ca,
    profile: "server",
    subject: { organization: ORG, commonName: "foreign.virt.test" },
    keySpec: "ecdsa-p256",
  });
}, 60_000);

afterAll(async () => {
  await provider?.stop();
  await bed?.stop();
  if (printed.length) console.log(printed.join("\n\n"));
});

function program(): () => void {
  return () => {
    for (const h of hosts) {
      const cert = certs[h.name];
      const layouts: LayoutArgs[] = [
        {
          kind: "libvirt-server",
          caCertPem: ca.certPem,
          certPem: cert.certPem,
          keyPem: pulumi.secret(cert.keyPem!),
        },
        // A key of QEMU's group: the probe compares the group the install sets (d1 names it).
        {
          kind: "qemu-server",
          caCertPem: ca.certPem,
          certPem: cert.certPem,
          keyPem: pulumi.secret(cert.keyPem!),
        },
      ];
      new HostCredentialInstall(h.name.split(".")[0], {
        connection: h.connection,
        hostLabel: h.name,
        qemuGroup: h === hosts[0] ? "libvirt-qemu" : undefined,
        layouts,
      });
    }
  };
}

/** What a preview shows: each step that is not `same`, with its probe's new `drift` input. */
function changes(plan: PlanStep[]): string[] {
  return plan
    .filter((s) => s.op !== "same")
    .map((s) => {
      if (s.op !== "update" || !s.name.endsWith("-probe")) return `${s.op} ${s.name}`;
      const drift = (revealSecrets(s.newInputs) as { drift?: string[] }).drift;
      return `${s.op} ${s.name} ${JSON.stringify(drift)}`;
    })
    .sort();
}

let state: EngineState = {};

describe("drift seen in the preview", () => {
  it("first up installs and probes nothing (nothing installed yet); the next preview is empty", async () => {
    const r = await up(program(), provider, state);
    state = r.state;
    printed.push(`# first up\n${formatPlan(r.plan)}`);
    expect(changes(r.plan)).toEqual([
      "create d1-files",
      "create d1-probe",
      "create d2-files",
      "create d2-probe",
      "create d3-files",
      "create d3-probe",
    ]);
    const p = await preview(program(), provider, state);
    expect(changes(p.plan)).toEqual([]);
  }, 120_000);

  it("a deleted file, a key made 0644 and a foreign certificate show as exactly those hosts and reasons", async () => {
    const [d1, d2, d3] = hosts;
    await d1.execOrThrow("rm /etc/pki/libvirt/servercert.pem");
    await d2.execOrThrow("chmod 0644 /etc/pki/libvirt/private/serverkey.pem");
    await d3.writeFile("/etc/pki/libvirt/servercert.pem", certs.foreign.certPem);
    const p = await preview(program(), provider, state);
    printed.push(`# preview after the hosts drifted\n${formatPlan(p.plan, { details: true })}`);
    expect(changes(p.plan)).toEqual([
      "update d1-files",
      'update d1-probe ["/etc/pki/libvirt/servercert.pem: missing"]',
      "update d2-files",
      'update d2-probe ["/etc/pki/libvirt/private/serverkey.pem: mode 0644, installed 0600"]',
      "update d3-files",
      'update d3-probe ["/etc/pki/libvirt/servercert.pem: content differs (sha256)"]',
    ]);
    // The drift input is in the clear (no digests in it); the expected files stay secret.
    const probe = p.plan.find((s) => s.name === "d1-probe")!;
    expect(JSON.stringify(probe.newInputs)).not.toContain(certs["d1.virt.test"].fingerprintSha256);
  }, 120_000);

  it("pulumi refresh reports the drift in the probes' outputs", async () => {
    const r = await refresh(provider, state);
    const drift = (name: string) =>
      (revealSecrets(Object.values(r.state).find((e) => e.name === name)!.outputs) as { drift: string[] })
        .drift;
    expect(drift("d1-probe")).toEqual(["/etc/pki/libvirt/servercert.pem: missing"]);
    expect(drift("d2-probe")).toEqual(["/etc/pki/libvirt/private/serverkey.pem: mode 0644, installed 0600"]);
    state = r.state;
  }, 60_000);

  it("the up repairs every host, and the next preview is empty", async () => {
    const r = await up(program(), provider, state);
    state = r.state;
    printed.push(`# up repairs\n${formatPlan(r.plan)}`);
    const [d1, d2, d3] = hosts;
    expect(await d1.readFile("/etc/pki/libvirt/servercert.pem")).toBe(certs["d1.virt.test"].certPem);
    expect(await d2.stat("/etc/pki/libvirt/private/serverkey.pem")).toEqual({
      mode: "0600",
      owner: "root",
      group: "root",
    });
    expect(await d3.readFile("/etc/pki/libvirt/servercert.pem")).toBe(certs["d3.virt.test"].certPem);
    const p = await preview(program(), provider, state);
    expect(changes(p.plan)).toEqual([]);
  }, 120_000);

  it("the probe checks the host key as @pulumi/command does: another host's key is refused before anything runs", async () => {
    const [d1, d2] = hosts;
    const file = {
      path: "/etc/pki/CA/cacert.pem",
      sha256: "0".repeat(64),
      mode: "0644",
      owner: "root",
      group: "root",
    };
    // The right key: the probe runs and sees the file differ from the sha256 given here.
    expect(await probeDrift(d1.connection, [file])).toEqual([
      "/etc/pki/CA/cacert.pem: content differs (sha256)",
    ]);
    const wrong = await probeDrift({ ...d1.connection, hostKey: d2.hostKey }, [file]);
    expect(wrong).toHaveLength(1);
    expect(wrong[0]).toMatch(/^host unreachable: the host's key is not connection\.hostKey/);
  }, 60_000);

  it("the probe goes through a bastion (connection.proxy), whose own key is checked too", async () => {
    const [d1, d2] = hosts;
    const file = {
      path: "/etc/pki/CA/cacert.pem",
      sha256: "0".repeat(64),
      mode: "0644",
      owner: "root",
      group: "root",
    };
    expect(await probeDrift({ ...d2.connection, proxy: d1.connection }, [file])).toEqual([
      "/etc/pki/CA/cacert.pem: content differs (sha256)",
    ]);
    const wrong = await probeDrift({ ...d2.connection, proxy: { ...d1.connection, hostKey: d2.hostKey } }, [
      file,
    ]);
    expect(wrong).toEqual([
      expect.stringMatching(/^host unreachable: the proxy: the host's key is not connection\.hostKey/),
    ]);
  }, 60_000);

  it("an unreachable host is reported in its probe, and the preview of the others is unaffected", async () => {
    await hosts[2].stop();
    const p = await preview(program(), provider, state);
    printed.push(`# preview with d3 down\n${formatPlan(p.plan, { details: true })}`);
    const c = changes(p.plan);
    expect(c).toHaveLength(2);
    expect(c[0]).toBe("update d3-files");
    expect(c[1]).toMatch(/^update d3-probe \["host unreachable: .*ECONNREFUSED.*"\]$/);
  }, 120_000);
});
