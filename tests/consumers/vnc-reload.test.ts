/**
 * A certificate renewal reaching a running QEMU's VNC server, judged by a REAL `qemu-system-x86_64` 7.2
 * (`tls-creds-x509` + `-vnc ...,tls-creds=`, VeNCrypt X509None) and a VeNCrypt probe that reads the certificate
 * the server presents (tests/support/vnc.ts). Certificates come from this library's `pki` API.
 *
 * What is asserted is what QEMU 7.2 was observed to do: it reads the credential files when it starts and on
 * QMP `display-reload` (`type: vnc, tls-certs: true`) only. Files replaced on disk are not served until that
 * reload (also not after waiting); after it, new connections get the new certificate. A reload of files that
 * cannot be loaded (key not matching the certificate) is a QMP error and the previous certificate stays served.
 * With `verify-peer=on` the server's TLS handshake completes without a client certificate, then QEMU closes
 * the connection instead of sending the RFB SecurityResult.
 *
 * qemu-system-x86_64 is required: when it is missing the test FAILS (it never skips). QEMU listens on
 * 127.0.0.71 only; every QEMU is stopped in afterAll.
 */
import { promises as fs } from "fs";
import { join } from "path";
import { pki } from "../../index";
import { removeDir, run, sleep, tempDir, writeFiles } from "../support/programs";
import { QemuVnc, startQemuVnc } from "../support/qemu";
import { probeVncTls, VENCRYPT_SUBTYPES, VncTlsProbeResult } from "../support/vnc";

const LISTEN = "127.0.0.71";
const SERVER_SUBJECT: pki.Subject = { organization: "VNC Reload Test", commonName: "vnc.reload.test" };
const QEMU = "qemu-system-x86_64";

let dir: string;
let ca: pki.CertificateAuthority;
/** The certificate QEMU starts with, its renewal, and the renewal after that. */
let certA: pki.IssuedCertificate;
let certB: pki.IssuedCertificate;
let certC: pki.IssuedCertificate;
let client: pki.IssuedCertificate;
const running: QemuVnc[] = [];

function keyOf(cert: pki.IssuedCertificate): string {
  if (cert.keyPem === undefined) throw new Error("issued certificate without a key");
  return cert.keyPem;
}

/** A server certificate for the VNC server (same subject every time: a renewal), valid for `hours`. */
function serverCert(hours: number): Promise<pki.IssuedCertificate> {
  return pki.issueCertificate({
    issuer: ca,
    keySpec: "ecdsa-p256",
    profile: "server",
    subject: SERVER_SUBJECT,
    dnsNames: [SERVER_SUBJECT.commonName!],
    ipAddresses: [LISTEN],
    validityHours: hours,
  });
}

/** Replaces each file in `credsDir` atomically (written next to it, then renamed over it). */
async function replaceFiles(credsDir: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const staged = await writeFiles(credsDir, { [`.${name}.new`]: content });
    await fs.rename(staged[`.${name}.new`], join(credsDir, name));
  }
}

/** Installs `cert` and its key as QEMU's server-cert.pem / server-key.pem. */
function installServerCert(credsDir: string, cert: pki.IssuedCertificate): Promise<void> {
  return replaceFiles(credsDir, { "server-cert.pem": cert.certPem, "server-key.pem": keyOf(cert) });
}

async function newCredsDir(name: string, cert: pki.IssuedCertificate): Promise<string> {
  if (dir === undefined) throw new Error("the shared setup failed: see the first error");
  const credsDir = join(dir, name);
  await writeFiles(credsDir, { "ca-cert.pem": ca.certPem });
  await installServerCert(credsDir, cert);
  return credsDir;
}

async function startVnc(credsDir: string, verifyPeer = false): Promise<QemuVnc> {
  const qemu = await startQemuVnc({ host: LISTEN, credsDir, verifyPeer });
  running.push(qemu);
  return qemu;
}

/** Probes the VNC server, judging its certificate against the test CA. */
function probe(qemu: QemuVnc, withClientCert = false): Promise<VncTlsProbeResult> {
  return probeVncTls({
    host: qemu.host,
    port: qemu.port,
    ca: ca.certPem,
    ...(withClientCert ? { cert: client.certPem, key: keyOf(client) } : {}),
  });
}

/** The served certificate's fingerprint. */
async function servedFingerprint(qemu: QemuVnc): Promise<string | undefined> {
  return (await probe(qemu)).certificate?.fingerprintSha256;
}

function reloadVnc(qemu: QemuVnc): Promise<unknown> {
  return qemu.qmp("display-reload", { type: "vnc", "tls-certs": true });
}

beforeAll(async () => {
  const version = await run(QEMU, ["--version"], { timeoutMs: 10_000 }).catch((err: Error) => {
    throw new Error(
      `${QEMU} is required by this test and could not be run (${err.message}). ` +
        "On Debian: apt-get install --no-install-recommends qemu-system-x86. The test fails, it does not skip.",
    );
  });
  if (version.code !== 0) throw new Error(`${QEMU} --version failed:\n${version.stderr}`);
  console.log(version.stdout.split("\n")[0]);

  dir = await tempDir("virt-pki-vnc-reload-");
  ca = await pki.createCertificateAuthority({
    subject: { commonName: "VNC Reload CA" },
    keySpec: "ecdsa-p256",
  });
  certA = await serverCert(48);
  certB = await serverCert(72);
  certC = await serverCert(96);
  client = await pki.issueCertificate({
    issuer: ca,
    keySpec: "ecdsa-p256",
    profile: "client",
    subject: { organization: "VNC Reload Test", commonName: "vnc-client" },
  });
}, 60_000);

afterAll(async () => {
  for (const qemu of running.splice(0)) await qemu.stop();
  if (dir !== undefined) await removeDir(dir);
});

describe("QEMU 7.2 VNC (tls-creds-x509) after a certificate renewal", () => {
  let qemu: QemuVnc;
  let credsDir: string;

  beforeAll(async () => {
    credsDir = await newCredsDir("server", certA);
    qemu = await startVnc(credsDir);
  }, 30_000);

  it("serves the certificate it started with, over VeNCrypt X509None", async () => {
    const p = await probe(qemu);
    expect(p.serverVersion).toBe("RFB 003.008");
    expect(p.securityTypes).toEqual([19]);
    expect(p.subtypes).toEqual([VENCRYPT_SUBTYPES.X509None]);
    expect(p.subtype).toBe(VENCRYPT_SUBTYPES.X509None);
    expect(p.protocol).toBe("TLSv1.3");
    expect(p.certificate?.fingerprintSha256).toBe(certA.fingerprintSha256);
    expect(p.certificate?.subject).toBe("O=VNC Reload Test\nCN=vnc.reload.test");
    expect(p.certificate?.notAfter.toISOString()).toBe(certA.notAfter);
    expect(p.certificate?.serialNumber).toBe(certA.serialNumber.toUpperCase());
    expect(p.authorized).toBe(true);
    expect(p.accepted).toBe(true);
    expect(await qemu.qmp("query-vnc")).toMatchObject({
      enabled: true,
      auth: "vencrypt+x509+none",
      host: LISTEN,
      service: String(qemu.port),
    });
  });

  it("keeps serving the old certificate after the files are replaced, until display-reload", async () => {
    await installServerCert(credsDir, certB);
    expect(await fs.readFile(join(credsDir, "server-cert.pem"), "utf8")).toBe(certB.certPem);
    expect(await servedFingerprint(qemu)).toBe(certA.fingerprintSha256);
    // QEMU does not watch the directory: waiting changes nothing.
    await sleep(2_000);
    expect(await servedFingerprint(qemu)).toBe(certA.fingerprintSha256);

    expect(await reloadVnc(qemu)).toEqual({});
    const p = await probe(qemu);
    expect(p.certificate?.fingerprintSha256).toBe(certB.fingerprintSha256);
    expect(p.certificate?.notAfter.toISOString()).toBe(certB.notAfter);
    expect(p.authorized).toBe(true);
    expect(p.accepted).toBe(true);
  });

  it("refuses a reload of a key that does not match the certificate, and keeps the previous one", async () => {
    await replaceFiles(credsDir, { "server-cert.pem": certC.certPem, "server-key.pem": keyOf(certA) });
    await expect(reloadVnc(qemu)).rejects.toMatchObject({
      errorClass: "GenericError",
      desc: expect.stringMatching(/The certificate and the given key do not match/),
    });
    expect(await servedFingerprint(qemu)).toBe(certB.fingerprintSha256);
    expect(qemu.exited).toBe(false);

    await installServerCert(credsDir, certC);
    expect(await reloadVnc(qemu)).toEqual({});
    expect(await servedFingerprint(qemu)).toBe(certC.fingerprintSha256);
  });
});

describe("QEMU 7.2 VNC with verify-peer=on after a certificate renewal", () => {
  let qemu: QemuVnc;
  let credsDir: string;

  beforeAll(async () => {
    credsDir = await newCredsDir("server-verify-peer", certA);
    qemu = await startVnc(credsDir, true);
  }, 30_000);

  it("completes the TLS handshake without a client certificate, then closes instead of accepting", async () => {
    const p = await probe(qemu);
    expect(p.certificate?.fingerprintSha256).toBe(certA.fingerprintSha256);
    expect(p.accepted).toBe(false);
    expect(p.rejection).toMatch(/closed/);
  });

  it("accepts the client certificate before and after the reload, and serves the renewed certificate", async () => {
    const before = await probe(qemu, true);
    expect(before.certificate?.fingerprintSha256).toBe(certA.fingerprintSha256);
    expect(before.accepted).toBe(true);

    await installServerCert(credsDir, certB);
    expect(await reloadVnc(qemu)).toEqual({});
    const after = await probe(qemu, true);
    expect(after.certificate?.fingerprintSha256).toBe(certB.fingerprintSha256);
    expect(after.accepted).toBe(true);
  });
});
