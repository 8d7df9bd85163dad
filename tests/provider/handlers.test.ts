/** The pure check/diff logic of every resource, without the engine: failures, normalisation, replace vs update, renewal. */
import { X509Certificate } from "node:crypto";
import {
  certificate,
  certificateAuthority,
  preSharedKeys,
  revocationList,
  UNKNOWN,
} from "../../provider/handlers";
import { pki } from "../../index";

let ca: { id: string; outs: Record<string, unknown> };
/** The CA's stored inputs: what its check returned on create (the engine's olds of every later check). */
let caInputs: Record<string, unknown>;
let caCreds: { certPem: string; keyPem: string };
const HOUR = 3_600_000;
beforeAll(async () => {
  caInputs = certificateAuthority.check(
    {},
    { subject: { commonName: "Handler CA" }, keySpec: "ecdsa-p256" },
  ).inputs!;
  ca = await certificateAuthority.create(caInputs as never);
  caCreds = { certPem: ca.outs.certPem as string, keyPem: ca.outs.keyPem as string };
});

describe("CertificateAuthority check", () => {
  test.each([
    [
      { subject: { commonName: "x" }, template: "cn = x\nca\n" },
      "template",
      "give either template or subject",
    ],
    [{}, "subject", "a CA needs a subject"],
    [{ subject: { commonName: "x" }, keySpec: "dsa" }, "keySpec", 'unknown key spec "dsa"'],
    [
      { subject: { commonName: "x" }, validityHours: 24, renewBeforeHours: 24 },
      "renewBeforeHours",
      "is not shorter than validityHours",
    ],
    [{ template: "cn = x\n" }, "template", "must contain the `ca` keyword"],
    [{ template: "cn = x\nca\nbogus\n" }, "template", "template:3"],
    [{ subject: { commonName: "x" }, pathLength: -1 }, "pathLength", "whole number from 0 to 16"],
  ])("%j fails on %s", (news, property, reason) => {
    const r = certificateAuthority.check({}, news as never);
    expect(r.inputs).toBeUndefined();
    expect(r.failures).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ property, reason: expect.stringContaining(reason) }),
      ]),
    );
  });

  test("fills defaults, normalises the subject and plans the end", () => {
    const now = new Date("2026-03-01T10:00:00.400Z");
    expect(
      certificateAuthority.check({}, { subject: { commonName: " Libvirt Project ", country: "gb" } }, now)
        .inputs,
    ).toEqual({
      subject: { commonName: "Libvirt Project", country: "GB" },
      keySpec: "rsa-3072",
      validityHours: 87600,
      renewBeforeHours: 720,
      pathLength: 0,
      notAfter: new Date(Date.parse("2026-03-01T10:00:00Z") + 87600 * HOUR).toISOString(),
    });
  });

  test("create issues exactly the planned end; the outputs hold no renewal policy", () => {
    expect(ca.outs.notAfter).toBe(caInputs.notAfter);
    expect(ca.outs).not.toHaveProperty("renewBeforeHours");
    expect(ca.outs).not.toHaveProperty("renewAt");
  });

  test("unknown values in preview are not parsed", () => {
    const r = certificateAuthority.check(
      {},
      { subject: UNKNOWN as never, keySpec: UNKNOWN, validityHours: UNKNOWN as never },
    );
    expect(r.failures).toBeUndefined();
  });
});

describe("CertificateAuthority diff", () => {
  /** The program's inputs, checked as the engine checks them: against the stored inputs. */
  const inputs = (over: Record<string, unknown> = {}, olds = caInputs, now?: Date) =>
    certificateAuthority.check(
      olds,
      { subject: { commonName: "Handler CA" }, keySpec: "ecdsa-p256", ...over },
      now,
    ).inputs!;
  test("no change, no diff", () => {
    expect(certificateAuthority.diff(ca.id, ca.outs, inputs() as never)).toEqual({ changes: false });
  });
  test("a subject change replaces; a renewal window change is no change at all", () => {
    expect(
      certificateAuthority.diff(ca.id, ca.outs, inputs({ subject: { commonName: "Other" } }) as never),
    ).toEqual({
      changes: true,
      replaces: ["subject"],
    });
    // A "same" step: the new window is stored with the inputs, the outputs (certPem) stay known in a preview.
    const wider = inputs({ renewBeforeHours: 100 });
    expect(wider.notAfter).toBe(caInputs.notAfter);
    expect(certificateAuthority.diff(ca.id, ca.outs, wider as never)).toEqual({ changes: false });
  });
  test("inside the renewal window check plans a new end, and diff replaces it listing notAfter", () => {
    const end = new Date(Date.now() + HOUR).toISOString();
    const nearEnd = { ...ca.outs, notAfter: end };
    const news = inputs({}, { ...caInputs, notAfter: end });
    expect(news.notAfter).not.toBe(end);
    expect(Date.parse(news.notAfter as string)).toBeGreaterThan(Date.now() + 87000 * HOUR);
    expect(certificateAuthority.diff(ca.id, nearEnd, news as never)).toEqual({
      changes: true,
      replaces: ["notAfter"],
    });
    // The same window 30 days + 1 hour before the end: not due, the end is kept, nothing changes.
    const later = new Date(Date.now() + 721 * HOUR).toISOString();
    const kept = inputs({}, { ...caInputs, notAfter: later });
    expect(kept.notAfter).toBe(later);
    expect(certificateAuthority.diff(ca.id, { ...ca.outs, notAfter: later }, kept as never)).toEqual({
      changes: false,
    });
  });
  test("state of an unknown future version is refused with a clear message", () => {
    expect(() =>
      certificateAuthority.diff(ca.id, { ...ca.outs, __stateVersion: 99 }, inputs() as never),
    ).toThrow("state version 99 is newer than this pulumi-virt-pki");
  });
});

describe("certificate check and diff", () => {
  const base = () => ({
    ca: caCreds,
    profile: "server" as const,
    subject: { commonName: "host1.example.com" },
    keySpec: "ecdsa-p256",
  });

  test.each([
    [{ ipAddresses: ["300.1.1.1"] }, "ipAddresses", '"300.1.1.1" is not an IPv4 or IPv6 address'],
    [{ dnsNames: ["bad..name"] }, "dnsNames", "is not a valid DNS name"],
    [
      { template: "cn = h\ntls_www_server\nfoo\n", subject: undefined },
      "template",
      'template:3: unknown keyword "foo"',
    ],
    [{ template: "cn = h\ntls_www_server\n" }, "subject", "give either template or subject"],
    [{ validityHours: 100000 }, "validityHours", "after its CA"],
    [{ validityHours: 10, renewBeforeHours: 20 }, "renewBeforeHours", "is not shorter than validityHours"],
    [{ csrPem: "x" }, "keySpec", "a CSR brings its own key"],
    [{ ca: undefined }, "", "ca: the issuing CA is required"],
  ])("%j fails on %s", (over, property, reason) => {
    const r = certificate.check({}, { ...base(), ...over } as never);
    expect(r.failures).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ property, reason: expect.stringContaining(reason) }),
      ]),
    );
  });

  test("SANs are normalised so cosmetic edits do not re-issue", async () => {
    const first = certificate.check(
      {},
      { ...base(), dnsNames: ["Host1", "host1.example.com"], ipAddresses: ["2001:DB8::1", "10.0.0.1"] },
    ).inputs!;
    const created = await certificate.create(first as never);
    const cosmetic = certificate.check(first, {
      ...base(),
      dnsNames: ["host1.EXAMPLE.com.", "host1", "host1"],
      ipAddresses: ["10.0.0.1", "2001:db8:0::1"],
    }).inputs!;
    expect(cosmetic.dnsNames).toEqual(["host1", "host1.example.com"]);
    expect(certificate.diff(created.id, created.outs, cosmetic as never)).toEqual({ changes: false });
    const added = certificate.check(first, {
      ...base(),
      dnsNames: ["host1", "host1.example.com", "h1"],
      ipAddresses: ["10.0.0.1", "2001:db8::1"],
    }).inputs!;
    expect(certificate.diff(created.id, created.outs, added as never)).toEqual({
      changes: true,
      replaces: ["dnsNames"],
    });
    expect(created.outs).not.toHaveProperty("ca");
    expect(JSON.stringify(created.outs)).not.toContain(caCreds.keyPem.slice(30, 80));
  });

  test("truncateToIssuer is policy for the next issuance: turning it on or off re-issues nothing", async () => {
    const inputs = certificate.check({}, base()).inputs!;
    const created = await certificate.create(inputs as never);
    expect(created.outs).not.toHaveProperty("truncateToIssuer");
    for (const truncateToIssuer of [true, false]) {
      const news = certificate.check(inputs, { ...base(), truncateToIssuer }).inputs!;
      expect(news.notAfter).toBe(inputs.notAfter);
      expect(certificate.diff(created.id, created.outs, news as never)).toEqual({ changes: false });
    }
    // Where it matters, at issuance: a leaf longer than its CA ends with the CA instead of failing.
    const short = await pki.createCertificateAuthority({
      subject: { commonName: "Short CA" },
      keySpec: "ecdsa-p256",
      validityHours: 48,
    });
    expect(certificate.check({}, { ...base(), ca: short }).failures).toEqual([
      expect.objectContaining({ property: "validityHours", reason: expect.stringContaining("after its CA") }),
    ]);
    const truncated = certificate.check({}, { ...base(), ca: short, truncateToIssuer: true }).inputs!;
    expect(Date.parse(truncated.notAfter as string)).toBe(
      Date.parse(new X509Certificate(short.certPem).validTo),
    );
  });

  test("a new CA certificate replaces the leaf, listed as ca", async () => {
    const inputs = certificate.check({}, base()).inputs!;
    const created = await certificate.create(inputs as never);
    const otherCa = await pki.createCertificateAuthority({
      subject: { commonName: "Rotated CA" },
      keySpec: "ecdsa-p256",
    });
    const news = certificate.check(inputs, { ...base(), ca: otherCa }).inputs!;
    expect(certificate.diff(created.id, created.outs, news as never)).toEqual({
      changes: true,
      replaces: ["ca"],
    });
    expect(certificate.diff(created.id, created.outs, { ...inputs, ca: UNKNOWN } as never)).toEqual({
      changes: true,
      replaces: ["ca"],
    });
    // Same CA certificate, but its key still unknown in a preview: nothing to re-issue.
    expect(
      certificate.diff(created.id, created.outs, {
        ...inputs,
        ca: { certPem: caCreds.certPem, keyPem: UNKNOWN },
      } as never),
    ).toEqual({ changes: false });
  });

  test("validityHours 2 with renewBeforeHours 2 is refused at check; renewal is due once the window is reached", async () => {
    expect(
      certificate.check({}, { ...base(), validityHours: 2, renewBeforeHours: 2 }).failures?.[0].property,
    ).toBe("renewBeforeHours");
    const program = (over: Record<string, unknown> = {}) => ({
      ...base(),
      validityHours: 2,
      renewBeforeHours: 1,
      ...over,
    });
    const inputs = certificate.check({}, program()).inputs!;
    const created = await certificate.create(inputs as never);
    expect(created.outs.notAfter).toBe(inputs.notAfter);
    expect(created.outs).not.toHaveProperty("renewAt");
    expect(created.outs).not.toHaveProperty("renewBeforeHours");
    expect(certificate.diff(created.id, created.outs, inputs as never)).toEqual({ changes: false });
    // A new window that is not yet reached: the end is kept, no change (a "same" step).
    const wider = certificate.check(inputs, program({ renewBeforeHours: 1.99 })).inputs!;
    expect(wider.notAfter).toBe(inputs.notAfter);
    expect(certificate.diff(created.id, created.outs, wider as never)).toEqual({ changes: false });
    // An hour and a half later the 1 h window is reached: a fresh end, a replacement listing notAfter.
    const later = new Date(Date.now() + 1.5 * HOUR);
    const due = certificate.check(inputs, program(), { now: later }).inputs!;
    expect(Date.parse(due.notAfter as string)).toBe(Math.floor(later.getTime() / 1000) * 1000 + 2 * HOUR);
    expect(certificate.diff(created.id, created.outs, due as never)).toEqual({
      changes: true,
      replaces: ["notAfter"],
    });
    // autoRenew: false (a revoked certificate): inside the window the end is kept, and nothing changes.
    const frozen = certificate.check(inputs, program({ autoRenew: false }), { now: later }).inputs!;
    expect(frozen.notAfter).toBe(inputs.notAfter);
    expect(certificate.diff(created.id, created.outs, frozen as never)).toEqual({ changes: false });
  });

  test("a client or host subject libvirt would read as a glob fails check, given directly or in a CSR", async () => {
    const star = certificate.check({}, {
      ca: caCreds,
      profile: "client",
      subject: { commonName: "*" },
    } as never);
    expect(star.inputs).toBeUndefined();
    expect(star.failures).toEqual([
      expect.objectContaining({
        property: "subject",
        reason: expect.stringMatching(/^subject\.commonName: must not contain "\*".*tls_allowed_dn_list/),
      }),
    ]);
    const keyPem = await pki.generatePrivateKey("ecdsa-p256");
    // Every field of a CSR's subject is checked, not only its CN.
    const csrPem = pki.createCsr({
      keyPem,
      subject: { organization: "Any?", commonName: "host9.example.com" },
    });
    const r = certificate.check({}, { ca: caCreds, profile: "server+client", csrPem } as never);
    expect(r.failures).toEqual([
      expect.objectContaining({
        property: "",
        reason: expect.stringMatching(/^csrPem\.subject\.organization: must not contain "\?"/),
      }),
    ]);
  });

  test("CSR mode keeps no private key in state", async () => {
    const keyPem = await pki.generatePrivateKey("ecdsa-p256");
    const csrPem = pki.createCsr({ keyPem, subject: { commonName: "host9.example.com" } });
    const inputs = certificate.check({}, { ca: caCreds, profile: "server", csrPem }).inputs!;
    const created = await certificate.create(inputs as never);
    expect(created.outs.keyPem).toBeUndefined();
    expect(JSON.stringify(created.outs)).not.toMatch(/PRIVATE KEY/);
    expect(pki.certificateMatchesKey(created.outs.certPem as string, keyPem)).toBe(true);
  });
});

describe("CRL and PSK", () => {
  test("a revocation changes the CRL in place with a higher number; nearing nextUpdate re-signs it in place", async () => {
    const leaf = await pki.issueCertificate({
      issuer: caCreds,
      keySpec: "ecdsa-p256",
      profile: "client",
      subject: { commonName: "op" },
    });
    const inputs = revocationList.check({}, { ca: caCreds }).inputs!;
    const created = await revocationList.create(inputs as never);
    expect(revocationList.diff(created.id, created.outs, inputs as never)).toEqual({ changes: false });
    // The same CA given with its chain appended is the same CA.
    const withChain = { ...inputs, ca: { ...caCreds, certPem: caCreds.certPem + caCreds.certPem } };
    expect(revocationList.diff(created.id, created.outs, withChain as never)).toEqual({ changes: false });
    const revoked = revocationList.check(
      {},
      { ca: caCreds, revoked: [{ certPem: leaf.certPem, reason: "keyCompromise" }] },
    ).inputs!;
    // notAfter is read from the certificate: the CRL keeps the entry until then.
    expect(revoked.revoked).toEqual([
      { serialNumber: leaf.serialNumber, reason: "keyCompromise", notAfter: leaf.notAfter },
    ]);
    expect(revocationList.diff(created.id, created.outs, revoked as never)).toEqual({ changes: true });
    const updated = await revocationList.update(created.id, created.outs, revoked as never);
    expect(updated.outs.crlNumber as number).toBeGreaterThan(created.outs.crlNumber as number);
    expect(pki.inspectCrl(updated.outs.crlPem as string).revoked.map((r) => r.serialNumber)).toEqual([
      leaf.serialNumber,
    ]);
    expect(updated.outs.nextUpdate).toBe(revoked.nextUpdate);
    // Not due: the planned nextUpdate is kept, and a new re-sign window alone changes nothing.
    const program = { ca: caCreds, revoked: [{ certPem: leaf.certPem, reason: "keyCompromise" as const }] };
    const again = revocationList.check(revoked, { ...program, renewBeforeHours: 100 }).inputs!;
    expect(again.nextUpdate).toBe(revoked.nextUpdate);
    expect(revocationList.diff(created.id, updated.outs, again as never)).toEqual({ changes: false });
    // One hour before nextUpdate (inside the 240 h window): check plans a new nextUpdate, shown as changed.
    const soon = new Date(Date.now() + HOUR).toISOString();
    const stale = { ...updated.outs, nextUpdate: soon };
    const resign = revocationList.check({ ...revoked, nextUpdate: soon }, program).inputs!;
    expect(Date.parse(resign.nextUpdate as string)).toBeGreaterThan(Date.now() + 719 * HOUR);
    // An update, not a replacement: a replacement would start from the inputs and lose the CRL's ledger.
    expect(revocationList.diff(created.id, stale, resign as never)).toEqual({ changes: true });
    const resigned = await revocationList.update(created.id, stale, resign as never);
    expect(resigned.outs.nextUpdate).toBe(resign.nextUpdate);
    expect(
      revocationList.check({}, { ca: caCreds, revoked: [{ serialNumber: "zz" }] }).failures?.[0],
    ).toEqual({
      property: "revoked",
      reason: 'revoked[0].serialNumber: "zz" is not a hex serial number',
    });
  });

  test("adding a PSK user keeps the other keys", async () => {
    const created = await preSharedKeys.create(
      preSharedKeys.check({}, { usernames: ["qemu"] }).inputs as never,
    );
    const news = preSharedKeys.check({}, { usernames: ["qemu", "ops"] }).inputs!;
    expect(preSharedKeys.diff(created.id, created.outs, news as never)).toEqual({ changes: true });
    const updated = await preSharedKeys.update(created.id, created.outs, news as never);
    expect((updated.outs.keysPsk as string).startsWith(created.outs.keysPsk as string)).toBe(true);
    expect(preSharedKeys.check({}, { usernames: ["a b"] }).failures?.[0].property).toBe("usernames");
  });

  test("read returns the state and no inputs (the engine keeps the stored ones), for every resource", async () => {
    const crl = await revocationList.create(revocationList.check({}, { ca: caCreds }).inputs as never);
    const psk = await preSharedKeys.create(preSharedKeys.check({}, { usernames: ["qemu"] }).inputs as never);
    const leaf = await certificate.create(
      certificate.check(
        {},
        { ca: caCreds, profile: "client", subject: { commonName: "op" }, keySpec: "ecdsa-p256" },
      ).inputs as never,
    );
    const reads = {
      ca: [await certificateAuthority.read(ca.id, ca.outs), ca],
      leaf: [await certificate.read(leaf.id, leaf.outs), leaf],
      crl: [await revocationList.read(crl.id, crl.outs), crl],
      psk: [await preSharedKeys.read(psk.id, psk.outs), psk],
    } as const;
    for (const [read, created] of Object.values(reads)) {
      expect(read).toEqual({ id: created.id, props: created.outs });
      expect(read).not.toHaveProperty("inputs");
    }
  });
});

describe("check failures on inputs that carry a private key", () => {
  // The engine prints a named property's input value in clear text (pulumi v3.248.0 step_generator.go
  // issueCheckFailures), so these failures have an empty property and name the input in the reason.
  let other: { certPem: string; keyPem: string };
  beforeAll(async () => {
    const b = await certificateAuthority.create({
      subject: { commonName: "Other CA" },
      keySpec: "ecdsa-p256",
    });
    other = { certPem: b.outs.certPem as string, keyPem: b.outs.keyPem as string };
  });
  const mixed = () => ({ certPem: caCreds.certPem, keyPem: other.keyPem });
  const expectUnnamed = (failures: { property: string; reason: string }[] | undefined, reason: string) => {
    expect(failures).toEqual([{ property: "", reason }]);
    expect(JSON.stringify(failures)).not.toContain(other.keyPem.split("\n")[1]);
  };
  const mismatch = "the private key does not match the CA certificate";

  test("a leaf's ca", () => {
    const r = certificate.check({}, {
      ca: mixed(),
      profile: "server",
      subject: { commonName: "h" },
      keySpec: "ecdsa-p256",
    } as never);
    expectUnnamed(r.failures, `ca.keyPem: ${mismatch}`);
  });

  test("a CRL's ca", () => {
    expectUnnamed(
      revocationList.check({}, { ca: mixed(), revoked: [] } as never).failures,
      `ca.keyPem: ${mismatch}`,
    );
  });

  test("an intermediate's parent, and a clash with import", () => {
    expectUnnamed(
      certificateAuthority.check({}, { subject: { commonName: "I" }, parent: mixed() } as never).failures,
      `parent.keyPem: ${mismatch}`,
    );
    expectUnnamed(
      certificateAuthority.check({}, { import: caCreds, parent: caCreds } as never).failures,
      "parent: an imported CA is used as it is; remove parent or import",
    );
  });

  test("an imported CA", () => {
    const r = certificateAuthority.check({}, { import: mixed() } as never);
    expect(r.failures).toHaveLength(1);
    expect(r.failures![0].property).toBe("");
    expect(r.failures![0].reason).toMatch(/^import\.keyPem: /);
  });

  test("other inputs are still named", () => {
    const r = certificate.check({}, {
      ca: caCreds,
      profile: "server",
      subject: { commonName: "h" },
      keySpec: "dsa",
    } as never);
    expect(r.failures).toEqual([
      { property: "keySpec", reason: expect.stringContaining('unknown key spec "dsa"') },
    ]);
  });
});
