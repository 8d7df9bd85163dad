/**
 * Revocation that holds, judged by the real consumers: a VirtualizationPki fleet (the compiled component)
 * runs through the engine harness (dynamic resources on the REAL provider host, installs run for real:
 * compute1 locally under a staging root, the operator's workstation over SSH on a test-bed host). A client
 * is revoked with the user's reason; then the fleet's keySpec and validityHours change, another client is
 * offboarded while its machine is gone, both leave `clients`, and the CA is rotated in three ups. After
 * every step `openssl crl -noout -text` of every CRL in the fleet's CRL file lists the original serial with
 * the original revocation date and reason, and a real libvirtd loaded with compute1's installed files
 * refuses the revoked certificate while it accepts a client that is not revoked.
 */
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import type { VirtualizationPki, VirtualizationPkiArgs } from "../../components";
import { EngineState, PlanStep, formatPlan, up } from "../support/engine";
import { startLibvirtd, virshConnect } from "../support/libvirtd";
import { removeDir, runOrThrow, sleep, tempDir, writeFiles } from "../support/programs";
import { ProviderHost, revealSecrets, startProviderHost } from "../support/pulumiHost";
import { TestBed, TestHost, startTestBed } from "../support/testbed";

const LISTEN = "127.0.0.62";
const ORG = "Revocation Test";
const subject = (cn: string) => ({ country: "GB", organization: ORG, commonName: cn });

let bed: TestBed;
let ws: TestHost;
let provider: ProviderHost;
let staging: string;
let files: string;
let state: EngineState = {};
let fleet: VirtualizationPki | undefined;
const printed: string[] = [];

beforeAll(async () => {
  bed = await startTestBed({
    hosts: [{ name: "ws.revocation.test", address: "127.0.0.61", aliases: ["ws"] }],
  });
  ws = bed.host("ws");
  provider = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  await provider.configure();
  staging = await tempDir("virt-pki-revocation-staging-");
  files = await tempDir("virt-pki-revocation-files-");
}, 60_000);

afterAll(async () => {
  await provider?.stop();
  await bed?.stop();
  if (staging !== undefined) await removeDir(staging);
  if (files !== undefined) await removeDir(files);
  console.log(printed.join("\n\n"));
});

interface Step {
  keySpec?: "ecdsa-p256" | "rsa-2048";
  validityHours?: number;
  clients?: VirtualizationPkiArgs["clients"];
  revokedClients?: VirtualizationPkiArgs["revokedClients"];
  ca?: VirtualizationPkiArgs["ca"];
  issuingCa?: string;
}

const operatorInstall = () => ({ connection: ws.connection });
const CLIENTS = () => [
  { name: "laptop", subject: subject("laptop") },
  { name: "other", subject: subject("other") },
  { name: "operator", subject: subject("operator"), install: operatorInstall() },
];

async function runUp(title: string, s: Step): Promise<string[]> {
  const { VirtualizationPki: Compiled } = await import("../../bin/components");
  const args: VirtualizationPkiArgs = {
    organization: ORG,
    ca: s.ca ?? { id: "ca", subject: { commonName: "Revocation CA" } },
    issuingCa: s.issuingCa,
    hosts: [{ name: "compute1", fqdn: "compute1.revocation.test", ipAddresses: [LISTEN] }],
    clients: s.clients ?? CLIENTS(),
    revokedClients: s.revokedClients,
    keySpec: s.keySpec ?? "ecdsa-p256",
    validityHours: s.validityHours ?? 48,
    renewBeforeHours: 1,
    stagingRoot: staging,
  };
  const r = await up(() => void (fleet = new Compiled("fleet", args)), provider, state);
  state = r.state;
  printed.push(`# ${title}\n${formatPlan(r.plan)}`);
  return changes(r.plan);
}

function changes(plan: PlanStep[]): string[] {
  return plan
    .filter((s) => s.op !== "same")
    .map(
      (s) =>
        `${s.name} ${s.op}${s.replaces ? ` [${s.replaces.join(", ")}]` : ""}${s.retained ? " [retain]" : ""}`,
    )
    .sort();
}

function outputs(name: string): Record<string, unknown> {
  const e = Object.values(state).find((s) => s.name === name);
  if (!e) throw new Error(`no ${name} in the state`);
  return revealSecrets(e.outputs) as Record<string, unknown>;
}

function value<T>(o: import("@pulumi/pulumi").Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/** What `openssl crl -noout -text` lists in each CRL of the fleet's CRL file: serial, date, reason, by issuer. */
async function crlListings(): Promise<
  { issuer: string; entries: { serial: string; date: string; reason?: string }[] }[]
> {
  const crlPem = await value(fleet!.crlPem);
  // The file installed on compute1 is the fleet's crlPem.
  expect(await readFile(join(staging, "compute1/etc/pki/CA/cacrl.pem"), "utf8")).toBe(crlPem);
  const blocks = crlPem.match(/-----BEGIN X509 CRL-----[\s\S]*?-----END X509 CRL-----\n/g) ?? [];
  const out = [];
  for (const [i, block] of blocks.entries()) {
    await writeFiles(files, { [`crl${i}.pem`]: block });
    const text = (await runOrThrow("openssl", ["crl", "-noout", "-text", "-in", join(files, `crl${i}.pem`)]))
      .stdout;
    const issuer = /Issuer: ([^\n]+)/.exec(text)![1].trim();
    const entries: { serial: string; date: string; reason?: string }[] = [];
    const re =
      /Serial Number: ([0-9A-F]+)\s+Revocation Date: ([^\n]+)(?:\s+CRL entry extensions:\s+X509v3 CRL Reason Code:\s+([^\n]+))?/g;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      entries.push({
        serial: m[1].replace(/^0+/, ""),
        date: m[2].trim(),
        ...(m[3] ? { reason: m[3].trim() } : {}),
      });
    }
    out.push({ issuer, entries });
  }
  return out;
}

/** How openssl prints an ISO time: `Nov 24 16:40:01 2026 GMT`. */
function opensslDate(iso: string): string {
  const d = new Date(iso);
  const mon = d.toLocaleString("en-US", { month: "short", timeZone: "UTC" });
  return `${mon} ${String(d.getUTCDate()).padStart(2, " ")} ${d.toISOString().slice(11, 19)} ${d.getUTCFullYear()} GMT`;
}

interface Revoked {
  serial: string;
  date: string;
  reason: string;
}

/** Every CRL in the file lists each of `revoked` with its original date and reason. */
async function expectListedEverywhere(revoked: Revoked[], title: string): Promise<void> {
  const crls = await crlListings();
  expect(crls.length).toBeGreaterThan(0);
  for (const crl of crls) {
    for (const r of revoked) {
      expect({ title, issuer: crl.issuer, entry: crl.entries.find((e) => e.serial === r.serial) }).toEqual({
        title,
        issuer: crl.issuer,
        entry: { serial: r.serial, date: r.date, reason: r.reason },
      });
    }
  }
  printed.push(
    `${title}: ${crls.map((c) => `${c.issuer}: ${c.entries.map((e) => `${e.serial} ${e.date} ${e.reason}`).join("; ")}`).join(" | ")}`,
  );
}

/** A `?pkipath=` directory for a client: the fleet's CA file and the client's certificate and key. */
async function clientDir(name: string, cert: { certPem: string; keyPem: string }): Promise<string> {
  const dir = join(files, `client-${name}-${Date.now()}`);
  await writeFiles(dir, {
    "cacert.pem": await value(fleet!.caCertPem),
    "clientcert.pem": cert.certPem,
    "clientkey.pem": cert.keyPem,
  });
  return dir;
}

function credentials(name: string): { certPem: string; keyPem: string } {
  const o = outputs(`fleet-client-${name}`);
  return { certPem: o.certPem as string, keyPem: o.keyPem as string };
}

/**
 * A real libvirtd with compute1's installed CA, certificate, key and CRL files: `refused` clients fail
 * (with the revoked message while their CA is still trusted), `accepted` ones connect.
 */
async function judge(
  refused: { certPem: string; keyPem: string }[],
  accepted: { certPem: string; keyPem: string }[],
  revokedMessage = true,
): Promise<void> {
  const etc = join(staging, "compute1/etc/pki");
  const d = await startLibvirtd({
    listenAddr: LISTEN,
    caFile: join(etc, "CA/cacert.pem"),
    certFile: join(etc, "libvirt/servercert.pem"),
    keyFile: join(etc, "libvirt/private/serverkey.pem"),
    crlFile: join(etc, "CA/cacrl.pem"),
  });
  try {
    expect(d.log()).not.toMatch(/error : .*(CRL|crl)/);
    for (const [i, c] of refused.entries()) {
      const r = await virshConnect({
        host: LISTEN,
        port: d.port,
        pkiPath: await clientDir(`refused${i}`, c),
      });
      expect(r.ok).toBe(false);
      if (revokedMessage) {
        expect(
          await d.waitForLog(/Certificate failed validation: The certificate has been revoked\./),
        ).toBeDefined();
      }
    }
    for (const [i, c] of accepted.entries()) {
      const r = await virshConnect({
        host: LISTEN,
        port: d.port,
        pkiPath: await clientDir(`accepted${i}`, c),
      });
      expect({ ok: r.ok, output: r.ok ? "" : r.output }).toEqual({ ok: true, output: "" });
    }
  } finally {
    await d.stop();
  }
}

describe("revocation holds across keySpec, validityHours, offboarding, removal and CA rotation", () => {
  let laptop: Revoked;
  let laptopCert: { certPem: string; keyPem: string };
  let operator: Revoked;
  const revokeLaptop = { name: "laptop", reason: "affiliationChanged" as const };

  it("0. first up; the laptop is still accepted", async () => {
    await runUp("0. first up", {});
    laptopCert = credentials("laptop");
    await judge([], [laptopCert, credentials("other")]);
  });

  it("1. revoking the laptop with the user's reason: listed with its serial, date and reason; refused", async () => {
    const plan = await runUp("1. revoke laptop (affiliationChanged)", { revokedClients: [revokeLaptop] });
    expect(plan).not.toContainEqual(expect.stringMatching(/^fleet-client-laptop (replace|create)/));
    const o = outputs("fleet-client-laptop");
    expect(o.certPem).toBe(laptopCert.certPem);
    laptop = {
      serial: (o.serialNumber as string).replace(/^0+/, "").toUpperCase(),
      date: opensslDate(o.revokedAt as string),
      reason: "Affiliation Changed",
    };
    await expectListedEverywhere([laptop], "1");
    await judge([laptopCert], [credentials("other")]);
    await sleep(1100); // any later re-sign that moved the date would now show another second
  });

  it("2. a new keySpec re-issues every other certificate, never the revoked one", async () => {
    const plan = await runUp("2. keySpec rsa-2048", { keySpec: "rsa-2048", revokedClients: [revokeLaptop] });
    expect(plan).toContain("fleet-compute1 replace [keySpec]");
    expect(plan).toContain("fleet-client-other replace [keySpec]");
    expect(plan.filter((p) => p.startsWith("fleet-client-laptop "))).toEqual([]);
    expect(outputs("fleet-client-laptop").certPem).toBe(laptopCert.certPem);
    await expectListedEverywhere([laptop], "2");
    await judge([laptopCert], [credentials("other")]);
  });

  it("3. a new validityHours: the same", async () => {
    const plan = await runUp("3. validityHours 72", {
      keySpec: "rsa-2048",
      validityHours: 72,
      revokedClients: [revokeLaptop],
    });
    expect(plan).toContain("fleet-client-other replace [validityHours]");
    expect(plan.filter((p) => p.startsWith("fleet-client-laptop "))).toEqual([]);
    await expectListedEverywhere([laptop], "3");
    await judge([laptopCert], [credentials("other")]);
  });

  const later = { keySpec: "rsa-2048" as const, validityHours: 72 };
  const revokeOperator = { name: "operator", reason: "cessationOfOperation" as const };

  it("4. offboarding while the operator's machine is gone: revoke + unreachable in one up, nothing contacts it", async () => {
    const operatorCert = credentials("operator");
    await ws.stop(); // the workstation is gone: its sshd no longer answers
    const clients = CLIENTS().map((c) =>
      c.name === "operator" ? { ...c, install: { ...operatorInstall(), unreachable: true } } : c,
    );
    const plan = await runUp("4. revoke operator, its machine unreachable", {
      ...later,
      clients,
      revokedClients: [revokeLaptop, revokeOperator],
    });
    // The certificate is marked revoked in place; its install (fleet-client-operator-files) is not touched.
    expect(plan.filter((p) => p.startsWith("fleet-client-operator"))).toEqual([
      "fleet-client-operator update",
    ]);
    const o = outputs("fleet-client-operator");
    operator = {
      serial: (o.serialNumber as string).replace(/^0+/, "").toUpperCase(),
      date: opensslDate(o.revokedAt as string),
      reason: "Cessation Of Operation",
    };
    await expectListedEverywhere([laptop, operator], "4");
    await judge([laptopCert, operatorCert], [credentials("other")]);

    // Dropping the install afterwards only forgets it (retainOnDelete): still nothing contacts the machine.
    const dropped = await runUp("4b. drop the operator's install", {
      ...later,
      clients: CLIENTS().map((c) => (c.name === "operator" ? { name: c.name, subject: c.subject } : c)),
      revokedClients: [revokeLaptop, revokeOperator],
    });
    expect(dropped).toEqual(["fleet-client-operator-files delete [retain]"]);
    await sleep(1100);
  });

  it("5. both leave clients: the laptop as a record from `revocations`, the operator not at all; both stay listed", async () => {
    const records = await value(fleet!.revocations);
    expect(records.laptop).toMatchObject({ reason: "affiliationChanged" });
    const plan = await runUp("5. remove laptop and operator from clients", {
      ...later,
      clients: [{ name: "other", subject: subject("other") }],
      revokedClients: [{ name: "laptop", ...records.laptop }],
    });
    expect(plan).toEqual(
      expect.arrayContaining(["fleet-client-laptop delete", "fleet-client-operator delete"]),
    );
    await expectListedEverywhere([laptop, operator], "5");
    await judge([laptopCert], [credentials("other")]);
  });

  it("6. CA rotation in three ups: every CRL keeps the laptop's original entry; libvirtd refuses it throughout", async () => {
    const records = { laptop: { name: "laptop", ...(await value(fleet!.revocations)).laptop } };
    const base = {
      ...later,
      clients: [{ name: "other", subject: subject("other") }],
      revokedClients: [records.laptop],
    };
    const both = [
      { id: "ca", subject: { commonName: "Revocation CA" } },
      { id: "ca-2", subject: { commonName: "Revocation CA 2" } },
    ];
    const a = await runUp("6a. trust ca-2 too", { ...base, ca: both });
    expect(a).toContain("fleet-ca-2-crl create");
    await expectListedEverywhere([laptop], "6a");
    await judge([laptopCert], [credentials("other")]);

    const b = await runUp("6b. issue with ca-2", { ...base, ca: both, issuingCa: "ca-2" });
    expect(b).toContain("fleet-client-other replace [ca]");
    await expectListedEverywhere([laptop], "6b");
    await judge([laptopCert], [credentials("other")]);

    const c = await runUp("6c. drop the old CA", { ...base, ca: [both[1]], issuingCa: "ca-2" });
    expect(c).toEqual(expect.arrayContaining(["fleet-ca delete", "fleet-ca-crl delete"]));
    const crls = await crlListings();
    expect(crls.map((x) => x.issuer)).toEqual([expect.stringContaining("Revocation CA 2")]);
    await expectListedEverywhere([laptop], "6c");
    // The laptop's issuer is no longer trusted at all: refused (for that reason, not the CRL's).
    await judge([laptopCert], [credentials("other")], false);
  });
});
