/**
 * Which key types this library's certificates work with, judged by the REAL consumers: libvirtd 9.0 (TLS,
 * `tls_allowed_dn_list`, `crl_file`) with virsh as client, and qemu-nbd / qemu-img 7.2 (`tls-creds-x509`,
 * `tls-creds-psk`). Every outcome asserted here is the one observed on Debian bookworm (libvirt 9.0.0,
 * QEMU 7.2, GnuTLS 3.7.9): all four key types are accepted by both; for ECDSA and Ed25519 libvirt logs a
 * *warning* that the (non-critical) keyUsage does not permit key encipherment, whereas certtool's ECDSA
 * certificates, whose keyUsage is critical, are refused outright.
 *
 * libvirtd listens on 127.0.0.9 only; "by DNS name" means virsh runs with a private /etc/hosts mapping
 * `localhost` to 127.0.0.9 (see tests/support/libvirtd.ts), so the machine's own `localhost` (127.0.0.1)
 * could not reach the daemon: the connection can only succeed through the private mapping.
 * Key types run sequentially; every daemon is stopped in `finally`.
 */
import { readFileSync } from "fs";
import { join } from "path";
import { pki } from "../../index";
import { gnutlsConnect } from "../support/gnutls";
import { Libvirtd, LibvirtdOptions, startLibvirtd, virshConnect } from "../support/libvirtd";
import { certtool, removeDir, runOrThrow, tempDir, writeFiles } from "../support/programs";
import { createRawImage, qemuImgInfo, startQemuNbd } from "../support/qemu";

const LISTEN = "127.0.0.9";
const SERVER_NAME = "localhost";
/** The private /etc/hosts virsh sees when connecting by name. */
const HOSTS = { [SERVER_NAME]: LISTEN, "not-in-the-cert.test": LISTEN };
const CLIENT_DN = "C=GB,ST=London,L=London,O=Libvirt Project,CN=client1";
const CLIENT_SUBJECT: pki.Subject = {
  country: "GB",
  state: "London",
  locality: "London",
  organization: "Libvirt Project",
  commonName: "client1",
};
const KEY_SPECS = ["rsa-2048", "ecdsa-p256", "ecdsa-p384", "ed25519"] as const;
type Spec = (typeof KEY_SPECS)[number];

/** What virsh prints when libvirtd closes the connection after refusing the client's certificate. */
const VIRSH_REFUSED = /error: Unable to read TLS confirmation: Input\/output error/;
/** libvirt's message for a keyUsage without keyEncipherment (warning if non-critical, error if critical). */
const NO_KEY_ENCIPHERMENT = /usage does not permit key encipherment/;

/** Starts libvirtd, runs `body`, and always stops the daemon. */
async function withLibvirtd<T>(opts: LibvirtdOptions, body: (d: Libvirtd) => Promise<T>): Promise<T> {
  const daemon = await startLibvirtd({ listenAddr: LISTEN, ...opts });
  try {
    return await body(daemon);
  } finally {
    await daemon.stop();
  }
}

/** A client directory for `?pkipath=`. */
async function clientDir(dir: string, caPem: string, certPem: string, keyPem: string): Promise<string> {
  await writeFiles(dir, { "cacert.pem": caPem, "clientcert.pem": certPem, "clientkey.pem": keyPem });
  return dir;
}

function required(value: string | undefined, what: string): string {
  if (value === undefined) throw new Error(`${what} is missing`);
  return value;
}

describe.each(KEY_SPECS)("%s certificates with real libvirtd and qemu-nbd", (keySpec: Spec) => {
  let dir: string;
  let serverDir: string; // cacert.pem, servercert.pem, serverkey.pem
  let crlServerDir: string; // the same plus cacrl.pem revoking the "revoked" client
  let clientPki: string;
  let revokedPki: string;
  let otherPki: string; // an unrevoked client of the same CA, for the CRL case
  let qemuServerDir: string;
  let qemuClientDir: string;
  let image: string;
  const ecLike = keySpec !== "rsa-2048";

  beforeAll(async () => {
    dir = await tempDir(`virt-pki-consumers-${keySpec}-`);
    const ca = await pki.createCertificateAuthority({
      subject: { commonName: `Test CA ${keySpec}` },
      keySpec,
    });
    const server = await pki.issueCertificate({
      issuer: ca,
      keySpec,
      profile: "server",
      subject: { commonName: SERVER_NAME },
      dnsNames: [SERVER_NAME],
      ipAddresses: [LISTEN],
    });
    const client = await pki.issueCertificate({
      issuer: ca,
      keySpec,
      profile: "client",
      subject: CLIENT_SUBJECT,
    });
    expect(client.subjectDn).toBe(CLIENT_DN);
    const revoked = await pki.issueCertificate({
      issuer: ca,
      keySpec,
      profile: "client",
      subject: CLIENT_SUBJECT,
    });
    const other = await pki.issueCertificate({
      issuer: ca,
      keySpec,
      profile: "client",
      subject: { ...CLIENT_SUBJECT, commonName: "client2" },
    });
    const crl = pki.createCrl({ issuer: ca, revoked: [{ serialNumber: revoked.serialNumber }] });
    const serverKey = required(server.keyPem, "server key");

    serverDir = join(dir, "libvirt-server");
    await writeFiles(serverDir, {
      "cacert.pem": ca.certPem,
      "servercert.pem": server.certPem,
      "serverkey.pem": serverKey,
    });
    crlServerDir = join(dir, "libvirt-server-crl");
    await writeFiles(crlServerDir, {
      "cacert.pem": ca.certPem,
      "servercert.pem": server.certPem,
      "serverkey.pem": serverKey,
      "cacrl.pem": crl.crlPem,
    });
    clientPki = await clientDir(
      join(dir, "client1"),
      ca.certPem,
      client.certPem,
      required(client.keyPem, "key"),
    );
    revokedPki = await clientDir(
      join(dir, "revoked"),
      ca.certPem,
      revoked.certPem,
      required(revoked.keyPem, "key"),
    );
    otherPki = await clientDir(
      join(dir, "client2"),
      ca.certPem,
      other.certPem,
      required(other.keyPem, "key"),
    );

    qemuServerDir = join(dir, "qemu-server");
    await writeFiles(qemuServerDir, {
      "ca-cert.pem": ca.certPem,
      "server-cert.pem": server.certPem,
      "server-key.pem": serverKey,
    });
    qemuClientDir = join(dir, "qemu-client");
    await writeFiles(qemuClientDir, {
      "ca-cert.pem": ca.certPem,
      "client-cert.pem": client.certPem,
      "client-key.pem": required(client.keyPem, "key"),
    });
    image = join(dir, "disk.raw");
    await createRawImage(image);
  });

  afterAll(async () => {
    if (dir !== undefined) await removeDir(dir);
  });

  test("libvirtd accepts the client by IP and by DNS name; a name not in the certificate is refused", async () => {
    await withLibvirtd({ pkiDir: serverDir }, async (d) => {
      const byIp = await virshConnect({ host: LISTEN, port: d.port, pkiPath: clientPki });
      expect(byIp).toMatchObject({ ok: true });
      const byName = await virshConnect({
        host: SERVER_NAME,
        port: d.port,
        pkiPath: clientPki,
        hosts: HOSTS,
      });
      expect(byName).toMatchObject({ ok: true });
      // Same address, but a name the server certificate does not carry: virsh's hostname check refuses it.
      const wrongName = await virshConnect({
        host: "not-in-the-cert.test",
        port: d.port,
        pkiPath: clientPki,
        hosts: HOSTS,
      });
      expect(wrongName.ok).toBe(false);
      expect(wrongName.output).toMatch(
        /Certificate \[session\] owner does not match the hostname not-in-the-cert\.test/,
      );
      expect(wrongName.output).toMatch(/error: authentication failed: Failed to verify peer's certificate/);

      // keyUsage: RSA certificates carry digitalSignature+keyEncipherment (critical): no complaint at all.
      // EC/Ed25519 certificates carry a NON-critical digitalSignature-only keyUsage: libvirt only warns.
      const log = d.log();
      if (ecLike) {
        expect(log).toMatch(
          / warning : virNetTLSContextCheckCertKeyUsage:\d+ : Certificate \S*servercert\.pem usage does not permit key encipherment/,
        );
        expect(byIp.output).toMatch(/ warning : .*clientcert\.pem usage does not permit key encipherment/);
        expect(log).not.toMatch(/ error : virNetTLSContextCheckCertKeyUsage/);
      } else {
        expect(log).not.toMatch(NO_KEY_ENCIPHERMENT);
        expect(byIp.output).not.toMatch(NO_KEY_ENCIPHERMENT);
      }
    });
  });

  test("tls_allowed_dn_list: the exact DN is accepted, a non-matching glob refuses the client", async () => {
    await withLibvirtd({ pkiDir: serverDir, tlsAllowedDnList: [CLIENT_DN] }, async (d) => {
      expect(await virshConnect({ host: LISTEN, port: d.port, pkiPath: clientPki })).toMatchObject({
        ok: true,
      });
    });
    await withLibvirtd({ pkiDir: serverDir, tlsAllowedDnList: ["C=GB,*,CN=someoneelse"] }, async (d) => {
      const r = await virshConnect({ host: LISTEN, port: d.port, pkiPath: clientPki });
      expect(r.ok).toBe(false);
      expect(r.output).toMatch(VIRSH_REFUSED);
      expect(
        await d.waitForLog(
          /Client's Distinguished Name is not on the list of allowed clients \(tls_allowed_dn_list\)/,
        ),
      ).toBeDefined();
    });
  });

  test("crl_file: a revoked client is refused, an unrevoked client of the same CA is accepted", async () => {
    await withLibvirtd({ pkiDir: crlServerDir }, async (d) => {
      expect(d.log()).not.toMatch(/error : .*(CRL|crl)/);
      const r = await virshConnect({ host: LISTEN, port: d.port, pkiPath: revokedPki });
      expect(r.ok).toBe(false);
      expect(r.output).toMatch(VIRSH_REFUSED);
      expect(
        await d.waitForLog(/Certificate failed validation: The certificate has been revoked\./),
      ).toBeDefined();
      expect(await virshConnect({ host: LISTEN, port: d.port, pkiPath: otherPki })).toMatchObject({
        ok: true,
      });
    });
  });

  test("qemu-nbd (tls-creds-x509, server) and qemu-img info (client) complete the handshake", async () => {
    const nbd = await startQemuNbd({ host: LISTEN, credsDir: qemuServerDir, kind: "x509", imagePath: image });
    try {
      const r = await qemuImgInfo({ host: LISTEN, port: nbd.port, credsDir: qemuClientDir, kind: "x509" });
      expect(r).toMatchObject({ ok: true });
      expect(r.output).toMatch(/virtual size: 1 MiB \(1048576 bytes\)/);
    } finally {
      await nbd.stop();
    }
  });
});

describe("the keyUsage rule: certtool's ECDSA certificates (critical keyUsage, digitalSignature only)", () => {
  let dir: string;
  let ca: { certPem: string; keyPem: string };

  /** certtool-made ECDSA key + certificate signed by the certtool CA, from the libvirt guide's template. */
  async function certtoolLeaf(name: string, template: string): Promise<{ certPem: string; keyPem: string }> {
    const keyFile = join(dir, `${name}-key.pem`);
    const certFile = join(dir, `${name}-cert.pem`);
    await writeFiles(dir, { [`${name}.info`]: template });
    await runOrThrow("certtool", ["--generate-privkey", "--key-type", "ecdsa", "--outfile", keyFile]);
    await runOrThrow("certtool", [
      "--generate-certificate",
      "--load-privkey",
      keyFile,
      "--load-ca-certificate",
      join(dir, "ca-cert.pem"),
      "--load-ca-privkey",
      join(dir, "ca-key.pem"),
      "--template",
      join(dir, `${name}.info`),
      "--outfile",
      certFile,
    ]);
    const info = await certtool(["-i", "--infile", certFile]);
    // The premise of this case: critical keyUsage with digitalSignature only, despite `encryption_key`.
    expect(info.stdout).toMatch(/Key Usage \(critical\):\n\s+Digital signature\.\n/);
    return { certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") };
  }

  beforeAll(async () => {
    dir = await tempDir("virt-pki-consumers-certtool-");
    await writeFiles(dir, {
      "ca.info": "cn = certtool ECDSA CA\nca\ncert_signing_key\nexpiration_days = 30\n",
    });
    await runOrThrow("certtool", [
      "--generate-privkey",
      "--key-type",
      "ecdsa",
      "--outfile",
      join(dir, "ca-key.pem"),
    ]);
    await runOrThrow("certtool", [
      "--generate-self-signed",
      "--load-privkey",
      join(dir, "ca-key.pem"),
      "--template",
      join(dir, "ca.info"),
      "--outfile",
      join(dir, "ca-cert.pem"),
    ]);
    ca = {
      certPem: readFileSync(join(dir, "ca-cert.pem"), "utf8"),
      keyPem: readFileSync(join(dir, "ca-key.pem"), "utf8"),
    };
  });

  afterAll(async () => {
    if (dir !== undefined) await removeDir(dir);
  });

  test("libvirtd refuses to start with a certtool ECDSA server certificate", async () => {
    const server = await certtoolLeaf(
      "server",
      `organization = Libvirt Project\ncn = ${SERVER_NAME}\ndns_name = ${SERVER_NAME}\nip_address = ${LISTEN}\n` +
        "tls_www_server\nencryption_key\nsigning_key\nexpiration_days = 7\n",
    );
    const pkiDir = join(dir, "certtool-server");
    await writeFiles(pkiDir, {
      "cacert.pem": ca.certPem,
      "servercert.pem": server.certPem,
      "serverkey.pem": server.keyPem,
    });
    await expect(startLibvirtd({ listenAddr: LISTEN, pkiDir })).rejects.toThrow(
      /libvirtd exited before listening[\s\S]* error : virNetTLSContextCheckCertKeyUsage:\d+ : Certificate \S*servercert\.pem usage does not permit key encipherment/,
    );
  });

  test("virsh and libvirtd refuse a certtool ECDSA client certificate; this library's from the same CA works", async () => {
    const certtoolClient = await certtoolLeaf(
      "client",
      "country = GB\nstate = London\nlocality = London\norganization = Libvirt Project\ncn = client1\n" +
        "tls_www_client\nencryption_key\nsigning_key\nexpiration_days = 7\n",
    );
    // This library, signing with the certtool CA: non-critical keyUsage for the EC keys.
    const server = await pki.issueCertificate({
      issuer: ca,
      keySpec: "ecdsa-p256",
      profile: "server",
      subject: { commonName: SERVER_NAME },
      dnsNames: [SERVER_NAME],
      ipAddresses: [LISTEN],
      validityHours: 24,
    });
    const client = await pki.issueCertificate({
      issuer: ca,
      keySpec: "ecdsa-p256",
      profile: "client",
      subject: CLIENT_SUBJECT,
      validityHours: 24,
    });
    const pkiDir = join(dir, "library-server");
    await writeFiles(pkiDir, {
      "cacert.pem": ca.certPem,
      "servercert.pem": server.certPem,
      "serverkey.pem": required(server.keyPem, "key"),
    });
    const certtoolPki = await clientDir(
      join(dir, "certtool-client"),
      ca.certPem,
      certtoolClient.certPem,
      certtoolClient.keyPem,
    );
    const libraryPki = await clientDir(
      join(dir, "library-client"),
      ca.certPem,
      client.certPem,
      required(client.keyPem, "key"),
    );

    await withLibvirtd({ pkiDir }, async (d) => {
      const refused = await virshConnect({ host: LISTEN, port: d.port, pkiPath: certtoolPki });
      expect(refused.ok).toBe(false);
      // virsh's own sanity check refuses to present it (the connection never gets to the daemon).
      expect(refused.output).toMatch(
        /error: Certificate \S*certtool-client\/clientcert\.pem usage does not permit key encipherment/,
      );
      expect(await virshConnect({ host: LISTEN, port: d.port, pkiPath: libraryPki })).toMatchObject({
        ok: true,
      });

      // A client without that self-check (gnutls-cli) presenting it: libvirtd's session check refuses it.
      const sessionError =
        / error : virNetTLSContextCheckCertKeyUsage:\d+ : Certificate \[session\] usage does not permit key encipherment/;
      expect(d.log()).not.toMatch(sessionError);
      await gnutlsConnect({
        host: LISTEN,
        port: d.port,
        caFile: join(certtoolPki, "cacert.pem"),
        certFile: join(certtoolPki, "clientcert.pem"),
        keyFile: join(certtoolPki, "clientkey.pem"),
      });
      expect(await d.waitForLog(sessionError)).toBeDefined();
      expect(await d.waitForLog(/authentication failed: Failed to verify peer's certificate/)).toBeDefined();
    });
  });
});

describe("QEMU TLS PSK: keys.psk from createPreSharedKeys", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir("virt-pki-consumers-psk-");
  });

  afterAll(async () => {
    if (dir !== undefined) await removeDir(dir);
  });

  test("qemu-nbd tls-creds-psk accepts the client holding the same key and refuses a different key", async () => {
    const { keysPsk } = pki.createPreSharedKeys(["qemu"]);
    const other = pki.createPreSharedKeys(["qemu"]).keysPsk;
    expect(other).not.toBe(keysPsk);
    await writeFiles(join(dir, "server"), { "keys.psk": keysPsk });
    await writeFiles(join(dir, "client"), { "keys.psk": keysPsk });
    await writeFiles(join(dir, "wrong"), { "keys.psk": other });
    const image = join(dir, "disk.raw");
    await createRawImage(image);

    const nbd = await startQemuNbd({
      host: LISTEN,
      credsDir: join(dir, "server"),
      kind: "psk",
      imagePath: image,
    });
    try {
      const ok = await qemuImgInfo({
        host: LISTEN,
        port: nbd.port,
        credsDir: join(dir, "client"),
        kind: "psk",
      });
      expect(ok).toMatchObject({ ok: true });
      const explicit = await qemuImgInfo({
        host: LISTEN,
        port: nbd.port,
        credsDir: join(dir, "client"),
        kind: "psk",
        username: "qemu",
      });
      expect(explicit).toMatchObject({ ok: true });
      const wrong = await qemuImgInfo({
        host: LISTEN,
        port: nbd.port,
        credsDir: join(dir, "wrong"),
        kind: "psk",
      });
      expect(wrong.ok).toBe(false);
      expect(wrong.output).toMatch(/TLS handshake failed: The TLS connection was non-properly terminated\./);
      expect(
        await nbd.waitForOutput(/TLS handshake failed: An illegal parameter has been received\./),
      ).toBeDefined();
    } finally {
      await nbd.stop();
    }
  });
});
