/** DN strings judged by libvirt's own `virt-pki-query-dn` (what tls_allowed_dn_list is matched against). */
import * as forge from "node-forge";
import { pki } from "../../index";
import { removeDir, run, writeFiles } from "../support/programs";
import { CaFixture, makeCa } from "./fixtures";

let fx: CaFixture;
beforeAll(async () => {
  fx = await makeCa("ecdsa-p256");
});
afterAll(() => removeDir(fx.dir));

test.each([
  [
    {
      country: "GB",
      state: "London",
      locality: "London",
      organization: "Libvirt Project",
      commonName: "client1",
    },
  ],
  [
    {
      country: "GB",
      state: "London",
      locality: "City Of London",
      organization: "Name of your organization",
      organizationalUnit: "Virt",
      commonName: "hostnnn.foo.example.com",
    },
  ],
  [{ organization: "Acme, Inc.", commonName: "op+1" }],
  [{ domainComponents: ["org", "libvirt"], commonName: "dc-client", emailAddress: "ops@libvirt.org" }],
  // GnuTLS leaves `=` unescaped (lib/x509/common.c str_escape); RFC 4514 would write `\=`.
  [{ organization: "a=b", commonName: "x=1" }],
  [{ organization: "Example, Inc.", organizationalUnit: "R+D; <lab>", commonName: "back\\slash" }],
  // `#` is escaped only in first position, as is a space; inner spaces never.
  [{ organization: "#1 Virt", organizationalUnit: "ops #2", commonName: "two  spaces" }],
  [{ locality: "Zürich", organization: "Ünïcode Ltd — 東京", commonName: "client-ü" }],
  [{ country: "DE", emailAddress: "first.last+virt@example.org", commonName: "mail" }],
  [{ domainComponents: ["com", "example", "virt"], commonName: "dc3" }],
])("distinguishedName matches virt-pki-query-dn for %j", async (subject: pki.Subject) => {
  const cert = await pki.issueCertificate({
    issuer: fx.ca,
    keySpec: "ecdsa-p256",
    profile: "client",
    subject,
  });
  const f = await writeFiles(fx.dir, { "dn.pem": cert.certPem });
  const r = await run("virt-pki-query-dn", [f["dn.pem"]]);
  expect(r.code).toBe(0);
  expect(cert.distinguishedName).toBe(r.stdout.trim());
  expect(pki.distinguishedName(subject)).toBe(cert.distinguishedName);
});

test("the RFC 4514 form is what certtool -i prints as Subject", async () => {
  const cert = await pki.issueCertificate({
    issuer: fx.ca,
    keySpec: "ecdsa-p256",
    profile: "client",
    subject: {
      country: "GB",
      state: "London",
      locality: "London",
      organization: "Libvirt Project",
      commonName: "client1",
    },
  });
  const r = await run("certtool", ["-i"], { input: cert.certPem });
  expect(r.stdout).toContain(`Subject: ${cert.subjectDnRfc4514}`);
  expect(cert.subjectDnRfc4514).toBe("CN=client1,O=Libvirt Project,L=London,ST=London,C=GB");
});

/** A CSR made by openssl (not by this library) for `subj`, e.g. `/O=Example/CN=*`. */
async function opensslCsr(subj: string): Promise<string> {
  const f = await writeFiles(fx.dir, { "csr.cnf": "[req]\ndistinguished_name = dn\n[dn]\n" });
  const r = await run("openssl", [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "/dev/null",
    "-config",
    f["csr.cnf"],
    "-utf8",
    "-subj",
    subj,
  ]);
  expect(r.code).toBe(0);
  return r.stdout;
}

describe("subjects whose DN libvirt would misread in tls_allowed_dn_list are refused", () => {
  // virconf.c's "..." strings have no escapes (a `"` ends them); g_pattern_match_simple treats `*` and `?` as globs.
  test.each([
    [{ commonName: "*" }, "subject.commonName", '"*"'],
    [{ organization: "Star*Corp", commonName: "c1" }, "subject.organization", '"*"'],
    [{ organizationalUnit: "ops?", commonName: "c1" }, "subject.organizationalUnit", '"?"'],
    [{ organization: 'The "Best" Co', commonName: "c1" }, "subject.organization", '"\\""'],
    [{ commonName: "c1", emailAddress: "*@example.org" }, "subject.emailAddress", '"*"'],
    [{ domainComponents: ["org", "li?virt"], commonName: "c1" }, "subject.domainComponents[1]", '"?"'],
  ])("client and server subject %j: %s", async (subject: pki.Subject, property, char) => {
    for (const profile of ["client", "server+client"] as const) {
      const issued = pki.issueCertificate({
        issuer: fx.ca,
        keySpec: "ecdsa-p256",
        profile,
        subject,
        dnsNames: ["c1.example.org"],
      });
      await expect(issued).rejects.toMatchObject({
        name: "PkiError",
        property,
        message: expect.stringContaining(`must not contain ${char}`),
      });
      await expect(issued).rejects.toThrow(/tls_allowed_dn_list/);
    }
  });

  test("through a certtool template", async () => {
    await expect(
      pki.issueCertificate({
        issuer: fx.ca,
        keySpec: "ecdsa-p256",
        template: 'organization = "Example"\ncn = "*"\ntls_www_client\n',
      }),
    ).rejects.toMatchObject({ property: "template.commonName" });
  });

  test("through the subject of a signed CSR (made by openssl), named as csrPem.subject.*", async () => {
    await expect(
      pki.issueCertificate({ issuer: fx.ca, profile: "client", csrPem: await opensslCsr("/O=Example/CN=*") }),
    ).rejects.toMatchObject({ property: "csrPem.subject.commonName" });
    await expect(
      pki.issueCertificate({ issuer: fx.ca, profile: "client", csrPem: await opensslCsr("/O=A?B/CN=c1") }),
    ).rejects.toMatchObject({ property: "csrPem.subject.organization" });
    // A CSR whose subject is fine is signed, and its DN is what libvirt's tool prints.
    const ok = await pki.issueCertificate({
      issuer: fx.ca,
      profile: "client",
      csrPem: await opensslCsr("/O=Example, Inc./CN=csr-client"),
    });
    const f = await writeFiles(fx.dir, { "csr-signed.pem": ok.certPem });
    expect((await run("virt-pki-query-dn", [f["csr-signed.pem"]])).stdout.trim()).toBe(ok.distinguishedName);
    expect(ok.distinguishedName).toBe("O=Example\\, Inc.,CN=csr-client");
  });

  test("control characters are refused in every subject, a CA's included", async () => {
    expect(() => pki.normalizeSubject({ commonName: "a\nb" })).toThrow(
      expect.objectContaining({ property: "subject.commonName" }),
    );
    expect(() => pki.normalizeSubject({ organization: "a\tb", commonName: "c" })).toThrow(
      /subject\.organization: must not contain control characters \(found U\+0009\)/,
    );
    await expect(
      pki.createCertificateAuthority({ subject: { commonName: "CA", organization: "x\u0085y" } }),
    ).rejects.toMatchObject({ property: "subject.organization" });
  });

  test("a CA's subject may hold them: its DN is never listed", async () => {
    const ca = await pki.createCertificateAuthority({
      subject: { organization: 'The "Best" Co', commonName: "CA *" },
      keySpec: "ecdsa-p256",
    });
    expect(ca.subjectDn).toBe('O=The \\"Best\\" Co,CN=CA *');
    const f = await writeFiles(fx.dir, { "odd-ca.pem": ca.certPem });
    expect((await run("virt-pki-query-dn", [f["odd-ca.pem"]])).stdout.trim()).toBe(ca.subjectDn);
  });
});

describe("DNs of certificates read back (imported, not made here) are printed as GnuTLS prints them", () => {
  const A = forge.asn1;
  const U = A.Class.UNIVERSAL;
  const atv = (oid: string, tag: number, bytes: string) =>
    A.create(U, A.Type.SEQUENCE, true, [
      A.create(U, A.Type.OID, false, A.oidToDer(oid).getBytes()),
      A.create(U, tag, false, bytes),
    ]);
  const rdn = (...atvs: forge.asn1.Asn1[]) => A.create(U, A.Type.SET, true, atvs);
  const utf8 = (s: string) => forge.util.encodeUtf8(s);
  const ucs4 = (s: string) => [...s].map((c) => String.fromCharCode(0, 0, 0, c.charCodeAt(0))).join("");

  /** An issued certificate with its subject Name swapped for `rdns` (GnuTLS does not check the signature here). */
  async function withSubject(rdns: forge.asn1.Asn1[]): Promise<string> {
    const cert = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec: "ecdsa-p256",
      profile: "client",
      subject: { commonName: "placeholder" },
    });
    const root = A.fromDer(forge.util.decode64(cert.certPem.replace(/-----[A-Z ]+-----|\s/g, "")));
    const tbs = (root.value as forge.asn1.Asn1[])[0].value as forge.asn1.Asn1[];
    tbs[5] = A.create(U, A.Type.SEQUENCE, true, rdns);
    const der = A.toDer(root).getBytes();
    return `-----BEGIN CERTIFICATE-----\n${forge.util.encode64(der, 64)}\n-----END CERTIFICATE-----\n`;
  }

  test.each<[string, forge.asn1.Asn1[]]>([
    [
      "a multi-valued RDN and an unknown OID",
      [
        rdn(atv("1.2.3.4", A.Type.PRINTABLESTRING, "weird")),
        rdn(atv("2.5.4.10", A.Type.UTF8, "a")),
        rdn(atv("2.5.4.3", A.Type.UTF8, "b"), atv("2.5.4.11", A.Type.UTF8, "c")),
      ],
    ],
    [
      "values of a type GnuTLS does not expect: C and EMAIL as UTF8String, O as IA5String",
      [
        rdn(atv("2.5.4.6", A.Type.UTF8, "GB")),
        rdn(atv("2.5.4.10", A.Type.IA5STRING, "ia5")),
        rdn(atv("1.2.840.113549.1.9.1", A.Type.UTF8, "a@b.c")),
        rdn(atv("2.5.4.3", A.Type.UTF8, "ok")),
      ],
    ],
    [
      "BMP, teletex (ASCII and not) and universal strings",
      [
        rdn(atv("2.5.4.10", A.Type.BMPSTRING, "Bmp, Org")),
        rdn(atv("2.5.4.11", 20, "teletex")),
        rdn(atv("2.5.4.8", 20, "\xe9t\xe9")),
        rdn(atv("2.5.4.7", 28, ucs4("uni"))),
        rdn(atv("2.5.4.3", A.Type.PRINTABLESTRING, "pr")),
      ],
    ],
    [
      "other names GnuTLS knows, and leading/trailing spaces and #",
      [
        rdn(atv("2.5.4.12", A.Type.UTF8, "Dr, PhD")),
        rdn(atv("2.5.4.9", A.Type.UTF8, " 1 Main St ")),
        rdn(atv("2.5.4.5", A.Type.PRINTABLESTRING, "1234")),
        rdn(atv("0.9.2342.19200300.100.1.1", A.Type.UTF8, "#u1")),
        rdn(atv("1.2.643.100.1", 18, "123")),
        rdn(atv("1.2.643.3.131.1.1", 18, "12")),
        rdn(atv("2.5.4.3", A.Type.UTF8, utf8('é = "q"'))),
      ],
    ],
    [
      "a NUL inside a value",
      [rdn(atv("2.5.4.3", A.Type.UTF8, "a\u0000b")), rdn(atv("2.5.4.10", A.Type.UTF8, "o"))],
    ],
  ])("%s", async (_what, rdns) => {
    const pem = await withSubject(rdns);
    const info = pki.inspectCertificate(pem);
    const f = await writeFiles(fx.dir, { "crafted.pem": pem });
    const query = await run("virt-pki-query-dn", [f["crafted.pem"]]);
    expect(query.code).toBe(0);
    expect(info.subjectDn).toBe(query.stdout.replace(/\n$/, ""));
    const certtool = await run("certtool", ["-i", "--infile", f["crafted.pem"]]);
    const subjectLine = certtool.stdout.split("\n").find((l) => l.startsWith("\tSubject: "));
    expect(`\tSubject: ${info.subjectDnRfc4514}`).toBe(subjectLine);
  });
});
