/**
 * Renewal as the CLI shows it, previews without phantom cascades, refresh, and old states, through the
 * REAL dynamic-provider host. The engine's steps are modelled here as pulumi v3.248.0 takes them
 * (pkg/resource/deploy/step_generator.go, step.go): Check gets the OLD stored INPUTS as olds (none on
 * create, and none on the re-check of a replacement); Diff gets the old OUTPUTS and the checked inputs; a
 * "same" step stores the new inputs and keeps the old outputs; Refresh keeps the stored inputs unless Read
 * returns some. What `pulumi preview --diff` prints for a dynamic resource is the difference between the
 * old stored inputs and the new checked inputs (pkg/backend/display/rows.go getDiffInfo, `__` keys
 * skipped), since the dynamic host returns no detailed diff.
 */
import { join } from "node:path";
import * as virtpki from "../../bin/index";
import { captureResources, ProviderHost, resourceUrn, startProviderHost } from "../support/pulumiHost";

let host: ProviderHost;
let ca: { certPem: string; keyPem: string };
beforeAll(async () => {
  host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  await host.configure();
  const pki = await import("../../bin/provider/pki");
  ca = await pki.createCertificateAuthority({ subject: { commonName: "Renewal CA" }, keySpec: "ecdsa-p256" });
});
afterAll(async () => {
  await host?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A resource as the engine stores it. */
interface Stored {
  id: string;
  urn: string;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
}

/** The inputs the program registers for each resource (with `__provider`), and each resource's URN. */
async function registered(
  program: () => void,
): Promise<Record<string, { urn: string; news: Record<string, unknown> }>> {
  const captured = await captureResources(program);
  return Object.fromEntries(
    captured.map((c) => [c.name, { urn: resourceUrn(c.name, { type: c.type }), news: c.inputs }]),
  );
}

/** A first up of one resource: check without olds, create. */
async function create(r: { urn: string; news: Record<string, unknown> }): Promise<Stored> {
  const checked = await host.check(r.urn, {}, r.news);
  expect(checked.failures).toEqual([]);
  const created = await host.create(r.urn, checked.inputs);
  return { id: created.id, urn: r.urn, inputs: checked.inputs, outputs: created.properties };
}

/** The inputs the CLI shows as changed: old stored inputs against new checked inputs (rows.go getDiffInfo). */
function shown(olds: Record<string, unknown>, news: Record<string, unknown>): string[] {
  const keys = [...new Set([...Object.keys(olds), ...Object.keys(news)])].filter((k) => !k.startsWith("__"));
  return keys.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k])).sort();
}

/** The plan of a later up for one resource: check against the stored inputs, diff against the stored outputs. */
async function plan(stored: Stored, news: Record<string, unknown>) {
  const checked = await host.check(stored.urn, stored.inputs, news);
  expect(checked.failures).toEqual([]);
  const diff = await host.diff(stored.id, stored.urn, stored.outputs, checked.inputs);
  return { inputs: checked.inputs, shown: shown(stored.inputs, checked.inputs), diff };
}

/** Waits until `now >= end - windowHours` (plus a margin), for a certificate or CRL living seconds. */
async function untilDue(end: unknown, windowHours: number): Promise<void> {
  const renewAt = Date.parse(end as string) - windowHours * 3_600_000;
  await sleep(Math.max(0, renewAt - Date.now()) + 300);
}

test("a due leaf renewal shows as `~ notAfter: old => new`; before it is due the input is identical", async () => {
  // 7.2 s of validity, due 3.6 s before the end.
  const program = (renewBeforeHours: number) => () =>
    void new virtpki.ClientCertificate("shortlived", {
      ca,
      subject: { commonName: "op" },
      keySpec: "ecdsa-p256",
      validityHours: 0.002,
      renewBeforeHours,
    });
  const r = (await registered(program(0.001))).shortlived;
  const stored = await create(r);
  expect(stored.outputs.notAfter).toBe(stored.inputs.notAfter); // create issued exactly the planned end

  const notDue = await plan(stored, r.news);
  expect(notDue.shown).toEqual([]);
  expect(notDue.inputs.notAfter).toBe(stored.inputs.notAfter);
  expect(notDue.diff.changes).toBe("DIFF_NONE");

  await untilDue(stored.inputs.notAfter, 0.001);
  const due = await plan(stored, r.news);
  expect(due.shown).toEqual(["notAfter"]); // the reason, as an input the CLI prints: ~ notAfter: "..." => "..."
  expect(Date.parse(due.inputs.notAfter as string)).toBeGreaterThan(
    Date.parse(stored.inputs.notAfter as string),
  );
  expect(due.diff).toMatchObject({ changes: "DIFF_SOME", replaces: ["notAfter"] });
  // The replacement: the engine checks again without olds, and creates from what that check returns.
  const rechecked = await host.check(r.urn, {}, r.news);
  const created = await host.create(r.urn, rechecked.inputs);
  expect(created.properties.notAfter).toBe(rechecked.inputs.notAfter);
  expect(created.properties.serialNumber).not.toBe(stored.outputs.serialNumber);
});

test("policy-only edits are no change: a same step, so no output goes unknown in a preview", async () => {
  const program = (caWindow: number, leafWindow: number, autoRenew?: boolean) => () => {
    new virtpki.CertificateAuthority("policyca", {
      subject: { commonName: "Policy CA" },
      keySpec: "ecdsa-p256",
      renewBeforeHours: caWindow,
    });
    new virtpki.ServerCertificate("policyleaf", {
      ca,
      subject: { commonName: "h1.example.com" },
      keySpec: "ecdsa-p256",
      renewBeforeHours: leafWindow,
      autoRenew,
    });
    new virtpki.HostIdentities("policyhost", {
      ca,
      subject: { commonName: "hv1.example.com" },
      keySpec: "ecdsa-p256",
      roles: ["client", "qemu"],
      renewBeforeHours: leafWindow,
    });
    new virtpki.CertificateRevocationList("policycrl", { ca, renewBeforeHours: caWindow / 10 });
  };
  const first = await registered(program(720, 720));
  const stored = {
    ca: await create(first.policyca),
    leaf: await create(first.policyleaf),
    host: await create(first.policyhost),
    crl: await create(first.policycrl),
  };
  for (const s of Object.values(stored)) {
    expect(s.outputs).not.toHaveProperty("renewBeforeHours");
    expect(s.outputs).not.toHaveProperty("renewAt");
  }
  const edited = await registered(program(100, 2000, false));
  const plans = {
    ca: await plan(stored.ca, edited.policyca.news),
    leaf: await plan(stored.leaf, edited.policyleaf.news),
    host: await plan(stored.host, edited.policyhost.news),
    crl: await plan(stored.crl, edited.policycrl.news),
  };
  // The CLI still shows the edited policy (the same step stores it); the engine plans no update.
  expect(plans.ca.shown).toEqual(["renewBeforeHours"]);
  expect(plans.leaf.shown).toEqual(["autoRenew", "renewBeforeHours"]);
  expect(plans.host.shown).toEqual(["renewBeforeHours"]);
  expect(plans.crl.shown).toEqual(["renewBeforeHours"]);
  for (const [name, p] of Object.entries(plans))
    expect({ name, changes: p.diff.changes }).toEqual({ name, changes: "DIFF_NONE" });
});

test("a CRL's due re-sign shows as `~ nextUpdate`, and the update signs exactly that nextUpdate", async () => {
  const program = () =>
    void new virtpki.CertificateRevocationList("shortcrl", {
      ca,
      nextUpdateHours: 0.002,
      renewBeforeHours: 0.001,
    });
  const r = (await registered(program)).shortcrl;
  const stored = await create(r);
  expect(stored.outputs.nextUpdate).toBe(stored.inputs.nextUpdate);
  const notDue = await plan(stored, r.news);
  expect(notDue.shown).toEqual([]);
  expect(notDue.diff.changes).toBe("DIFF_NONE");

  await untilDue(stored.inputs.nextUpdate, 0.001);
  const due = await plan(stored, r.news);
  expect(due.shown).toEqual(["nextUpdate"]);
  expect(due.diff).toMatchObject({ changes: "DIFF_SOME", replaces: [] });
  const updated = await host.update(stored.id, r.urn, stored.outputs, due.inputs);
  expect(updated.properties.nextUpdate).toBe(due.inputs.nextUpdate);
  expect(updated.properties.crlNumber as number).toBeGreaterThan(stored.outputs.crlNumber as number);
});

test("refresh returns no inputs, and refresh then up is a no-op for every resource, a revoked client too", async () => {
  const program = () => {
    new virtpki.CertificateAuthority("rca", { subject: { commonName: "Refresh CA" }, keySpec: "ecdsa-p256" });
    new virtpki.ServerCertificate("rserver", {
      ca,
      subject: { commonName: "h1.example.com" },
      keySpec: "ecdsa-p256",
    });
    // As VirtualizationPki declares a revoked client (with ignoreChanges: ["ca"], which keeps the old `ca` input).
    new virtpki.ClientCertificate(
      "rrevoked",
      { ca, subject: { commonName: "gone" }, keySpec: "ecdsa-p256", autoRenew: false, revoked: true },
      { ignoreChanges: ["ca"] },
    );
    new virtpki.HostIdentities("rhost", {
      ca,
      subject: { commonName: "hv1.example.com" },
      keySpec: "ecdsa-p256",
      roles: ["client"],
    });
    new virtpki.CertificateRevocationList("rcrl", { ca });
    new virtpki.PreSharedKeys("rpsk", { usernames: ["qemu"] });
  };
  const resources = await registered(program);
  expect(Object.keys(resources).sort()).toEqual(["rca", "rcrl", "rhost", "rpsk", "rrevoked", "rserver"]);
  for (const [name, r] of Object.entries(resources)) {
    const stored = await create(r);
    const read = await host.read(stored.id, r.urn, stored.outputs, stored.inputs);
    expect({ name, inputs: read.inputs }).toEqual({ name, inputs: undefined });
    expect({ name, id: read.id }).toEqual({ name, id: stored.id });
    // RefreshStep: the stored inputs are kept, the outputs are what Read returned.
    const refreshed = { ...stored, outputs: read.properties };
    const next = await plan(refreshed, r.news);
    expect({ name, shown: next.shown, changes: next.diff.changes }).toEqual({
      name,
      shown: [],
      changes: "DIFF_NONE",
    });
  }
});

test("a version-1 state upgrades without a replacement, and stays due-aware", async () => {
  // A version-1 state: the same certificate, with renewal policy among its outputs and no planned end
  // among its inputs (the shapes 4da3d5e wrote: renewBeforeHours and renewAt in the outputs, autoRenew
  // when false; a CRL's renewBeforeHours).
  const v1 = (s: Stored, endKey: "notAfter" | "nextUpdate", renewBeforeHours: number): Stored => {
    const { [endKey]: _planned, ...inputs } = s.inputs;
    void _planned;
    const outputs: Record<string, unknown> = { ...s.outputs, __stateVersion: 1, renewBeforeHours };
    if (endKey === "notAfter") {
      outputs.renewAt = new Date(
        Date.parse(s.outputs.notAfter as string) - renewBeforeHours * 3_600_000,
      ).toISOString();
      if (s.inputs.autoRenew === false) outputs.autoRenew = false;
    }
    return { ...s, inputs, outputs };
  };
  const program = () => {
    new virtpki.CertificateAuthority("v1ca", { subject: { commonName: "V1 CA" }, keySpec: "ecdsa-p256" });
    new virtpki.ClientCertificate("v1leaf", { ca, subject: { commonName: "op" }, keySpec: "ecdsa-p256" });
    new virtpki.ClientCertificate("v1revoked", {
      ca,
      subject: { commonName: "old" },
      keySpec: "ecdsa-p256",
      autoRenew: false,
      revoked: true,
    });
    new virtpki.HostIdentities("v1host", {
      ca,
      subject: { commonName: "hv1.example.com" },
      keySpec: "ecdsa-p256",
      roles: ["qemu"],
    });
    new virtpki.CertificateRevocationList("v1crl", { ca });
  };
  const resources = await registered(program);
  for (const [name, r] of Object.entries(resources)) {
    const crl = name === "v1crl";
    const old = v1(await create(r), crl ? "nextUpdate" : "notAfter", crl ? 240 : 720);
    const next = await plan(old, r.news);
    // No planned end is invented for an old state (check cannot see its stored end): nothing is shown...
    expect({ name, shown: next.shown, changes: next.diff.changes }).toEqual({
      name,
      shown: [],
      changes: "DIFF_NONE",
    });
    // ... and the upgraded state (read, or any later step) drops the policy outputs, keeping the certificate.
    const read = await host.read(old.id, r.urn, old.outputs, old.inputs);
    expect(read.inputs).toBeUndefined();
    expect(read.properties).toMatchObject({ __stateVersion: 2 });
    for (const k of ["renewBeforeHours", "renewAt", "autoRenew"])
      expect(read.properties).not.toHaveProperty(k);
    const { __stateVersion: _v, renewBeforeHours: _r, renewAt: _a, autoRenew: _x, ...kept } = old.outputs;
    void [_v, _r, _a, _x];
    expect(read.properties).toEqual({ ...kept, __stateVersion: 2 });
  }
  // A version-1 leaf inside its window is still renewed (decided from the stored dates), and the engine's
  // re-check of the replacement plans an end, so from then on renewal shows as an input.
  const r = resources.v1leaf;
  const old = v1(await create(r), "notAfter", 720);
  const nearEnd = {
    ...old,
    outputs: { ...old.outputs, notAfter: new Date(Date.now() + 3_600_000).toISOString() },
  };
  const due = await plan(nearEnd, r.news);
  expect(due.diff).toMatchObject({ changes: "DIFF_SOME", replaces: ["notAfter"] });
  const rechecked = await host.check(r.urn, {}, r.news);
  expect(typeof rechecked.inputs.notAfter).toBe("string");
});
