/**
 * Issuance policy: serials are always generated, CAs signed with SHA-1/MD5 are refused where GnuTLS
 * rejects them, a leaf may not outlive any certificate of its chain, what passes check does not fail
 * in create, and certificate-valued inputs holding a private key are refused. Chains the library will
 * not make itself (SHA-1 signatures, an intermediate outliving its root) are made with openssl, and
 * GnuTLS's certtool judges what it accepts.
 */
import { createPrivateKey } from "node:crypto";
import { join } from "node:path";
import { pki } from "../../index";
import { certificate, certificateAuthority, revocationList } from "../../provider/handlers";
import { removeDir, run, tempDir, writeFiles } from "../support/programs";
import { certtoolVerify } from "./fixtures";

let dir: string;
let ca: pki.CertificateAuthority;

/** Runs openssl in `dir`, failing the test with its stderr if it fails. */
async function openssl(...args: string[]): Promise<void> {
  const r = await run("openssl", args, { cwd: dir });
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** A self-signed openssl CA: `<name>.pem` and `<name>.key`. */
async function opensslRoot(name: string, digest: string, days: number, pathlen: number): Promise<void> {
  await openssl(
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.pem`],
    ...[`-${digest}`, "-days", String(days), "-subj", `/CN=${name}`],
    ...["-addext", `basicConstraints=critical,CA:TRUE,pathlen:${pathlen}`],
    ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  );
}

/** An openssl CA `<name>` signed by `parent` with `digest`. */
async function opensslIntermediate(
  name: string,
  parent: string,
  digest: string,
  days: number,
  pathlen: number,
): Promise<void> {
  await openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${name}`,
  );
  await writeFiles(dir, {
    [`${name}.ext`]: `basicConstraints=critical,CA:TRUE,pathlen:${pathlen}\nkeyUsage=critical,keyCertSign,cRLSign\n`,
  });
  await openssl(
    ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${parent}.pem`, "-CAkey", `${parent}.key`],
    ...["-set_serial", String(Date.now()), "-out", `${name}.pem`, "-days", String(days), `-${digest}`],
    ...["-extfile", `${name}.ext`],
  );
}

async function read(name: string): Promise<string> {
  const r = await run("cat", [join(dir, name)]);
  return r.stdout;
}

beforeAll(async () => {
  dir = await tempDir("virt-pki-policy-");
  ca = await pki.createCertificateAuthority({ subject: { commonName: "Policy CA" }, keySpec: "ecdsa-p256" });
  await opensslRoot("sha1root", "sha1", 30, 1);
  await opensslRoot("goodroot", "sha256", 30, 2);
  await opensslIntermediate("sha1int", "goodroot", "sha1", 20, 1);
  await opensslIntermediate("underweak", "sha1int", "sha256", 10, 0);
  await opensslRoot("shortroot", "sha256", 10, 1);
  await opensslIntermediate("longint", "shortroot", "sha256", 365, 0);
});
afterAll(async () => {
  await removeDir(dir);
});

describe("serial numbers are always generated", () => {
  test("a template's serial line is refused for leaves and CAs, at issue and at check", async () => {
    const message =
      "template: serial numbers are always generated (time-ordered and random, so never reused); remove the template's serial line";
    await expect(
      pki.issueCertificate({
        issuer: ca,
        keySpec: "ecdsa-p256",
        template: "cn = a.example\nserial = 0x01\ntls_www_server\n",
      }),
    ).rejects.toThrow(message);
    await expect(
      pki.createCertificateAuthority({ keySpec: "ecdsa-p256", template: "cn = Root\nca\nserial = 1\n" }),
    ).rejects.toThrow(message);
    const leafCheck = certificate.check(
      {},
      {
        ca: { certPem: ca.certPem, keyPem: ca.keyPem },
        profile: "server",
        template: "cn = a.example\nserial = 0x01\ntls_www_server\n",
      },
    );
    expect(leafCheck.failures).toEqual([{ property: "template", reason: message }]);
    const caCheck = certificateAuthority.check({}, { template: "cn = Root\nca\nserial = 1\n" });
    expect(caCheck.failures).toEqual([{ property: "template", reason: message }]);
  });

  test("an explicit serialNumber argument is refused; two leaves from one template get different serials", async () => {
    const args = {
      issuer: ca,
      keySpec: "ecdsa-p256",
      subject: { commonName: "b.example" },
      serialNumber: "01",
    };
    await expect(pki.issueCertificate(args as never)).rejects.toThrow(
      "serialNumber: serial numbers are always generated",
    );
    await expect(
      pki.createCertificateAuthority({ subject: { commonName: "c" }, serialNumber: "01" } as never),
    ).rejects.toThrow("serialNumber: serial numbers are always generated");
    const template = "cn = d.example\ntls_www_server\n";
    const [one, two] = await Promise.all([
      pki.issueCertificate({ issuer: ca, keySpec: "ecdsa-p256", template }),
      pki.issueCertificate({ issuer: ca, keySpec: "ecdsa-p256", template }),
    ]);
    expect(one.serialNumber).not.toBe(two.serialNumber);
  });
});

describe("CAs signed with SHA-1 are refused where GnuTLS rejects the chain", () => {
  test("certtool rejects a chain through a SHA-1-signed intermediate; the library refuses it as issuer, parent and import", async () => {
    const int = await read("sha1int.pem");
    const key = await read("sha1int.key");
    await writeFiles(dir, { "chain-weak.pem": (await read("underweak.pem")) + int });
    const judged = await certtoolVerify(join(dir, "goodroot.pem"), join(dir, "chain-weak.pem"));
    expect(judged.ok).toBe(false);
    expect(judged.output).toContain("The certificate chain uses insecure algorithm");

    const weak =
      "a CA certificate in it is signed with sha1WithRSAEncryption, which GnuTLS (libvirt, QEMU) rejects as insecure";
    await expect(
      pki.issueCertificate({
        issuer: { certPem: int, keyPem: key },
        keySpec: "ecdsa-p256",
        subject: { commonName: "e.example" },
        validityHours: 24,
      }),
    ).rejects.toThrow(`issuer.certPem: ${weak}`);
    await expect(
      pki.createCertificateAuthority({
        subject: { commonName: "Sub" },
        parent: { certPem: int, keyPem: key },
        keySpec: "ecdsa-p256",
        validityHours: 24,
      }),
    ).rejects.toThrow(`parent.certPem: ${weak}`);
    const imported = certificateAuthority.check({}, { import: { certPem: int, keyPem: key } });
    expect(imported.failures).toEqual([
      { property: "", reason: expect.stringContaining(`import.certPem: ${weak}`) },
    ]);
  });

  test("a SHA-256 CA whose chain holds a SHA-1-signed intermediate is refused on the chain", async () => {
    const certPem = await read("underweak.pem");
    const chainPem = certPem + (await read("sha1int.pem")) + (await read("goodroot.pem"));
    const keyPem = await read("underweak.key");
    expect(() => pki.loadIssuer({ certPem, keyPem, chainPem })).toThrow(
      "issuer.chainPem: a CA certificate in it is signed with sha1WithRSAEncryption",
    );
  });

  test("a SHA-1 self-signed root is accepted: GnuTLS does not check a trust anchor's own signature", async () => {
    const root = { certPem: await read("sha1root.pem"), keyPem: await read("sha1root.key") };
    const leaf = await pki.issueCertificate({
      issuer: root,
      keySpec: "ecdsa-p256",
      subject: { commonName: "f.example" },
      validityHours: 24,
    });
    await writeFiles(dir, { "leaf-sha1root.pem": leaf.certPem });
    const judged = await certtoolVerify(join(dir, "sha1root.pem"), join(dir, "leaf-sha1root.pem"));
    expect(judged.output).toContain("The certificate is trusted");
    expect(judged.ok).toBe(true);
  });
});

describe("a leaf may not outlive any certificate in its chain", () => {
  test("an intermediate that outlives its root: the leaf is held to the root's notAfter", async () => {
    const chainPem = (await read("longint.pem")) + (await read("shortroot.pem"));
    const issuer = { certPem: await read("longint.pem"), keyPem: await read("longint.key"), chainPem };
    const rootEnd = pki.inspectCertificate(await read("shortroot.pem")).notAfter;
    expect(Date.parse(pki.inspectCertificate(issuer.certPem).notAfter)).toBeGreaterThan(Date.parse(rootEnd));
    const args = {
      issuer,
      keySpec: "ecdsa-p256" as const,
      subject: { commonName: "g.example" },
      validityHours: 20 * 24,
    };
    await expect(pki.issueCertificate(args)).rejects.toThrow(`validityHours: the certificate would end`);
    await expect(pki.issueCertificate(args)).rejects.toThrow(
      `after its CA or a certificate in the CA's chain (${rootEnd})`,
    );
    const checked = certificate.check(
      {},
      {
        ca: issuer,
        profile: "server",
        subject: { commonName: "g.example" },
        validityHours: 20 * 24,
        renewBeforeHours: 24,
      },
    );
    expect(checked.failures).toEqual([
      {
        property: "validityHours",
        reason: expect.stringContaining(`a certificate in the CA's chain (${rootEnd})`),
      },
    ]);
    const truncated = await pki.issueCertificate({ ...args, truncateToIssuer: true });
    expect(truncated.notAfter).toBe(rootEnd);
    const sub = await pki
      .createCertificateAuthority({
        subject: { commonName: "Sub of longint" },
        keySpec: "ecdsa-p256",
        parent: issuer,
        pathLength: 0,
        validityHours: 20 * 24,
        truncateToIssuer: true,
      })
      .catch((e: Error) => e);
    // longint has pathlen 0, so no CA may be made under it: refused before any validity question.
    expect((sub as Error).message).toContain("pathLength: the parent CA allows 0 more CA levels");
  });
});

describe("what passes check does not fail in create", () => {
  test("an intermediate under a pathLength-0 root is refused at check, as create refuses it", async () => {
    const root = { certPem: ca.certPem, keyPem: ca.keyPem };
    expect(ca.pathLength).toBe(0);
    const news = { subject: { commonName: "Intermediate" }, keySpec: "ecdsa-p256", parent: root };
    const checked = certificateAuthority.check({}, news);
    expect(checked.failures).toEqual([
      {
        property: "pathLength",
        reason: expect.stringContaining("the parent CA allows 0 more CA levels below it"),
      },
    ]);
    await expect(pki.createCertificateAuthority({ ...news, keySpec: "ecdsa-p256" })).rejects.toThrow(
      "the parent CA allows 0 more CA levels below it",
    );
  });

  test("a serial listed twice in a CRL is refused at check, as create refuses it", async () => {
    const leaf = await pki.issueCertificate({
      issuer: ca,
      keySpec: "ecdsa-p256",
      subject: { commonName: "h.example" },
    });
    const creds = { certPem: ca.certPem, keyPem: ca.keyPem };
    const twice = revocationList.check(
      {},
      {
        ca: creds,
        revoked: [{ serialNumber: leaf.serialNumber }, { certPem: leaf.certPem }],
      },
    );
    expect(twice.failures).toEqual([
      {
        property: "",
        reason: `revoked[1]: serial ${leaf.serialNumber} is already listed as revoked[0]; list each certificate once`,
      },
    ]);
    const caseOnly = revocationList.check(
      {},
      { ca: creds, revoked: [{ serialNumber: "0A" }, { serialNumber: "0a" }] },
    );
    expect(caseOnly.failures?.[0].property).toBe("revoked");
    expect(() =>
      pki.createCrl({ issuer: ca, revoked: [{ serialNumber: "0A" }, { serialNumber: "0a" }] }),
    ).toThrow("serial 0a is listed twice");
  });
});

describe("a CSR's subject is checked at check as create uses it", () => {
  test("a CSR whose subject create would refuse (country G1) fails check on csrPem", async () => {
    await openssl(
      ...["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", "g1.key", "-out", "g1.csr", "-subj", "/C=G1/CN=j.example"],
    );
    const csrPem = await read("g1.csr");
    const reason = 'csrPem.subject.country: must be a two-letter ISO 3166 code such as "GB", got "G1"';
    const checked = certificate.check(
      {},
      { ca: { certPem: ca.certPem, keyPem: ca.keyPem }, profile: "client", csrPem },
    );
    // Failures on a PEM-valued input name no property (the engine would print the value); the reason does.
    expect(checked.failures).toEqual([{ property: "", reason: expect.stringContaining(reason) }]);
    await expect(pki.issueCertificate({ issuer: ca, csrPem })).rejects.toThrow(reason);
  });
});

describe("certificate inputs holding a private key are refused", () => {
  const keyLine = () => ca.keyPem.split("\n")[1];
  const expectRefused = (
    failures: { property: string; reason: string }[] | undefined,
    property: string,
    label: string,
  ) => {
    // Never named: the engine prints a named property's value, here a private key.
    expect(failures).toEqual([{ property: "", reason: expect.stringContaining(`${property}`) }]);
    expect(failures?.[0].reason).toContain(`holds a private key (-----BEGIN ${label}-----)`);
    expect(JSON.stringify(failures)).not.toContain(keyLine());
  };

  test("import certPem, a CRL's CA certPem, a chain, a CSR and a revoked certPem", async () => {
    const bundle = ca.certPem + ca.keyPem;
    expectRefused(
      certificateAuthority.check({}, { import: { certPem: bundle, keyPem: ca.keyPem } }).failures,
      "import",
      "PRIVATE KEY",
    );
    expectRefused(
      revocationList.check({}, { ca: { certPem: bundle, keyPem: ca.keyPem } }).failures,
      "ca",
      "PRIVATE KEY",
    );
    expectRefused(
      revocationList.check(
        {},
        { ca: { certPem: ca.certPem, keyPem: ca.keyPem }, revoked: [{ certPem: bundle }] },
      ).failures,
      "revoked",
      "PRIVATE KEY",
    );
    const key = await pki.generatePrivateKey("ecdsa-p256");
    const csrPem = pki.createCsr({ keyPem: key, subject: { commonName: "i.example" } });
    const csrCheck = certificate.check(
      {},
      {
        ca: { certPem: ca.certPem, keyPem: ca.keyPem },
        profile: "server",
        csrPem: csrPem + key,
      },
    );
    expect(csrCheck.failures).toEqual([
      {
        property: "",
        reason: expect.stringContaining("csrPem: holds a private key (-----BEGIN PRIVATE KEY-----)"),
      },
    ]);
    expect(JSON.stringify(csrCheck.failures)).not.toContain(key.split("\n")[1]);
    expect(() =>
      pki.loadIssuer({ certPem: ca.certPem, keyPem: ca.keyPem, chainPem: ca.chainPem + ca.keyPem }),
    ).toThrow("issuer.chainPem: holds a private key (-----BEGIN PRIVATE KEY-----)");
  });

  test("every private key label: PKCS#1, SEC1 and encrypted PKCS#8", () => {
    const k = createPrivateKey(ca.keyPem);
    const sec1 = k.export({ format: "pem", type: "sec1" }) as string;
    const encrypted = k.export({
      format: "pem",
      type: "pkcs8",
      cipher: "aes-256-cbc",
      passphrase: "x",
    }) as string;
    expect(() => pki.inspectCertificate(ca.certPem + sec1)).toThrow(
      "certPem: holds a private key (-----BEGIN EC PRIVATE KEY-----)",
    );
    expect(() => pki.inspectCertificate(encrypted + ca.certPem)).toThrow(
      "certPem: holds a private key (-----BEGIN ENCRYPTED PRIVATE KEY-----)",
    );
    expect(() => pki.createCrl({ issuer: { certPem: ca.certPem + sec1, keyPem: ca.keyPem } })).toThrow(
      "issuer.certPem: holds a private key (-----BEGIN EC PRIVATE KEY-----)",
    );
    expect(() => pki.inspectCertificate("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n")).toThrow(
      "holds a private key (-----BEGIN RSA PRIVATE KEY-----)",
    );
  });
});
