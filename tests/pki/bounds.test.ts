/**
 * Bounded work on any input: pathological inputs get a clear error (or their result) quickly, and every
 * numeric input is range-checked at check time. The time bound is generous (2 s); what it catches is
 * work that grows with the square of the input or exponentially (minutes to hours on these inputs).
 */
import { pki } from "../../index";
import { certificate, certificateAuthority, preSharedKeys, revocationList } from "../../provider/handlers";
import { issuerChanged } from "../../provider/handlers/common";
import { pemBlocks } from "../../provider/pki/asn1";
import { planInstall } from "../../components/install/layouts";

const BOUND_MS = 2000;

/** Runs `f` and returns what it threw (or undefined) and how long it took. */
function timed(f: () => unknown): { ms: number; error?: Error; value?: unknown } {
  const start = Date.now();
  try {
    const value = f();
    return { ms: Date.now() - start, value };
  } catch (e) {
    return { ms: Date.now() - start, error: e as Error };
  }
}

let ca: pki.CertificateAuthority;
beforeAll(async () => {
  ca = await pki.createCertificateAuthority({ subject: { commonName: "Bounds CA" }, keySpec: "ecdsa-p256" });
});

describe("certtool templates", () => {
  test("a 10 MB one-word template is refused for its size, quickly", () => {
    const template = "x".repeat(10 * 1024 * 1024);
    const r = timed(() => pki.parseCerttoolTemplate(template));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect(r.error).toBeInstanceOf(pki.PkiError);
    expect(r.error?.message).toBe(
      `template: the template is ${template.length} characters long; at most ${pki.MAX_TEMPLATE_CHARS} are accepted`,
    );
    const c = timed(() =>
      certificate.check({}, { ca: { certPem: ca.certPem, keyPem: ca.keyPem }, profile: "server", template }),
    );
    expect(c.ms).toBeLessThan(BOUND_MS);
    expect((c.value as { failures?: unknown[] }).failures).toEqual([
      expect.objectContaining({ property: "template", reason: expect.stringContaining("at most 65536") }),
    ]);
  });

  test("a one-word template just under the limit gets its unknown-keyword error quickly (no edit distance on it)", () => {
    // 64 KiB - 1 characters: 14 s in the edit distance before the suggester was bounded.
    const template = "y".repeat(64 * 1024 - 1);
    const r = timed(() => pki.parseCerttoolTemplate(template));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect(r.error?.message).toMatch(/^template:1: unknown keyword "y{20}/);
    expect(template.length).toBeLessThan(pki.MAX_TEMPLATE_CHARS);
  });

  test("a misspelt keyword still gets its suggestion", () => {
    expect(() => pki.parseCerttoolTemplate("expiraton_days = 3\n")).toThrow(
      'did you mean "expiration_days"?',
    );
  });
});

describe("PEM scanning", () => {
  const headers = "-----BEGIN A-----\n".repeat(100_000);

  test("100k unterminated BEGIN lines are scanned in linear time", () => {
    const r = timed(() => pemBlocks(headers));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect(r.value).toEqual([]);
    const mixed = `${headers}-----BEGIN B-----\nQUJD\n-----END B-----\n`;
    const m = timed(() => pemBlocks(mixed));
    expect(m.ms).toBeLessThan(BOUND_MS);
    expect(m.value).toEqual([{ label: "B", der: Buffer.from("ABC") }]);
  });

  test("100k BEGIN CERTIFICATE lines: certificate inputs are refused for size, and diff compares quickly", () => {
    const many = "-----BEGIN CERTIFICATE-----\n".repeat(100_000);
    const r = timed(() => pki.inspectCertificate(many));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect(r.error?.message).toBe(
      `certPem: the PEM text is ${many.length} characters long; at most ${pki.MAX_PEM_CHARS} are accepted`,
    );
    const c = timed(() => revocationList.check({}, { ca: { certPem: many, keyPem: ca.keyPem } }));
    expect(c.ms).toBeLessThan(BOUND_MS);
    expect((c.value as { failures?: { property: string }[] }).failures?.[0].property).toBe(""); // ca carries a key: never named
    const d = timed(() => issuerChanged(ca.certPem, { certPem: many }));
    expect(d.ms).toBeLessThan(BOUND_MS);
    expect(d.value).toBe(true);
  });

  test("verifyChain still reads a trust bundle the size of a system CA bundle (about 200 KiB)", async () => {
    const others = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        pki.createCertificateAuthority({ subject: { commonName: `Other ${i}` }, keySpec: "ecdsa-p256" }),
      ),
    );
    let bundle = "";
    while (bundle.length < 200 * 1024) bundle += others.map((o) => o.certPem).join("");
    bundle += ca.certPem;
    expect(bundle.length).toBeGreaterThan(pki.MAX_PEM_CHARS);
    const leaf = await pki.issueCertificate({
      issuer: ca,
      keySpec: "ecdsa-p256",
      subject: { commonName: "v.example" },
    });
    const r = timed(() => pki.verifyChain(leaf.certPem, bundle));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect((r.value as pki.ChainVerification).ok).toBe(true);
  });

  test("the linear scanner finds the same blocks as the PEM regex it replaced", () => {
    const reference = (text: string) => {
      const out: { label: string; der: Buffer }[] = [];
      const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
      for (let m = re.exec(text); m; m = re.exec(text)) {
        out.push({ label: m[1], der: Buffer.from(m[2].replace(/\s+/g, ""), "base64") });
      }
      return out;
    };
    const parts = [
      "-----BEGIN A-----",
      "-----END A-----",
      "-----BEGIN B-----",
      "-----END B-----",
      "-----BEGIN A B-----",
      "-----END A B-----",
      "------BEGIN A-----",
      "-----BEGIN ",
      "-----END ",
      "-----",
      "QUJD",
      "A",
      "-",
      "\n",
    ];
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let n = 0; n < 20_000; n++) {
      let text = "";
      for (let i = rand(9); i > 0; i--) text += parts[rand(parts.length)];
      expect([text, pemBlocks(text)]).toEqual([text, reference(text)]);
    }
    expect(pemBlocks(ca.chainPem).map((b) => b.label)).toEqual(["CERTIFICATE"]);
  });
});

describe("keys.psk", () => {
  // The old single regex backtracked exponentially: 99 characters of this shape took 5 s.
  const evil = `a:${"0000000:".repeat(40)}!`;

  test("the install layout's keys.psk shape check is linear", () => {
    const r = timed(() => planInstall([{ kind: "qemu-psk", dir: "/etc/pki/qemu-psk", keysPsk: evil }]));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect(r.error?.message).toMatch(/keysPsk: is required: give keys.psk content, lines of username:hexkey/);
    expect(pki.isKeysPskText("qemu:00ff\nother:0a0b\n")).toBe(true);
    expect(pki.isKeysPskText("qemu:00ff\n\n")).toBe(false);
    expect(pki.isKeysPskText("qemu:00ffother:0a0b\n")).toBe(false);
  });

  test("the keys.psk parser is linear and bounded in size", () => {
    const r = timed(() => pki.parsePreSharedKeys(evil));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect(r.error?.message).toBe("keysPsk:1: expected username:hexkey");
    const big = "u:00\n".repeat(pki.MAX_PSK_TEXT_CHARS / 4);
    const b = timed(() => pki.parsePreSharedKeys(big));
    expect(b.ms).toBeLessThan(BOUND_MS);
    expect(b.error?.message).toMatch(/^keysPsk: the keys.psk text is \d+ characters long; at most 1048576/);
  });

  test("PreSharedKeys refuses more than MAX_PSK_USERS users at check", () => {
    const usernames = Array.from({ length: pki.MAX_PSK_USERS + 1 }, (_, i) => `u${i}`);
    const r = timed(() => preSharedKeys.check({}, { usernames }));
    expect(r.ms).toBeLessThan(BOUND_MS);
    expect((r.value as { failures?: unknown[] }).failures).toEqual([
      {
        property: "usernames",
        reason: `usernames: lists 4097 users; at most ${pki.MAX_PSK_USERS} are accepted in one keys.psk`,
      },
    ]);
  });
});

describe("numeric inputs are range-checked at check time", () => {
  const caCreds = () => ({ certPem: ca.certPem, keyPem: ca.keyPem });
  const failuresOf = (r: { failures?: { property: string; reason: string }[] }) => r.failures ?? [];

  test.each([
    [
      "CA validityHours 1e12",
      { subject: { commonName: "x" }, validityHours: 1e12 },
      "validityHours",
      "at most 878400 hours",
    ],
    [
      "CA validityHours 1e8 (notAfter in year 13000)",
      { subject: { commonName: "x" }, validityHours: 1e8 },
      "validityHours",
      "at most 878400 hours",
    ],
    [
      "CA renewBeforeHours",
      { subject: { commonName: "x" }, renewBeforeHours: 1e12 },
      "renewBeforeHours",
      "at most",
    ],
    [
      "CA maxValidityHours",
      { subject: { commonName: "x" }, maxValidityHours: -1 },
      "maxValidityHours",
      "greater than 0",
    ],
    [
      "CA template expiration_days",
      { template: "cn = x\nca\nexpiration_days = 2147483647\n" },
      "template",
      "expiration_days * 24 must be at most 878400 hours",
    ],
  ])("%s", (_name, news, property, reason) => {
    const r = certificateAuthority.check({}, news as never);
    expect(r.inputs).toBeUndefined();
    expect(failuresOf(r)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ property, reason: expect.stringContaining(reason) }),
      ]),
    );
  });

  test.each([
    ["leaf validityHours 1e12", { validityHours: 1e12 }, "validityHours", "at most 878400 hours"],
    ["leaf renewBeforeHours", { renewBeforeHours: 1e9 }, "renewBeforeHours", "at most 878400 hours"],
    [
      "leaf maxValidityHours",
      { maxValidityHours: Infinity },
      "maxValidityHours",
      "must be a number of hours",
    ],
    [
      "leaf template expiration_days",
      { subject: undefined, template: "cn = h.example\ntls_www_server\nexpiration_days = 100000000\n" },
      "template",
      "expiration_days * 24 must be at most",
    ],
  ])("%s", (_name, over, property, reason) => {
    const r = certificate.check({}, {
      ca: caCreds(),
      profile: "server",
      subject: { commonName: "h.example" },
      ...over,
    } as never);
    expect(r.inputs).toBeUndefined();
    expect(failuresOf(r)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ property, reason: expect.stringContaining(reason) }),
      ]),
    );
  });

  test("CRL nextUpdateHours and the revocation count", () => {
    const r = revocationList.check({}, { ca: caCreds(), nextUpdateHours: 1e12 });
    expect(failuresOf(r)).toEqual([
      expect.objectContaining({
        property: "nextUpdateHours",
        reason: expect.stringContaining("at most 878400"),
      }),
    ]);
    const revoked = Array.from({ length: pki.MAX_CRL_ENTRIES + 1 }, (_, i) => ({
      serialNumber: (i + 1).toString(16),
    }));
    const t = timed(() => revocationList.check({}, { ca: caCreds(), revoked }));
    expect(t.ms).toBeLessThan(BOUND_MS);
    expect(failuresOf(t.value as never)).toEqual([
      expect.objectContaining({ property: "revoked", reason: expect.stringContaining("at most 100000") }),
    ]);
  });

  test("what passes check creates: the longest accepted CA validity gives a sane notAfter", async () => {
    const news = { subject: { commonName: "Long" }, keySpec: "ecdsa-p256", validityHours: pki.MAX_HOURS };
    const checked = certificateAuthority.check({}, news);
    expect(checked.failures).toBeUndefined();
    const created = await certificateAuthority.create(checked.inputs as never);
    const years = (Date.parse(created.outs.notAfter as string) - Date.now()) / (365.25 * 24 * 3600_000);
    expect(years).toBeGreaterThan(99);
    expect(years).toBeLessThan(101);
  });
});
