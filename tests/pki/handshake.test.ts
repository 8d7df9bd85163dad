/**
 * Real GnuTLS handshakes (gnutls-serv / gnutls-cli on loopback) with certificates from `pki`, for RSA
 * and ECDSA: the good case, and the failures a libvirt or QEMU peer must see.
 */
import { pki } from "../../index";
import { gnutlsConnect, GnutlsServer, judgeClientCertificate, startGnutlsServer } from "../support/gnutls";
import { removeDir, writeFiles } from "../support/programs";
import { CaFixture, makeCa } from "./fixtures";

describe.each(["rsa-2048", "ecdsa-p256"] as pki.KeySpec[])("%s TLS", (keySpec) => {
  let fx: CaFixture;
  let f: Record<string, string>;
  let client: pki.IssuedCertificate;
  const servers: GnutlsServer[] = [];
  const serve = async (opts: Parameters<typeof startGnutlsServer>[0]) => {
    const s = await startGnutlsServer(opts);
    servers.push(s);
    return s;
  };

  beforeAll(async () => {
    fx = await makeCa(keySpec, { organization: "Libvirt Project", commonName: "Handshake CA" });
    const other = await pki.createCertificateAuthority({ subject: { commonName: "Other CA" }, keySpec });
    const server = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      subject: { organization: "Libvirt Project", commonName: "localhost" },
      ipAddresses: ["127.0.0.1"],
    });
    client = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      profile: "client",
      subject: {
        country: "GB",
        state: "London",
        locality: "London",
        organization: "Libvirt Project",
        commonName: "client1",
      },
    });
    const revokedClient = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      profile: "client",
      subject: { organization: "Libvirt Project", commonName: "revoked" },
    });
    const expired = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      subject: { commonName: "localhost" },
      validityHours: 1,
      now: new Date(Date.now() - 3 * 3_600_000),
    });
    const crl = pki.createCrl({
      issuer: fx.ca,
      revoked: [{ serialNumber: revokedClient.serialNumber, reason: "keyCompromise" }],
    });
    f = await writeFiles(fx.dir, {
      "other-ca.pem": other.certPem,
      "server.pem": server.certPem,
      "server-key.pem": server.keyPem!,
      "client.pem": client.certPem,
      "client-key.pem": client.keyPem!,
      "revoked.pem": revokedClient.certPem,
      "revoked-key.pem": revokedClient.keyPem!,
      "expired.pem": expired.certPem,
      "expired-key.pem": expired.keyPem!,
      "crl.pem": crl.crlPem,
    });
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });
  afterAll(() => removeDir(fx.dir));

  test("a client checking the host name completes the handshake by DNS name and by IP", async () => {
    const s = await serve({ certFile: f["server.pem"], keyFile: f["server-key.pem"] });
    for (const name of ["localhost", "127.0.0.1"]) {
      const r = await gnutlsConnect({ port: s.port, caFile: fx.caFile, verifyHostname: name });
      expect({ name, ok: r.ok }).toEqual({ name, ok: true });
    }
  });

  test("the server accepts our client certificate when it requires one", async () => {
    const s = await serve({
      certFile: f["server.pem"],
      keyFile: f["server-key.pem"],
      caFile: fx.caFile,
      requireClientCert: true,
    });
    const j = await judgeClientCertificate(s, {
      caFile: fx.caFile,
      verifyHostname: "localhost",
      certFile: f["client.pem"],
      keyFile: f["client-key.pem"],
    });
    expect(j.verdict).toBe("accepted");
  });

  test("a client that trusts another CA refuses the server", async () => {
    const s = await serve({ certFile: f["server.pem"], keyFile: f["server-key.pem"] });
    const r = await gnutlsConnect({ port: s.port, caFile: f["other-ca.pem"], verifyHostname: "localhost" });
    expect(r.ok).toBe(false);
    expect(r.serverCertTrusted).toBe(false);
  });

  test("a host name that is not in the SAN is refused", async () => {
    const s = await serve({ certFile: f["server.pem"], keyFile: f["server-key.pem"] });
    const r = await gnutlsConnect({
      port: s.port,
      caFile: fx.caFile,
      verifyHostname: "compute2.libvirt.org",
    });
    expect(r.ok).toBe(false);
    expect(r.output).toContain("The name in the certificate does not match the expected");
  });

  test("a client certificate used as a server certificate is refused", async () => {
    const s = await serve({ certFile: f["client.pem"], keyFile: f["client-key.pem"] });
    const r = await gnutlsConnect({ port: s.port, caFile: fx.caFile, verifyHostname: "client1" });
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/Status: The certificate is NOT trusted\. .*(purpose|usage)/i);
  });

  test("an expired server certificate is refused", async () => {
    const s = await serve({ certFile: f["expired.pem"], keyFile: f["expired-key.pem"] });
    const r = await gnutlsConnect({ port: s.port, caFile: fx.caFile, verifyHostname: "localhost" });
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/expired/i);
  });

  test("a client revoked by our CRL is refused by the server", async () => {
    const s = await serve({
      certFile: f["server.pem"],
      keyFile: f["server-key.pem"],
      caFile: fx.caFile,
      crlFile: f["crl.pem"],
      requireClientCert: true,
    });
    const revoked = await judgeClientCertificate(s, {
      caFile: fx.caFile,
      verifyHostname: "localhost",
      certFile: f["revoked.pem"],
      keyFile: f["revoked-key.pem"],
    });
    expect(revoked.verdict).toBe("refused");
    const good = await judgeClientCertificate(s, {
      caFile: fx.caFile,
      verifyHostname: "localhost",
      certFile: f["client.pem"],
      keyFile: f["client-key.pem"],
    });
    expect(good.verdict).toBe("accepted");
  });
});
