/** Bad input gets a clear error naming the property and the fix; good input is normalised. */
import { pki } from "../../index";

let ca: pki.CertificateAuthority;
beforeAll(async () => {
  ca = await pki.createCertificateAuthority({
    subject: { commonName: "Errors CA" },
    keySpec: "ecdsa-p256",
    validityHours: 240,
  });
});

const server = (over: Partial<pki.IssueCertificateArgs>) =>
  pki.issueCertificate({
    issuer: ca,
    keySpec: "ecdsa-p256",
    subject: { commonName: "host1.example.com" },
    ...over,
  });

test.each([
  [
    "invalid IP",
    { ipAddresses: ["10.0.0.300"] },
    'ipAddresses[0]: "10.0.0.300" is not an IPv4 or IPv6 address',
  ],
  [
    "IP given as DNS name",
    { dnsNames: ["10.0.0.1"] },
    'dnsNames[0]: "10.0.0.1" is not a valid DNS name (it is an IP address: put it in ipAddresses)',
  ],
  [
    "bad DNS label",
    { dnsNames: ["bad_host-.example"] },
    'dnsNames[0]: "bad_host-.example" is not a valid DNS name (label "bad_host-")',
  ],
  [
    "empty CN",
    { subject: { commonName: "  " } },
    "subject.commonName: must not be empty; leave it out instead",
  ],
  ["no CN", { subject: { organization: "x" } }, "subject.commonName: a leaf certificate needs a commonName"],
  [
    "bad country",
    { subject: { country: "GBR", commonName: "h" } },
    'subject.country: must be a two-letter ISO 3166 code such as "GB", got "GBR"',
  ],
  [
    "unknown subject field",
    { subject: { cn: "h" } as unknown as pki.Subject },
    "subject.cn: unknown subject field",
  ],
  ["validity zero", { validityHours: 0 }, "validityHours: must be greater than 0 hours, got 0"],
  ["validity negative", { validityHours: -5 }, "validityHours: must be greater than 0 hours, got -5"],
  ["outlives its CA", { validityHours: 241 }, "after its CA"],
  [
    "policy maximum",
    { validityHours: 200, maxValidityHours: 168 },
    "validityHours: 200 hours exceeds the policy maximum of 168 hours",
  ],
  [
    "server CN not a host name",
    { subject: { commonName: "Name of your organization" } },
    'subject.commonName: "Name of your organization" is not a host name',
  ],
  ["unknown profile", { profile: "both" as pki.LeafProfile }, 'profile: unknown profile "both"'],
  ["unknown key spec", { keySpec: "rsa-1024" as pki.KeySpec }, 'keySpec: unknown key spec "rsa-1024"'],
  ["two key sources", { keyPem: "x" }, "keySpec: give only one of keyPem, csrPem and keySpec"],
  [
    "template with structured subject",
    { template: "cn = a\ntls_www_server\n" },
    "subject: give either template or subject, not both",
  ],
])("%s", async (_name, over, message) => {
  await expect(server(over as Partial<pki.IssueCertificateArgs>)).rejects.toThrow(message);
});

test("path length on a leaf template is refused", async () => {
  await expect(
    pki.issueCertificate({
      issuer: ca,
      keySpec: "ecdsa-p256",
      template: "cn = h1\npath_len = 1\ntls_www_server\n",
    }),
  ).rejects.toThrow("template:2: path_len only applies to a CA certificate; add ca, or remove path_len");
});

test("a CA template given to issueCertificate points to createCertificateAuthority", async () => {
  await expect(
    pki.issueCertificate({ issuer: ca, template: "cn = x\nca\ncert_signing_key\n" }),
  ).rejects.toThrow("use createCertificateAuthority");
});

test("an unknown template keyword names its line", async () => {
  await expect(
    pki.issueCertificate({ issuer: ca, template: "cn = h1\ntls_www_server\nfoo = bar\n" }),
  ).rejects.toThrow(/template:3: .*"foo"/);
});

test("a leaf cannot outlive its CA unless truncation is asked for", async () => {
  const cert = await server({ validityHours: 10_000, truncateToIssuer: true });
  expect(cert.notAfter).toBe(ca.notAfter);
});

test("a key that does not match the CA certificate is refused, and the key is not in the message", async () => {
  const otherKey = await pki.generatePrivateKey("ecdsa-p256");
  const attempt = pki.issueCertificate({
    issuer: { certPem: ca.certPem, keyPem: otherKey },
    subject: { commonName: "h" },
  });
  await expect(attempt).rejects.toThrow("issuer.keyPem: the private key does not match the CA certificate");
  await attempt.catch((e: Error) => expect(e.message).not.toContain("PRIVATE KEY"));
  expect(() => pki.importCertificateAuthority({ certPem: ca.certPem, keyPem: otherKey })).toThrow(
    "import.keyPem: the private key does not match the CA certificate",
  );
});

test("a leaf certificate cannot act as an issuer", async () => {
  const leaf = await server({ validityHours: 24 });
  await expect(
    pki.issueCertificate({
      issuer: { certPem: leaf.certPem, keyPem: leaf.keyPem! },
      subject: { commonName: "x" },
    }),
  ).rejects.toThrow("issuer.certPem: this certificate is not a CA");
});

test("garbage PEM is reported without echoing it", () => {
  expect(() => pki.inspectCertificate("not a cert")).toThrow("certPem: expected a PEM certificate");
  expect(() => pki.loadPrivateKey("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")).toThrow(
    "keyPem: the PEM private key could not be decoded",
  );
});

test("alternative names are normalised: lower case, canonical IPv6, sorted, de-duplicated", () => {
  expect(
    pki.normalizeAltNames({
      dnsNames: ["Compute1.Libvirt.ORG.", "compute1", "compute1.libvirt.org"],
      ipAddresses: ["2001:CAFE:0:0::74", "10.0.0.74", "[fe20::24]", "2001:cafe::74"],
    }),
  ).toEqual({
    dnsNames: ["compute1", "compute1.libvirt.org"],
    ipAddresses: ["10.0.0.74", "2001:cafe::74", "fe20::24"],
    emailAddresses: [],
    uris: [],
  });
});

test("an imported CA keeps its chain and path length", async () => {
  const imported = pki.importCertificateAuthority({ certPem: ca.certPem, keyPem: ca.keyPem });
  expect(imported.subjectDn).toBe("CN=Errors CA");
  expect(imported.pathLength).toBe(0);
  expect(imported.chainPem).toBe(ca.certPem);
});
