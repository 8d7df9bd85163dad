/** Inspection, chain checks and host matching, compared with what openssl and certtool report. */
import { pki } from "../../index";
import { removeDir, run, writeFiles } from "../support/programs";
import { CaFixture, makeCa } from "./fixtures";

let fx: CaFixture;
let server: pki.IssuedCertificate;
beforeAll(async () => {
  fx = await makeCa("ecdsa-p256", { organization: "Libvirt Project", commonName: "Inspect CA" });
  server = await pki.issueCertificate({
    issuer: fx.ca,
    keySpec: "rsa-2048",
    subject: { organization: "Libvirt Project", commonName: "compute1.libvirt.org" },
    dnsNames: ["compute1"],
    ipAddresses: ["10.0.0.74", "2001:cafe::74"],
    validityHours: 48,
  });
});
afterAll(() => removeDir(fx.dir));

test("inspectCertificate agrees with openssl on serial, dates, fingerprint and names", async () => {
  const info = pki.inspectCertificate(server.certPem);
  const f = await writeFiles(fx.dir, { "s.pem": server.certPem });
  const r = await run("openssl", [
    "x509",
    "-noout",
    "-serial",
    "-startdate",
    "-enddate",
    "-fingerprint",
    "-sha256",
    "-subject",
    "-issuer",
    "-nameopt",
    "RFC2253",
    "-in",
    f["s.pem"],
  ]);
  const out = Object.fromEntries(
    r.stdout
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  expect(info.serialNumber.toUpperCase()).toBe(out.serial);
  expect(new Date(out.notBefore).toISOString()).toBe(info.notBefore);
  expect(new Date(out.notAfter).toISOString()).toBe(info.notAfter);
  expect(out["sha256 Fingerprint"]).toBe(info.fingerprintSha256);
  expect(out.subject).toBe(info.subjectDnRfc4514);
  expect(out.issuer).toBe(info.issuerDnRfc4514);
  expect(info).toMatchObject({
    subjectDn: "O=Libvirt Project,CN=compute1.libvirt.org",
    issuerDn: "O=Libvirt Project,CN=Inspect CA",
    dnsNames: ["compute1", "compute1.libvirt.org"],
    ipAddresses: ["10.0.0.74", "2001:cafe::74"],
    keyUsages: ["digitalSignature", "keyEncipherment"],
    keyUsageCritical: true,
    extendedKeyUsages: ["serverAuth"],
    isCa: false,
    keySpec: "rsa-2048",
    signatureAlgorithm: "1.2.840.10045.4.3.2",
    selfIssued: false,
  });
  expect(pki.inspectCertificate(fx.ca.certPem)).toMatchObject({
    isCa: true,
    pathLength: 0,
    selfIssued: true,
  });
});

test("host matching follows GnuTLS: SAN names and IPs match, others do not", () => {
  for (const good of ["compute1", "COMPUTE1.libvirt.org", "10.0.0.74", "2001:CAFE:0::74"]) {
    expect({ good, m: pki.matchesHost(server.certPem, good) }).toEqual({ good, m: true });
  }
  for (const bad of ["compute2", "libvirt.org", "10.0.0.75", "fe20::24"]) {
    expect({ bad, m: pki.matchesHost(server.certPem, bad) }).toEqual({ bad, m: false });
  }
});

test("verifyChain accepts the issued chain and says why it refuses others", async () => {
  expect(pki.verifyChain(server.certPem, fx.ca.certPem)).toEqual({
    ok: true,
    path: ["O=Libvirt Project,CN=compute1.libvirt.org", "O=Libvirt Project,CN=Inspect CA"],
  });
  const other = await pki.createCertificateAuthority({
    subject: { commonName: "Other" },
    keySpec: "ecdsa-p256",
  });
  expect(pki.verifyChain(server.certPem, other.certPem)).toMatchObject({
    ok: false,
    reason: "no trusted CA or intermediate issued this certificate",
  });
  expect(
    pki.verifyChain(server.certPem, fx.ca.certPem, { now: new Date(Date.now() + 72 * 3_600_000) }).ok,
  ).toBe(false);
  // A pathlen:0 CA above an intermediate is refused (openssl agrees).
  const root = await pki.createCertificateAuthority({
    subject: { commonName: "Root" },
    keySpec: "ecdsa-p256",
    pathLength: 1,
  });
  const mid = await pki.createCertificateAuthority({
    subject: { commonName: "Mid" },
    keySpec: "ecdsa-p256",
    parent: root,
  });
  const leaf = await pki.issueCertificate({
    issuer: mid,
    keySpec: "ecdsa-p256",
    subject: { commonName: "n1" },
    validityHours: 24,
  });
  expect(pki.verifyChain(leaf.certPem, root.certPem, { intermediatesPem: mid.certPem }).ok).toBe(true);
});

test("certificateMatchesKey tells a matching key from another", async () => {
  expect(pki.certificateMatchesKey(server.certPem, server.keyPem!)).toBe(true);
  expect(pki.certificateMatchesKey(server.certPem, await pki.generatePrivateKey("rsa-2048"))).toBe(false);
});

test("a certificate whose public key OpenSSL cannot read is refused naming the property, when the key is read", () => {
  const derBytes = Buffer.from(server.certPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  const rsa = Buffer.from("2a864886f70d010101", "hex"); // rsaEncryption: only in the leaf's SPKI (the CA is ECDSA)
  const at = derBytes.indexOf(rsa);
  expect(at).toBeGreaterThan(0);
  expect(derBytes.indexOf(rsa, at + 1)).toBe(-1);
  derBytes[at + rsa.length - 1] = 0x7f; // 1.2.840.113549.1.1.127: no key type OpenSSL knows
  const pem = `-----BEGIN CERTIFICATE-----\n${derBytes.toString("base64")}\n-----END CERTIFICATE-----\n`;
  let error: unknown;
  try {
    pki.inspectCertificate(pem, "import.certPem");
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(pki.PkiError);
  expect((error as pki.PkiError).property).toBe("import.certPem");
  expect((error as Error).message).toMatch(/public key could not be parsed/);
});
