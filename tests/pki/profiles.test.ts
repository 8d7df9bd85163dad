/**
 * Every leaf profile, for every key type, judged by real programs: `openssl verify` with purpose and
 * host/IP checks, `certtool --verify`, and the extensions as `openssl x509 -text` reads them.
 */
import { pki } from "../../index";
import { removeDir, writeFiles } from "../support/programs";
import { CaFixture, certtoolVerify, makeCa, opensslExtension, opensslText, opensslVerify } from "./fixtures";

const KEY_TYPES: pki.KeySpec[] = ["rsa-2048", "ecdsa-p256", "ecdsa-p384", "ed25519"];

describe.each(KEY_TYPES)("%s certificates", (keySpec) => {
  let fx: CaFixture;
  beforeAll(async () => {
    fx = await makeCa(keySpec, {
      country: "GB",
      organization: "Libvirt Project",
      commonName: `CA ${keySpec}`,
    });
  });
  afterAll(() => removeDir(fx.dir));

  test("the CA is a critical CA:TRUE pathlen:0 with keyCertSign+cRLSign and a subject key identifier", async () => {
    const f = await writeFiles(fx.dir, { "self.pem": fx.ca.certPem });
    expect((await opensslVerify(fx.caFile, f["self.pem"])).ok).toBe(true);
    expect((await certtoolVerify(fx.caFile, f["self.pem"])).ok).toBe(true);
    const text = await opensslText(f["self.pem"]);
    expect(opensslExtension(text, "Basic Constraints")).toEqual({
      critical: true,
      value: "CA:TRUE, pathlen:0",
    });
    expect(opensslExtension(text, "Key Usage")).toEqual({
      critical: true,
      value: "Certificate Sign, CRL Sign",
    });
    expect(opensslExtension(text, "Subject Key Identifier")?.value).toMatch(
      /^([0-9A-F]{2}:){19}[0-9A-F]{2}$/,
    );
  });

  test("a server certificate passes sslserver verification by DNS name and IP, and fails for other names", async () => {
    const server = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      subject: { organization: "Libvirt Project", commonName: "compute1.libvirt.org" },
      dnsNames: ["compute1"],
      ipAddresses: ["127.0.0.1", "2001:cafe::74"],
    });
    const f = await writeFiles(fx.dir, { [`server-${keySpec}.pem`]: server.certPem });
    const cert = f[`server-${keySpec}.pem`];
    for (const extra of [
      ["-purpose", "sslserver", "-verify_hostname", "compute1.libvirt.org"],
      ["-purpose", "sslserver", "-verify_hostname", "compute1"],
      ["-purpose", "sslserver", "-verify_ip", "127.0.0.1"],
      ["-purpose", "sslserver", "-verify_ip", "2001:cafe::74"],
    ]) {
      expect(await opensslVerify(fx.caFile, cert, extra)).toEqual(expect.objectContaining({ ok: true }));
    }
    expect(
      (
        await opensslVerify(fx.caFile, cert, [
          "-purpose",
          "sslserver",
          "-verify_hostname",
          "other.libvirt.org",
        ])
      ).ok,
    ).toBe(false);
    expect(
      (await opensslVerify(fx.caFile, cert, ["-purpose", "sslserver", "-verify_ip", "10.0.0.1"])).ok,
    ).toBe(false);
    expect((await opensslVerify(fx.caFile, cert, ["-purpose", "sslclient"])).ok).toBe(false);
    expect((await certtoolVerify(fx.caFile, cert)).ok).toBe(true);

    const text = await opensslText(cert);
    expect(opensslExtension(text, "Basic Constraints")).toEqual({ critical: true, value: "CA:FALSE" });
    expect(opensslExtension(text, "Extended Key Usage")).toEqual({
      critical: false,
      value: "TLS Web Server Authentication",
    });
    expect(opensslExtension(text, "Subject Alternative Name")?.value).toBe(
      "DNS:compute1, DNS:compute1.libvirt.org, IP Address:127.0.0.1, IP Address:2001:CAFE:0:0:0:0:0:74",
    );
    expect(opensslExtension(text, "Key Usage")).toEqual(
      keySpec.startsWith("rsa")
        ? { critical: true, value: "Digital Signature, Key Encipherment" }
        : { critical: false, value: "Digital Signature" },
    );
    expect(opensslExtension(text, "Authority Key Identifier")?.value.replace(/^keyid:/, "")).toBe(
      opensslExtension(await opensslText(fx.caFile), "Subject Key Identifier")?.value,
    );
    const sigAlg = /Signature Algorithm: (\S+)/.exec(text)?.[1];
    const expectedAlg: Record<string, string> = {
      "rsa-2048": "sha256WithRSAEncryption",
      "ecdsa-p256": "ecdsa-with-SHA256",
      "ecdsa-p384": "ecdsa-with-SHA384",
      ed25519: "ED25519",
    };
    expect(sigAlg).toBe(expectedAlg[keySpec]);
  });

  test("a client certificate passes sslclient verification, not sslserver, and has no SAN unless asked", async () => {
    const client = await pki.issueCertificate({
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
    const f = await writeFiles(fx.dir, { [`client-${keySpec}.pem`]: client.certPem });
    const cert = f[`client-${keySpec}.pem`];
    expect((await opensslVerify(fx.caFile, cert, ["-purpose", "sslclient"])).ok).toBe(true);
    expect((await opensslVerify(fx.caFile, cert, ["-purpose", "sslserver"])).ok).toBe(false);
    expect((await certtoolVerify(fx.caFile, cert)).ok).toBe(true);
    const text = await opensslText(cert);
    expect(opensslExtension(text, "Extended Key Usage")?.value).toBe("TLS Web Client Authentication");
    expect(opensslExtension(text, "Subject Alternative Name")).toBeUndefined();
    expect(client.distinguishedName).toBe("C=GB,ST=London,L=London,O=Libvirt Project,CN=client1");
  });

  test("a server+client certificate passes both purposes", async () => {
    const both = await pki.issueCertificate({
      issuer: fx.ca,
      keySpec,
      profile: "server+client",
      subject: { commonName: "hostnnn.foo.example.com" },
      dnsNames: ["hostnnn"],
    });
    const f = await writeFiles(fx.dir, { [`both-${keySpec}.pem`]: both.certPem });
    const cert = f[`both-${keySpec}.pem`];
    expect((await opensslVerify(fx.caFile, cert, ["-purpose", "sslclient"])).ok).toBe(true);
    expect(
      (await opensslVerify(fx.caFile, cert, ["-purpose", "sslserver", "-verify_hostname", "hostnnn"])).ok,
    ).toBe(true);
    expect(opensslExtension(await opensslText(cert), "Extended Key Usage")?.value).toBe(
      "TLS Web Server Authentication, TLS Web Client Authentication",
    );
  });
});

describe("intermediate CAs", () => {
  test("a leaf under an intermediate verifies against the root with the intermediate untrusted", async () => {
    const root = await makeCa("ecdsa-p256", { commonName: "Corporate Root" });
    try {
      const rootWithPath = await pki.createCertificateAuthority({
        subject: { commonName: "Corporate Root" },
        keySpec: "ecdsa-p256",
        pathLength: 1,
      });
      const intermediate = await pki.createCertificateAuthority({
        subject: { organization: "Ganeti", commonName: "cluster CA" },
        keySpec: "ecdsa-p256",
        parent: rootWithPath,
        validityHours: 24 * 7,
      });
      expect(intermediate.chainPem).toBe(intermediate.certPem + rootWithPath.certPem);
      const leaf = await pki.issueCertificate({
        issuer: intermediate,
        keySpec: "rsa-2048",
        subject: { commonName: "node1.example.com" },
        validityHours: 24,
      });
      const f = await writeFiles(root.dir, {
        "root.pem": rootWithPath.certPem,
        "inter.pem": intermediate.certPem,
        "leaf.pem": leaf.certPem,
      });
      expect(
        (
          await opensslVerify(f["root.pem"], f["leaf.pem"], [
            "-untrusted",
            f["inter.pem"],
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "node1.example.com",
          ])
        ).ok,
      ).toBe(true);
      expect((await opensslVerify(f["root.pem"], f["inter.pem"])).ok).toBe(true);
      expect(leaf.caChainPem).toBe(intermediate.chainPem);
      // A pathlen:0 root cannot take an intermediate: the parent check refuses before anything is signed.
      await expect(
        pki.createCertificateAuthority({ subject: { commonName: "x" }, parent: root.ca }),
      ).rejects.toThrow(/pathLength: the parent CA allows 0 more CA level/);
    } finally {
      await removeDir(root.dir);
    }
  });
});
