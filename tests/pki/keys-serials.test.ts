/** Keys (generation off the event loop, PEM encodings), serial numbers, validity and renewal decisions. */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { pki } from "../../index";
import { removeDir, run, tempDir } from "../support/programs";

test.each(pki.KEY_SPECS)(
  "%s keys are generated as PKCS#8 PEM that openssl reads as that type",
  async (spec) => {
    const pem = await pki.generatePrivateKey(spec);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const r = await run("openssl", ["pkey", "-noout", "-text"], { input: pem });
    expect(r.code).toBe(0);
    const expected: Record<pki.KeySpec, RegExp> = {
      "rsa-2048": /Private-Key: \(2048 bit/,
      "rsa-3072": /Private-Key: \(3072 bit/,
      "rsa-4096": /Private-Key: \(4096 bit/,
      "ecdsa-p256": /NIST CURVE: P-256/,
      "ecdsa-p384": /NIST CURVE: P-384/,
      ed25519: /ED25519 Private-Key/,
    };
    expect(r.stdout).toMatch(expected[spec]);
  },
);

test.each(pki.KEY_SPECS)(
  "a %s leaf made with a fresh key holds that key's public half, as openssl derives it",
  async (spec) => {
    const ca = await pki.createCertificateAuthority({
      subject: { commonName: "spki" },
      keySpec: "ecdsa-p256",
    });
    const leaf = await pki.issueCertificate({
      issuer: ca,
      keySpec: spec,
      subject: { commonName: "h.example.org" },
    });
    expect(leaf.keySpec).toBe(spec);
    const fromKey = await run("openssl", ["pkey", "-pubout"], { input: leaf.keyPem! });
    const fromCert = await run("openssl", ["x509", "-noout", "-pubkey"], { input: leaf.certPem });
    expect(fromKey.code).toBe(0);
    expect(fromCert.code).toBe(0);
    expect(fromCert.stdout).toBe(fromKey.stdout);
    expect(pki.certificateMatchesKey(leaf.certPem, leaf.keyPem!)).toBe(true);
  },
);

test.each(pki.KEY_SPECS)(
  "%s keys encoded for an issuance are byte for byte what OpenSSL writes",
  async (spec) => {
    const count = spec.startsWith("rsa") ? 1 : 64; // EC: d, x or y with leading zero bytes come up within 64 keys
    for (let i = 0; i < count; i++) {
      const { keyPem, spki } = await pki.generateEncodedKey(spec);
      const key = createPrivateKey(keyPem);
      expect(pki.keySpecOf(key)).toBe(spec);
      expect(key.export({ format: "pem", type: "pkcs8" })).toBe(keyPem);
      expect(createPublicKey(key).export({ format: "der", type: "spki" }).equals(spki)).toBe(true);
    }
  },
);

test("the default key is RSA 3072", async () => {
  const ca = await pki.createCertificateAuthority({ subject: { commonName: "default key" } });
  expect(ca.keySpec).toBe("rsa-3072");
});

test("key generation runs off the event loop: timers fire while a 4096-bit key is being made", async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const keyPromise = pki.generatePrivateKey("rsa-4096");
  // Wait for the key while counting how often the event loop ran a timer callback meanwhile.
  await keyPromise;
  clearInterval(timer);
  expect(ticks).toBeGreaterThan(0);
});

test("PKCS#1 and SEC1 keys made by openssl are accepted and re-exported as PKCS#8", async () => {
  const dir = await tempDir("virt-pki-keys-");
  try {
    const rsa = await run("openssl", ["genrsa", "-traditional", "2048"]);
    expect(rsa.stdout).toContain("BEGIN RSA PRIVATE KEY");
    const ec = await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout"]);
    expect(ec.stdout).toContain("BEGIN EC PRIVATE KEY");
    for (const [pem, spec] of [
      [rsa.stdout, "rsa-2048"],
      [ec.stdout, "ecdsa-p256"],
    ] as const) {
      const key = pki.loadPrivateKey(pem);
      expect(pki.keySpecOf(key)).toBe(spec);
      const ca = await pki.createCertificateAuthority({
        subject: { commonName: `imported ${spec}` },
        keyPem: pem,
      });
      expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
      expect(pki.certificateMatchesKey(ca.certPem, pem)).toBe(true);
    }
  } finally {
    await removeDir(dir);
  }
});

test("serials are positive, 16 octets, unique, and ordered by issuance time", () => {
  const t0 = new Date("2026-11-23T10:00:00Z");
  const serials = Array.from({ length: 2000 }, () => pki.newSerialNumber(t0));
  expect(new Set(serials).size).toBe(serials.length);
  for (const s of serials) {
    expect(s).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(pki.serialIssuedAt(s)).toEqual(t0);
  }
  const later = pki.newSerialNumber(new Date(t0.getTime() + 1));
  expect(serials.every((s) => pki.compareSerials(s, later) < 0)).toBe(true);
  const cutoff = pki.minimumSerialForTime(new Date(t0.getTime() + 1));
  expect(serials.every((s) => pki.compareSerials(s, cutoff) < 0)).toBe(true);
  expect(pki.compareSerials(later, cutoff)).toBeGreaterThanOrEqual(0);
});

test("serials written into certificates read back through openssl", async () => {
  const ca = await pki.createCertificateAuthority({
    subject: { commonName: "serial" },
    keySpec: "ecdsa-p256",
  });
  const r = await run("openssl", ["x509", "-noout", "-serial"], { input: ca.certPem });
  expect(r.stdout.trim()).toBe(`serial=${ca.serialNumber.toUpperCase()}`);
});

test("validity is back-dated 5 minutes and counted in hours", async () => {
  const now = new Date("2026-11-23T12:00:00Z");
  const v = pki.computeValidity({ validityHours: 168, now });
  expect(v.notBefore.toISOString()).toBe("2026-11-23T11:55:00.000Z");
  expect(v.notAfter.toISOString()).toBe("2026-11-30T12:00:00.000Z");
});

test("renewal is due inside the window, after expiry, and not before", () => {
  const cert = { notBefore: "2026-11-23T00:00:00Z", notAfter: "2026-11-23T10:00:00Z" };
  expect(pki.renewal(cert, new Date("2026-11-23T07:59:59Z"), 2)).toEqual({
    due: false,
    renewAt: "2026-11-23T08:00:00.000Z",
    reason: "valid until 2026-11-23T10:00:00.000Z; renewal due at 2026-11-23T08:00:00.000Z",
  });
  expect(pki.renewal(cert, new Date("2026-11-23T08:00:00Z"), 2)).toEqual({
    due: true,
    renewAt: "2026-11-23T08:00:00.000Z",
    reason:
      "expires 2026-11-23T10:00:00.000Z, within the 2h renewal window (due since 2026-11-23T08:00:00.000Z)",
  });
  expect(pki.renewal(cert, new Date("2026-11-24T00:00:00Z"), 2).reason).toBe(
    "expired at 2026-11-23T10:00:00.000Z",
  );
  expect(() => pki.renewal(cert, new Date(), -1)).toThrow("renewBeforeHours: must be 0 or more hours");
});

test("a certificate with validityHours 2 and renewBeforeHours 2 is due at once", async () => {
  const ca = await pki.createCertificateAuthority({
    subject: { commonName: "short" },
    keySpec: "ecdsa-p256",
  });
  const leaf = await pki.issueCertificate({
    issuer: ca,
    keySpec: "ecdsa-p256",
    subject: { commonName: "h" },
    validityHours: 2,
  });
  expect(pki.renewal(leaf.certPem, new Date(), 2).due).toBe(true);
  expect(pki.renewal(leaf.certPem, new Date(), 1).due).toBe(false);
});

test("PSK files have one username:hex line per user with 32-byte keys, and keep existing keys", () => {
  const first = pki.createPreSharedKeys(["qemu", "rich"]);
  expect(first.keysPsk).toMatch(/^qemu:[0-9a-f]{64}\nrich:[0-9a-f]{64}\n$/);
  const second = pki.createPreSharedKeys(["qemu", "rich", "ops"], { existing: first.keysPsk });
  expect(second.keysPsk.startsWith(first.keysPsk)).toBe(true);
  expect(second.keys[2].keyHex).toMatch(/^[0-9a-f]{64}$/);
  expect(() => pki.createPreSharedKeys(["a:b"])).toThrow('usernames[0]: "a:b" is not a usable PSK username');
  expect(() => pki.createPreSharedKeys([])).toThrow("usernames: give at least one PSK username");
});
