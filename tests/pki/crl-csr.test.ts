/** CRLs judged by `openssl crl -verify` and `openssl verify -crl_check`; CSRs by `openssl req -verify`. */
import { pki } from "../../index";
import { removeDir, run, writeFiles } from "../support/programs";
import { CaFixture, makeCa, opensslVerify } from "./fixtures";

describe.each(["rsa-2048", "ecdsa-p256"] as pki.KeySpec[])("%s CA", (keySpec) => {
  let fx: CaFixture;
  beforeAll(async () => {
    fx = await makeCa(keySpec);
  });
  afterAll(() => removeDir(fx.dir));

  test("a v2 CRL verifies with openssl, lists serials with reasons, and revokes the certificate", async () => {
    const good = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      profile: "client",
      subject: { commonName: "good" },
    });
    const bad = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      profile: "client",
      subject: { commonName: "bad" },
    });
    const crl = pki.createCrl({
      issuer: fx.ca,
      revoked: [
        { serialNumber: bad.serialNumber, reason: "keyCompromise", revocationDate: "2026-01-02T03:04:05Z" },
      ],
      crlNumber: 7,
      nextUpdateHours: 48,
    });
    const f = await writeFiles(fx.dir, {
      "crl.pem": crl.crlPem,
      "good.pem": good.certPem,
      "bad.pem": bad.certPem,
    });
    const verify = await run("openssl", [
      "crl",
      "-in",
      f["crl.pem"],
      "-CAfile",
      fx.caFile,
      "-noout",
      "-text",
    ]);
    expect(verify.stderr).toContain("verify OK");
    expect(verify.stdout).toContain("Version 2 (0x1)");
    expect(verify.stdout).toMatch(/X509v3 CRL Number:\s+7/);
    expect(verify.stdout).toContain("X509v3 Authority Key Identifier");
    expect(verify.stdout).toContain(`Serial Number: ${bad.serialNumber.toUpperCase()}`);
    expect(verify.stdout).toMatch(/Revocation Date: Jan {2}2 03:04:05 2026 GMT/);
    expect(verify.stdout).toMatch(/CRL Reason Code:\s+Key Compromise/);
    expect(new Date(crl.nextUpdate).getTime() - new Date(crl.thisUpdate).getTime()).toBe(48 * 3_600_000);

    const withCrl = ["-crl_check", "-CRLfile", f["crl.pem"], "-purpose", "sslclient"];
    expect((await opensslVerify(fx.caFile, f["good.pem"], withCrl)).ok).toBe(true);
    const revoked = await opensslVerify(fx.caFile, f["bad.pem"], withCrl);
    expect(revoked.ok).toBe(false);
    expect(revoked.output).toContain("certificate revoked");

    const certtoolCrl = await run("certtool", [
      "--verify-crl",
      "--infile",
      f["crl.pem"],
      "--load-ca-certificate",
      fx.caFile,
    ]);
    expect(certtoolCrl.code).toBe(0);
    expect(certtoolCrl.stdout).toContain("Verified. The certificate is trusted.");
    expect(certtoolCrl.stdout).toContain("CRL Number (not critical): 07");

    expect(pki.inspectCrl(crl.crlPem)).toEqual({
      issuerDn: fx.ca.subjectDn,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      crlNumber: 7,
      authorityKeyIdentifier: pki.inspectCertificate(fx.ca.certPem).subjectKeyIdentifier,
      revoked: [
        { serialNumber: bad.serialNumber, revocationDate: "2026-01-02T03:04:05.000Z", reasonCode: 1 },
      ],
    });
  });

  test("an empty CRL is valid and its default number grows when re-signed later", async () => {
    const first = pki.createCrl({ issuer: fx.ca, thisUpdate: new Date("2026-11-01T00:00:00Z") });
    const second = pki.createCrl({ issuer: fx.ca, thisUpdate: new Date("2026-11-02T00:00:00Z") });
    expect(second.crlNumber).toBeGreaterThan(first.crlNumber);
    const f = await writeFiles(fx.dir, { "empty.pem": first.crlPem });
    const r = await run("openssl", ["crl", "-in", f["empty.pem"], "-CAfile", fx.caFile, "-noout"]);
    expect(r.stderr).toContain("verify OK");
  });

  test("our CSR passes openssl req -verify, and signing it certifies its key without ever holding the private key", async () => {
    const keyPem = await pki.generatePrivateKey(keySpec);
    const csrPem = pki.createCsr({
      keyPem,
      subject: { organization: "Ganeti", commonName: "node1.example.com" },
      dnsNames: ["node1"],
    });
    const f = await writeFiles(fx.dir, { "req.pem": csrPem });
    const r = await run("openssl", ["req", "-verify", "-noout", "-text", "-in", f["req.pem"]]);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/verify OK|Certificate request self-signature verify OK/);
    expect(r.stdout).toContain("DNS:node1");

    const cert = await pki.issueCertificate({ issuer: fx.ca, csrPem });
    expect(cert.keyPem).toBeUndefined();
    expect(pki.certificateMatchesKey(cert.certPem, keyPem)).toBe(true);
    expect(cert.subjectDn).toBe("O=Ganeti,CN=node1.example.com");
    expect(cert.altNames.dnsNames).toEqual(["node1", "node1.example.com"]);
    const c = await writeFiles(fx.dir, { "from-csr.pem": cert.certPem });
    expect(
      (
        await opensslVerify(fx.caFile, c["from-csr.pem"], [
          "-purpose",
          "sslserver",
          "-verify_hostname",
          "node1",
        ])
      ).ok,
    ).toBe(true);
  });

  test("a CSR made by openssl is honoured for key, subject and SANs only", async () => {
    const dir = fx.dir;
    const gen = await run("openssl", [
      "req",
      "-new",
      "-newkey",
      keySpec === "rsa-2048" ? "rsa:2048" : "ec",
      ...(keySpec === "rsa-2048" ? [] : ["-pkeyopt", "ec_paramgen_curve:P-256"]),
      "-nodes",
      "-keyout",
      `${dir}/o-key.pem`,
      "-out",
      `${dir}/o-req.pem`,
      "-subj",
      "/C=GB/O=Libvirt Project/CN=host9",
      "-addext",
      "subjectAltName=DNS:host9.example.com,IP:127.0.0.9",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
    ]);
    expect(gen.code).toBe(0);
    const { readFile } = await import("node:fs/promises");
    const csrPem = await readFile(`${dir}/o-req.pem`, "utf8");
    const cert = await pki.issueCertificate({ issuer: fx.ca, csrPem, profile: "server" });
    const info = pki.inspectCertificate(cert.certPem);
    expect(info.subjectDn).toBe("C=GB,O=Libvirt Project,CN=host9");
    expect(info.dnsNames).toEqual(["host9", "host9.example.com"]);
    expect(info.ipAddresses).toEqual(["127.0.0.9"]);
    expect(info.isCa).toBe(false); // the requested CA:TRUE is ignored
    expect(pki.certificateMatchesKey(cert.certPem, await readFile(`${dir}/o-key.pem`, "utf8"))).toBe(true);
  });

  test("a CSR whose signature does not match its key is refused", async () => {
    const keyPem = await pki.generatePrivateKey(keySpec);
    const csrPem = pki.createCsr({ keyPem, subject: { commonName: "tampered" } });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    der[der.length - 5] ^= 0x01; // flip a bit inside the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(pki.issueCertificate({ issuer: fx.ca, csrPem: tampered })).rejects.toThrow(
      "csrPem: the CSR's signature does not verify",
    );
  });
});
