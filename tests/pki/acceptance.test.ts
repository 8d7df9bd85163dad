/**
 * checkTlsCredentials: every rule both ways, with certificates made by openssl with exact extensions (and by
 * this library), and the exact messages of libvirt 9.0 / QEMU 7.2 (Debian bookworm). Times are moved with
 * `now` instead of back-dating certificates. No daemon runs here: the real-daemon judge is separate.
 */
import { join } from "node:path";
import { pki } from "../../index";
import { removeDir, run, runOrThrow, tempDir, writeFiles } from "../support/programs";

const LV_CA = "/etc/pki/CA/cacert.pem";
const LV_SERVER = "/etc/pki/libvirt/servercert.pem";
const LV_CLIENT = "/etc/pki/libvirt/clientcert.pem";
const LV_SERVER_KEY = "/etc/pki/libvirt/private/serverkey.pem";
const Q_CA = "/etc/pki/qemu/ca-cert.pem";
const Q_SERVER = "/etc/pki/qemu/server-cert.pem";
const Q_SERVER_KEY = "/etc/pki/qemu/server-key.pem";

const DAY = 86_400_000;
// Ten minutes ahead of the certificates made below (openssl starts their validity at creation).
const NOW = new Date(Date.now() + 10 * 60_000);

let dir: string;
let counter = 0;

type KeyType = "ec" | "rsa" | "ed25519";
const keys: Partial<Record<KeyType, string>> = {};

async function key(type: KeyType, fresh = false): Promise<string> {
  if (!fresh && keys[type]) return keys[type] as string;
  const f = join(dir, `key${counter++}.pem`);
  const args =
    type === "ec"
      ? ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
      : type === "rsa"
        ? ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        : ["-algorithm", "ED25519"];
  await runOrThrow("openssl", ["genpkey", ...args, "-out", f]);
  const { readFileSync } = await import("node:fs");
  const pem = readFileSync(f, "utf8");
  if (!fresh) keys[type] = pem;
  return pem;
}

interface Made {
  certPem: string;
  keyPem: string;
}

/** A certificate from openssl: `ext` lines go in the extension section verbatim; self-signed without `issuer`. */
async function cert(opts: {
  subject: string;
  ext: string[];
  issuer?: Made;
  keyType?: KeyType;
  keyPem?: string;
  days?: number;
  digest?: string;
}): Promise<Made> {
  const n = counter++;
  const keyPem = opts.keyPem ?? (await key(opts.keyType ?? "ec"));
  const files = await writeFiles(dir, {
    [`k${n}.pem`]: keyPem,
    [`e${n}.cnf`]: `[v3]\n${opts.ext.join("\n")}\n`,
    ...(opts.issuer ? { [`ic${n}.pem`]: opts.issuer.certPem, [`ik${n}.pem`]: opts.issuer.keyPem } : {}),
  });
  const csr = join(dir, `r${n}.pem`);
  const out = join(dir, `c${n}.pem`);
  await runOrThrow("openssl", [
    "req",
    "-new",
    "-key",
    files[`k${n}.pem`],
    "-subj",
    opts.subject,
    "-out",
    csr,
  ]);
  const digest = (opts.keyType ?? "ec") === "ed25519" && !opts.issuer ? [] : [`-${opts.digest ?? "sha256"}`];
  const signer = opts.issuer
    ? ["-CA", files[`ic${n}.pem`], "-CAkey", files[`ik${n}.pem`]]
    : ["-signkey", files[`k${n}.pem`]];
  await runOrThrow("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    ...signer,
    "-set_serial",
    String(1000 + n),
    "-days",
    String(opts.days ?? 30),
    ...digest,
    "-extfile",
    files[`e${n}.cnf`],
    "-extensions",
    "v3",
    "-out",
    out,
  ]);
  const { readFileSync } = await import("node:fs");
  return { certPem: readFileSync(out, "utf8"), keyPem };
}

const CA_EXT = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"];
const SERVER_EXT = [
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=serverAuth",
  "subjectAltName=DNS:compute1.example.org,DNS:compute1,IP:192.0.2.10,IP:2001:db8::10",
];
const CLIENT_EXT = [
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=clientAuth",
];

let ca: Made;
let server: Made;
let client: Made;

beforeAll(async () => {
  dir = await tempDir("virt-pki-acceptance-");
  ca = await cert({ subject: "/O=Example/CN=Example CA", ext: CA_EXT, days: 3650 });
  server = await cert({ subject: "/O=Example/CN=compute1.example.org", ext: SERVER_EXT, issuer: ca });
  client = await cert({ subject: "/C=GB/O=Example/CN=client1", ext: CLIENT_EXT, issuer: ca });
});
afterAll(() => removeDir(dir));

type Args = Omit<pki.CheckTlsCredentialsArgs, "consumer" | "role">;
const lvServer = (a: Args) =>
  pki.checkTlsCredentials({ consumer: "libvirt", role: "server", now: NOW, ...a });
const lvClient = (a: Args) =>
  pki.checkTlsCredentials({ consumer: "libvirt", role: "client", now: NOW, ...a });
const qServer = (a: Args) => pki.checkTlsCredentials({ consumer: "qemu", role: "server", now: NOW, ...a });
const qClient = (a: Args) => pki.checkTlsCredentials({ consumer: "qemu", role: "client", now: NOW, ...a });
const err = (message: string) => ({ severity: "error", message });
const warning = (message: string) => ({ severity: "warning", message });
const ACCEPT = { verdict: "accept", problems: [] };

describe("a good set is accepted by both consumers", () => {
  test("server and client, with key, names and DN list", () => {
    const s = { caCertPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem };
    const names = ["compute1.example.org", "COMPUTE1", "192.0.2.10", "2001:db8:0::10"];
    expect(lvServer({ ...s, serverNames: names })).toEqual(ACCEPT);
    expect(qServer({ ...s, serverNames: names })).toEqual(ACCEPT);
    const c = { caCertPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem };
    expect(lvClient({ ...c, allowedDnList: ["C=GB,O=Example,CN=client1"] })).toEqual(ACCEPT);
    expect(qClient({ ...c, allowedDnList: ["C=GB,O=Example,CN=client1"] })).toEqual(ACCEPT);
  });

  test("this library's own certificates: RSA accepted, EC warned about by libvirt 9.0", async () => {
    const own = await pki.createCertificateAuthority({
      subject: { commonName: "Own CA" },
      keySpec: "ecdsa-p256",
    });
    const leaf = await pki.issueCertificate({
      issuer: own,
      keySpec: "ecdsa-p256",
      subject: { commonName: "h1.example.org" },
      ipAddresses: ["10.1.1.1"],
    });
    const args = {
      caCertPem: own.certPem,
      certPem: leaf.certPem,
      keyPem: leaf.keyPem,
      serverNames: ["h1.example.org", "10.1.1.1"],
    };
    // An EC leaf gets a non-critical digitalSignature-only keyUsage (leaf.ts leafKeyUsage): libvirt 9.0 logs a
    // warning and works; QEMU 7.2 (Debian) is silent.
    expect(pki.checkTlsCredentials({ consumer: "libvirt", role: "server", ...args })).toEqual({
      verdict: "warn",
      problems: [warning(`Certificate ${LV_SERVER} usage does not permit key encipherment`)],
    });
    expect(pki.checkTlsCredentials({ consumer: "qemu", role: "server", ...args })).toEqual(ACCEPT);
    const rsa = await pki.issueCertificate({
      issuer: own,
      keySpec: "rsa-2048",
      subject: { commonName: "h2" },
    });
    const rsaArgs = { caCertPem: own.certPem, certPem: rsa.certPem, keyPem: rsa.keyPem, serverNames: ["h2"] };
    expect(pki.checkTlsCredentials({ consumer: "libvirt", role: "server", ...rsaArgs })).toEqual(ACCEPT);
  });
});

describe("times (virNetTLSContextCheckCertTimes, qcrypto_tls_creds_check_cert_times)", () => {
  test("an expired or not yet active certificate", () => {
    const s = { caCertPem: ca.certPem, certPem: server.certPem };
    expect(lvServer({ ...s, now: new Date(NOW.getTime() + 31 * DAY) }).problems).toContainEqual(
      err(`The server certificate ${LV_SERVER} has expired`),
    );
    expect(lvServer({ ...s, now: new Date(NOW.getTime() - DAY) }).problems).toContainEqual(
      err(`The server certificate ${LV_SERVER} is not yet active`),
    );
    expect(
      lvClient({ caCertPem: ca.certPem, certPem: client.certPem, now: new Date(NOW.getTime() + 31 * DAY) })
        .problems,
    ).toContainEqual(err(`The client certificate ${LV_CLIENT} has expired`));
    expect(qServer({ ...s, now: new Date(NOW.getTime() + 29 * DAY) })).toEqual(ACCEPT);
  });

  test("every certificate of the CA file is checked, not only the issuer", async () => {
    const old = await cert({ subject: "/CN=Old CA", ext: CA_EXT, days: 1 });
    const bundle = ca.certPem + old.certPem;
    expect(lvServer({ caCertPem: bundle, certPem: server.certPem })).toEqual(ACCEPT);
    const later = new Date(NOW.getTime() + 2 * DAY);
    const r = lvServer({ caCertPem: bundle, certPem: server.certPem, now: later });
    expect(r.verdict).toBe("reject");
    expect(r.problems).toEqual([err(`The CA certificate ${LV_CA} has expired`)]);
    expect(qServer({ caCertPem: bundle, certPem: server.certPem, now: later }).problems).toEqual([
      err(`The CA certificate ${Q_CA} has expired`),
    ]);
  });
});

describe("basicConstraints", () => {
  test("a leaf that is a CA, a CA that is not, a CA without basicConstraints", async () => {
    const leafCa = await cert({ subject: "/CN=h", ext: ["basicConstraints=critical,CA:TRUE"], issuer: ca });
    expect(lvServer({ caCertPem: ca.certPem, certPem: leafCa.certPem }).problems[0]).toEqual(
      err(`The certificate ${LV_SERVER} basic constraints show a CA, but we need one for a server`),
    );
    const notCa = await cert({ subject: "/CN=Not CA", ext: ["basicConstraints=critical,CA:FALSE"] });
    expect(lvServer({ caCertPem: notCa.certPem, certPem: server.certPem }).problems[0]).toEqual(
      err(`The certificate ${LV_CA} basic constraints do not show a CA`),
    );
    const noBc = await cert({ subject: "/CN=No BC", ext: ["keyUsage=keyCertSign"] });
    expect(qServer({ caCertPem: noBc.certPem, certPem: server.certPem }).problems[0]).toEqual(
      err(`The certificate ${Q_CA} is missing basic constraints for a CA`),
    );
    const leafNoBc = await cert({
      subject: "/CN=h",
      ext: ["keyUsage=critical,digitalSignature,keyEncipherment"],
      issuer: ca,
    });
    expect(lvServer({ caCertPem: ca.certPem, certPem: leafNoBc.certPem })).toEqual(ACCEPT);
  });
});

describe("keyUsage", () => {
  test("certtool's default for an EC key (critical digitalSignature only): libvirt 9.0 refuses, QEMU 7.2 (Debian) accepts", async () => {
    const ds = await cert({
      subject: "/CN=compute1",
      ext: [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=serverAuth",
      ],
      issuer: ca,
    });
    expect(lvServer({ caCertPem: ca.certPem, certPem: ds.certPem })).toEqual({
      verdict: "reject",
      problems: [err(`Certificate ${LV_SERVER} usage does not permit key encipherment`)],
    });
    expect(qServer({ caCertPem: ca.certPem, certPem: ds.certPem })).toEqual(ACCEPT);
  });

  test("non-critical: libvirt warns", async () => {
    const ds = await cert({
      subject: "/CN=compute1",
      ext: ["basicConstraints=critical,CA:FALSE", "keyUsage=digitalSignature", "extendedKeyUsage=serverAuth"],
      issuer: ca,
    });
    expect(lvServer({ caCertPem: ca.certPem, certPem: ds.certPem })).toEqual({
      verdict: "warn",
      problems: [warning(`Certificate ${LV_SERVER} usage does not permit key encipherment`)],
    });
  });

  test("no digitalSignature: refused at start-up when critical, in the handshake when not", async () => {
    const ke = (critical: boolean) =>
      cert({
        subject: "/CN=compute1",
        ext: ["basicConstraints=critical,CA:FALSE", `keyUsage=${critical ? "critical," : ""}keyEncipherment`],
        issuer: ca,
      });
    const crit = await ke(true);
    expect(lvServer({ caCertPem: ca.certPem, certPem: crit.certPem }).problems).toEqual([
      err(`Certificate ${LV_SERVER} usage does not permit digital signature`),
    ]);
    expect(qServer({ caCertPem: ca.certPem, certPem: crit.certPem }).problems).toEqual([
      err(`Certificate ${Q_SERVER} usage does not permit digital signature`),
    ]);
    const loose = await ke(false);
    const lv = lvServer({ caCertPem: ca.certPem, certPem: loose.certPem });
    expect(lv.verdict).toBe("reject");
    expect(lv.problems[0]).toEqual(
      warning(`Certificate ${LV_SERVER} usage does not permit digital signature`),
    );
    expect(lv.problems[1].severity).toBe("error");
    expect(lv.problems[1].message).toMatch(
      /no TLS handshake can complete: a ec key has no key exchange without a signature/,
    );
    const q = qServer({ caCertPem: ca.certPem, certPem: loose.certPem });
    expect(q.verdict).toBe("reject");
    expect(q.problems).toHaveLength(1);
    expect(q.problems[0].message).toMatch(
      /^Certificate \/etc\/pki\/qemu\/server-cert.pem usage does not permit digital signature, so no TLS handshake/,
    );
  });

  test("a CA keyUsage without keyCertSign", async () => {
    const caNoSign = (critical: boolean) =>
      cert({
        subject: "/CN=Weak CA",
        ext: ["basicConstraints=critical,CA:TRUE", `keyUsage=${critical ? "critical," : ""}cRLSign`],
      });
    const crit = await caNoSign(true);
    const leaf = await cert({ subject: "/CN=compute1", ext: SERVER_EXT, issuer: crit });
    expect(lvServer({ caCertPem: crit.certPem, certPem: leaf.certPem }).problems).toEqual([
      err(`Certificate ${LV_CA} usage does not permit certificate signing`),
      err(
        `Our own certificate ${LV_SERVER} failed validation against ${LV_CA}: The certificate is not trusted.`,
      ),
    ]);
    const loose = await caNoSign(false);
    const leaf2 = await cert({ subject: "/CN=compute1", ext: SERVER_EXT, issuer: loose });
    // Only a warning from libvirt's own check, but GnuTLS refuses the chain (verify.c: keyUsage without keyCertSign).
    expect(lvServer({ caCertPem: loose.certPem, certPem: leaf2.certPem }).problems).toEqual([
      warning(`Certificate ${LV_CA} usage does not permit certificate signing`),
      err(
        `Our own certificate ${LV_SERVER} failed validation against ${LV_CA}: The certificate is not trusted.`,
      ),
    ]);
    expect(qServer({ caCertPem: loose.certPem, certPem: leaf2.certPem }).problems).toEqual([
      err(
        `Our own certificate ${Q_SERVER} failed validation against ${Q_CA}: The certificate is not trusted`,
      ),
    ]);
  });

  test("a client certificate must allow signatures", async () => {
    const rsaClient = await cert({
      subject: "/CN=client1",
      ext: ["basicConstraints=critical,CA:FALSE", "keyUsage=keyEncipherment", "extendedKeyUsage=clientAuth"],
      issuer: ca,
      keyType: "rsa",
    });
    const r = qClient({ caCertPem: ca.certPem, certPem: rsaClient.certPem });
    expect(r.verdict).toBe("reject");
    expect(r.problems[0].message).toMatch(/a TLS client must sign the handshake/);
  });
});

describe("extendedKeyUsage", () => {
  const withEku = (eku: string) =>
    cert({ subject: "/CN=compute1", ext: ["basicConstraints=critical,CA:FALSE", eku], issuer: ca });

  test("the wrong purpose: a warning when not critical, an error when critical, in each consumer's words", async () => {
    const loose = await withEku("extendedKeyUsage=clientAuth");
    expect(lvServer({ caCertPem: ca.certPem, certPem: loose.certPem })).toEqual({
      verdict: "warn",
      problems: [warning(`Certificate ${LV_SERVER} purpose does not allow use for with a TLS server`)],
    });
    expect(qServer({ caCertPem: ca.certPem, certPem: loose.certPem })).toEqual(ACCEPT);
    const crit = await withEku("extendedKeyUsage=critical,clientAuth");
    expect(lvServer({ caCertPem: ca.certPem, certPem: crit.certPem }).problems).toEqual([
      err(`Certificate ${LV_SERVER} purpose does not allow use for with a TLS server`),
    ]);
    expect(qServer({ caCertPem: ca.certPem, certPem: crit.certPem }).problems).toEqual([
      err(`Certificate ${Q_SERVER} purpose does not allow use with a TLS server`),
    ]);
    expect(lvClient({ caCertPem: ca.certPem, certPem: crit.certPem })).toEqual(ACCEPT);
  });

  test("libvirt 9.0's STRNEQ: anyExtendedKeyUsage allows nothing, any other purpose allows both; QEMU the other way", async () => {
    const any = await withEku("extendedKeyUsage=critical,anyExtendedKeyUsage");
    expect(lvServer({ caCertPem: ca.certPem, certPem: any.certPem }).problems).toEqual([
      err(`Certificate ${LV_SERVER} purpose does not allow use for with a TLS server`),
    ]);
    expect(qServer({ caCertPem: ca.certPem, certPem: any.certPem })).toEqual(ACCEPT);
    const code = await withEku("extendedKeyUsage=critical,codeSigning");
    expect(lvServer({ caCertPem: ca.certPem, certPem: code.certPem })).toEqual(ACCEPT);
    expect(qClient({ caCertPem: ca.certPem, certPem: code.certPem }).problems).toEqual([
      err("Certificate /etc/pki/qemu/client-cert.pem purpose does not allow use with a TLS client"),
    ]);
  });
});

describe("the CA file and the certificate file", () => {
  test("libvirt reads at most 64 KiB of the CA file; QEMU has no limit", () => {
    const padded = ca.certPem + "#".repeat(65_536) + "\n";
    expect(lvServer({ caCertPem: padded, certPem: server.certPem }).problems).toEqual([
      err(`Failed to read file '${LV_CA}': Value too large for defined data type`),
    ]);
    expect(qServer({ caCertPem: padded, certPem: server.certPem })).toEqual(ACCEPT);
    expect(
      lvServer({ caCertPem: ca.certPem, certPem: server.certPem + "#".repeat(70_000) }).problems,
    ).toEqual([err(`Failed to read file '${LV_SERVER}': Value too large for defined data type`)]);
  });

  test("only 16 CA certificates are imported for the start-up check", async () => {
    const others: string[] = [];
    for (let i = 0; i < 16; i++)
      others.push((await cert({ subject: `/CN=Other CA ${i}`, ext: CA_EXT })).certPem);
    const first = [ca.certPem, ...others].join("");
    const r = lvServer({ caCertPem: first, certPem: server.certPem });
    expect(r.verdict).toBe("warn");
    expect(r.problems[0].message).toMatch(/holds 17 certificates: only the first 16 are checked/);
    const last = [...others, ca.certPem].join("");
    expect(lvServer({ caCertPem: last, certPem: server.certPem }).problems).toContainEqual(
      err(
        `Our own certificate ${LV_SERVER} failed validation against ${LV_CA}: The certificate hasn't got a known issuer.`,
      ),
    );
  });

  test("no certificate in a file", () => {
    expect(lvServer({ caCertPem: "nothing", certPem: server.certPem }).problems).toEqual([
      err(`Unable to import CA certificate list ${LV_CA}`),
    ]);
    expect(lvServer({ caCertPem: ca.certPem, certPem: "nothing" }).problems).toEqual([
      err(`Unable to import server certificate ${LV_SERVER}`),
    ]);
    expect(qServer({ caCertPem: ca.certPem, certPem: "nothing" }).problems).toEqual([
      err(`Unable to import server certificate ${Q_SERVER}: Base64 unexpected header error.`),
    ]);
  });

  test("only the first block of the certificate file is checked: an intermediate belongs in the CA file", async () => {
    const inter = await cert({ subject: "/CN=Intermediate", ext: CA_EXT, issuer: ca });
    const leaf = await cert({ subject: "/CN=compute1", ext: SERVER_EXT, issuer: inter });
    const r = lvServer({ caCertPem: ca.certPem, certPem: leaf.certPem + inter.certPem });
    expect(r.problems[0]).toEqual(
      err(
        `Our own certificate ${LV_SERVER} failed validation against ${LV_CA}: The certificate hasn't got a known issuer.`,
      ),
    );
    expect(r.problems[1].message).toMatch(/put intermediate CAs in \/etc\/pki\/CA\/cacert.pem/);
    expect(lvServer({ caCertPem: ca.certPem + inter.certPem, certPem: leaf.certPem })).toEqual(ACCEPT);
  });

  test("a chain certificate in the certificate file is time-checked by the peer", async () => {
    // A re-issued intermediate (same name and key) is in the CA file; a stale short-lived copy stays in the
    // certificate file, which GnuTLS sends as the chain and the peer time-checks as a CA.
    const interKey = await key("ec", true);
    const stale = await cert({
      subject: "/CN=Intermediate",
      ext: CA_EXT,
      issuer: ca,
      days: 2,
      keyPem: interKey,
    });
    const fresh = await cert({
      subject: "/CN=Intermediate",
      ext: CA_EXT,
      issuer: ca,
      days: 365,
      keyPem: interKey,
    });
    const leaf = await cert({ subject: "/CN=compute1", ext: SERVER_EXT, issuer: fresh });
    const args = { caCertPem: ca.certPem + fresh.certPem, certPem: leaf.certPem + stale.certPem };
    expect(lvServer(args)).toEqual(ACCEPT);
    const later = new Date(NOW.getTime() + 3 * DAY);
    expect(lvServer({ ...args, now: later }).problems).toEqual([
      err("The CA certificate [session] has expired"),
    ]);
    expect(qServer({ ...args, now: later }).problems).toEqual([err("The certificate has expired")]);
  });
});

describe("checkTlsCaFile: the CA file alone (a CA brought from elsewhere, the fleet's trust bundle)", () => {
  test("its errors are exactly the CA file's errors of checkTlsCredentials", async () => {
    const noBasic = await cert({ subject: "/CN=No basic", ext: ["keyUsage=critical,keyCertSign"] });
    const notCa = await cert({ subject: "/CN=Not a CA", ext: ["basicConstraints=critical,CA:FALSE"] });
    const bundles = [
      ca.certPem,
      ca.certPem + noBasic.certPem,
      ca.certPem + notCa.certPem,
      ca.certPem + "#".repeat(65_536),
      "no certificate",
    ];
    for (const caCertPem of bundles) {
      const alone = pki.checkTlsCaFile({ caCertPem, now: NOW });
      const withLeaf = lvServer({ caCertPem, certPem: server.certPem });
      const caFileErrors = withLeaf.problems.filter(
        (x) => x.severity === "error" && !x.message.startsWith("Our own certificate"),
      );
      expect(alone.problems.filter((x) => x.severity === "error")).toEqual(caFileErrors);
    }
    expect(pki.checkTlsCaFile({ caCertPem: ca.certPem + notCa.certPem, now: NOW }).problems).toEqual([
      err(`The certificate ${LV_CA} basic constraints do not show a CA`),
    ]);
    expect(
      pki.checkTlsCaFile({ caCertPem: ca.certPem + "#".repeat(65_536), consumer: "qemu", now: NOW }),
    ).toEqual(ACCEPT);
  });

  test("times of every certificate, and a warning for one ending before validUntil", () => {
    const later = new Date(NOW.getTime() + 3651 * DAY);
    expect(pki.checkTlsCaFile({ caCertPem: ca.certPem, now: later }).problems).toEqual([
      err(`The CA certificate ${LV_CA} has expired`),
    ]);
    const before = new Date(NOW.getTime() - DAY);
    expect(pki.checkTlsCaFile({ caCertPem: ca.certPem, now: before, file: "ca.pem" }).problems).toEqual([
      err("The CA certificate ca.pem is not yet active"),
    ]);
    const r = pki.checkTlsCaFile({
      caCertPem: ca.certPem,
      now: NOW,
      validUntil: new Date(NOW.getTime() + 4000 * DAY),
      validUntilReason: "the next planned renewal",
    });
    expect(r.verdict).toBe("warn");
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].message).toMatch(
      /^The CA certificate O=Example,CN=Example CA in \/etc\/pki\/CA\/cacert\.pem expires at \S+, before the next planned renewal \(\S+\): from then on libvirtd and QEMU refuse to start/,
    );
    expect(
      pki.checkTlsCaFile({ caCertPem: ca.certPem, now: NOW, validUntil: new Date(NOW.getTime() + DAY) }),
    ).toEqual(ACCEPT);
  });

  test("arguments of the wrong type are refused with the field named", () => {
    expect(() => pki.checkTlsCaFile({ caCertPem: 5 as never })).toThrow(/^caCertPem: must be a PEM text/);
    expect(() => pki.checkTlsCaFile({ caCertPem: ca.certPem, validUntil: new Date(NaN) })).toThrow(
      /^validUntil: must be a valid Date/,
    );
    expect(() => pki.checkTlsCaFile({ caCertPem: ca.certPem, consumer: "x" as never })).toThrow(/^consumer:/);
  });
});

describe("the certificate against the CA file (gnutls_x509_crt_list_verify)", () => {
  test("an unknown issuer, a forged signature, an insecure algorithm, an unknown critical extension", async () => {
    const otherCa = await cert({ subject: "/CN=Other CA", ext: CA_EXT });
    expect(lvServer({ caCertPem: otherCa.certPem, certPem: server.certPem }).problems).toEqual([
      err(
        `Our own certificate ${LV_SERVER} failed validation against ${LV_CA}: The certificate hasn't got a known issuer.`,
      ),
    ]);
    // Same name, another key, no key identifiers: found as issuer, signature fails.
    const twinKey = await key("ec", true);
    const noAki = await cert({
      subject: "/CN=compute1",
      ext: ["basicConstraints=critical,CA:FALSE", "authorityKeyIdentifier=none", "subjectKeyIdentifier=none"],
      issuer: ca,
    });
    expect(lvServer({ caCertPem: ca.certPem, certPem: noAki.certPem })).toEqual(ACCEPT);
    const twinNoSki = await cert({
      subject: "/O=Example/CN=Example CA",
      ext: [...CA_EXT, "subjectKeyIdentifier=none"],
      keyPem: twinKey,
    });
    expect(qServer({ caCertPem: twinNoSki.certPem, certPem: noAki.certPem }).problems).toEqual([
      err(
        `Our own certificate ${Q_SERVER} failed validation against ${Q_CA}: The certificate is not trusted`,
      ),
    ]);
    const sha1 = await cert({ subject: "/CN=compute1", ext: SERVER_EXT, issuer: ca, digest: "sha1" });
    expect(lvServer({ caCertPem: ca.certPem, certPem: sha1.certPem }).problems).toEqual([
      err(
        `Our own certificate ${LV_SERVER} failed validation against ${LV_CA}: The certificate uses an insecure algorithm`,
      ),
    ]);
    const crit = await cert({
      subject: "/CN=compute1",
      ext: [...SERVER_EXT, "1.3.6.1.4.1.99999.1=critical,ASN1:NULL"],
      issuer: ca,
    });
    expect(lvServer({ caCertPem: ca.certPem, certPem: crit.certPem }).problems).toEqual([
      err(
        `Our own certificate ${LV_SERVER} failed validation against ${LV_CA}: The certificate is not trusted.`,
      ),
    ]);
    const known = await cert({
      subject: "/CN=compute1",
      ext: [...SERVER_EXT, "certificatePolicies=critical,1.2.3.4"],
      issuer: ca,
    });
    expect(lvServer({ caCertPem: ca.certPem, certPem: known.certPem })).toEqual(ACCEPT);
  });
});

describe("the key", () => {
  test("a key that is not the certificate's", async () => {
    const other = await key("rsa");
    expect(lvServer({ caCertPem: ca.certPem, certPem: server.certPem, keyPem: other }).problems).toEqual([
      err(
        `Unable to set x509 key and certificate: ${LV_SERVER_KEY}, ${LV_SERVER}: The certificate and the given key do not match.`,
      ),
    ]);
    expect(qServer({ caCertPem: ca.certPem, certPem: server.certPem, keyPem: other }).problems).toEqual([
      err(
        `Cannot load certificate '${Q_SERVER}' & key '${Q_SERVER_KEY}': The certificate and the given key do not match.`,
      ),
    ]);
    const files = { caCert: "/srv/ca.pem", cert: "/srv/c.pem", key: "/srv/k.pem" };
    expect(
      lvServer({ caCertPem: ca.certPem, certPem: server.certPem, keyPem: other, files }).problems,
    ).toEqual([
      err(
        "Unable to set x509 key and certificate: /srv/k.pem, /srv/c.pem: The certificate and the given key do not match.",
      ),
    ]);
  });
});

describe("host names (gnutls_x509_crt_check_hostname)", () => {
  test("the CN is ignored once a DNS SAN exists; an IP matches only IP SANs", async () => {
    const withSan = await cert({
      subject: "/CN=cn-only.example.org",
      ext: ["basicConstraints=critical,CA:FALSE", "subjectAltName=DNS:san.example.org,DNS:198.51.100.7"],
      issuer: ca,
    });
    const s = { caCertPem: ca.certPem, certPem: withSan.certPem };
    expect(lvServer({ ...s, serverNames: ["san.example.org"] })).toEqual(ACCEPT);
    expect(lvServer({ ...s, serverNames: ["cn-only.example.org", "198.51.100.7"] }).problems).toEqual([
      err("Certificate [session] owner does not match the hostname cn-only.example.org"),
      err("Certificate [session] owner does not match the hostname 198.51.100.7"),
    ]);
    expect(qServer({ ...s, serverNames: ["cn-only.example.org"] }).problems).toEqual([
      err("Certificate does not match the hostname cn-only.example.org"),
    ]);
  });

  test("the CN is used without DNS and IP SANs, only for a server purpose", async () => {
    const cnOnly = await cert({
      subject: "/CN=cn-only.example.org",
      ext: ["basicConstraints=critical,CA:FALSE"],
      issuer: ca,
    });
    expect(
      lvServer({ caCertPem: ca.certPem, certPem: cnOnly.certPem, serverNames: ["CN-only.example.org"] }),
    ).toEqual(ACCEPT);
    const ipOnly = await cert({
      subject: "/CN=cn-only.example.org",
      ext: ["basicConstraints=critical,CA:FALSE", "subjectAltName=IP:198.51.100.7"],
      issuer: ca,
    });
    expect(
      lvServer({ caCertPem: ca.certPem, certPem: ipOnly.certPem, serverNames: ["cn-only.example.org"] })
        .verdict,
    ).toBe("reject");
    const emailOnly = await cert({
      subject: "/CN=cn-only.example.org",
      ext: ["basicConstraints=critical,CA:FALSE", "subjectAltName=email:a@example.org"],
      issuer: ca,
    });
    expect(
      lvServer({ caCertPem: ca.certPem, certPem: emailOnly.certPem, serverNames: ["cn-only.example.org"] }),
    ).toEqual(ACCEPT);
  });

  test("wildcards: leftmost label only, two dots after it", async () => {
    const wild = await cert({
      subject: "/CN=w",
      ext: [
        "basicConstraints=critical,CA:FALSE",
        "subjectAltName=DNS:*.example.org,DNS:*.org,DNS:a*.example.net",
      ],
      issuer: ca,
    });
    const p = wild.certPem;
    expect(pki.gnutlsCheckHostname(p, "host.example.org")).toBe(true);
    expect(pki.gnutlsCheckHostname(p, "a.b.example.org")).toBe(false);
    expect(pki.gnutlsCheckHostname(p, "example.org")).toBe(false);
    expect(pki.gnutlsCheckHostname(p, "anything.org")).toBe(false);
    expect(pki.gnutlsCheckHostname(p, "a*.example.net")).toBe(true);
    expect(pki.gnutlsCheckHostname(p, "ab.example.net")).toBe(false);
  });
});

describe("the DN allow list", () => {
  const c = () => ({ caCertPem: ca.certPem, certPem: client.certPem });
  test("libvirt: g_pattern_match_simple globs over the GnuTLS DN", () => {
    expect(lvClient({ ...c(), allowedDnList: ["C=GB,O=Example,CN=*"] })).toEqual(ACCEPT);
    expect(lvClient({ ...c(), allowedDnList: ["C=GB,O=Example,CN=client?"] })).toEqual(ACCEPT);
    expect(
      lvClient({ ...c(), allowedDnList: ["CN=client1", "C=GB,O=Example,CN=client[1]"] }).problems,
    ).toEqual([
      err(
        "Client's Distinguished Name is not on the list of allowed clients (tls_allowed_dn_list).  Use " +
          "'virt-pki-query-dn clientcert.pem' to view the Distinguished Name field in the client certificate, or " +
          "run this daemon with --verbose option.",
      ),
    ]);
    expect(lvClient({ ...c(), allowedDnList: [] }).verdict).toBe("reject");
    expect(lvClient(c())).toEqual(ACCEPT);
  });
  test("QEMU: fnmatch globs of an authz-list", () => {
    expect(qClient({ ...c(), allowedDnList: ["C=GB,O=Example,CN=client[0-9]"] })).toEqual(ACCEPT);
    expect(qClient({ ...c(), allowedDnList: ["C=GB,O=Example,CN=client[!1]"] }).problems).toEqual([
      err("TLS x509 authz check for C=GB,O=Example,CN=client1 is denied"),
    ]);
  });
  test("the glob functions", () => {
    expect(pki.gPatternMatchSimple("a[b]*", "a[b]c")).toBe(true);
    expect(pki.gPatternMatchSimple("a[b]*", "abc")).toBe(false);
    expect(pki.fnmatch("a[b]*", "abc")).toBe(true);
    expect(pki.fnmatch("a\\*", "a*")).toBe(true);
    expect(pki.fnmatch("a\\*", "ab")).toBe(false);
    expect(pki.gPatternMatchSimple("*,CN=?", "O=x,CN=é")).toBe(true);
    expect(pki.fnmatch("[!a-c]x", "dx")).toBe(true);
    expect(pki.fnmatch("[!a-c]x", "bx")).toBe(false);
    expect(pki.fnmatch("[]]", "]")).toBe(true);
    expect(pki.fnmatch("[a", "[a")).toBe(true);
    expect(pki.fnmatch("*a*b", "xxaxxbxxb")).toBe(true);
  });

  test("a hostile pattern takes linear time, not exponential (a regular expression took 8 s for 8 stars)", () => {
    const dn = "C=GB,O=" + "a".repeat(2000) + ",CN=client";
    const stars = "*".repeat(40) + "x";
    expect(pki.gPatternMatchSimple(stars, dn)).toBe(false);
    expect(pki.fnmatch(stars, dn)).toBe(false);
    expect(pki.gPatternMatchSimple("*a*a*a*a*a*a*a*a*a*,CN=client", dn)).toBe(true);
  });
});

describe("what a program gives is never echoed raw in a message", () => {
  test("server names: a key, a newline, a huge text", async () => {
    const keyPem = await key("ec");
    const names = [keyPem, "evil\n[error] forged line", "x".repeat(5000)];
    const r = lvServer({ caCertPem: ca.certPem, certPem: server.certPem, serverNames: names.slice(0, 2) });
    const text = r.problems.map((p) => p.message).join("\n");
    expect(text).not.toContain("PRIVATE KEY");
    expect(text).not.toContain("\n[error]");
    expect(text).toContain('does not match the hostname "evil\\n[error] forged line"');
    expect(() =>
      lvServer({ caCertPem: ca.certPem, certPem: server.certPem, serverNames: names.slice(2) }),
    ).toThrow(/^serverNames\[0\]: is longer than 4096 characters/);
  });

  test("a CA's subject with a control character is escaped in the CA-ending warning", async () => {
    const evil = await cert({ subject: "/CN=Evil CA\nerror: forged line $(id)", ext: CA_EXT, days: 3 });
    const r = pki.checkTlsCaFile({
      caCertPem: evil.certPem,
      now: NOW,
      validUntil: new Date(NOW.getTime() + 30 * DAY),
    });
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].message).not.toContain("\n");
    expect(r.problems[0].message).toContain("CN=Evil CA\\nerror: forged line $(id)");
  });
});

test("arguments of the wrong type are refused with the field named", () => {
  const bad = (a: unknown) => () => pki.checkTlsCredentials(a as pki.CheckTlsCredentialsArgs);
  const ok = { consumer: "libvirt", role: "server", caCertPem: "", certPem: "" };
  expect(bad({ ...ok, consumer: "xen" })).toThrow(/consumer/);
  expect(bad({ ...ok, role: "peer" })).toThrow(/role/);
  expect(bad({ ...ok, certPem: 5 })).toThrow(/certPem/);
  expect(bad({ ...ok, serverNames: "h" })).toThrow(/serverNames/);
  expect(bad({ ...ok, now: new Date(NaN) })).toThrow(/now/);
  expect(bad({ ...ok, caCertPem: "x".repeat(5 * 1024 * 1024) })).toThrow(/caCertPem/);
});

describe("host matching agrees with GnuTLS 3.7.9 itself (certtool --verify --verify-hostname)", () => {
  const judge = async (certPem: string, host: string) => {
    const files = await writeFiles(dir, {
      [`h${counter++}.pem`]: certPem,
      [`hca${counter++}.pem`]: ca.certPem,
    });
    const [certFile, caFile] = Object.values(files);
    const r = await run("certtool", [
      "--verify",
      "--load-ca-certificate",
      caFile,
      "--verify-hostname",
      host,
      "--infile",
      certFile,
    ]);
    return r.code === 0;
  };

  test("names, addresses, wildcards and the CN fallback", async () => {
    const certs = [
      await cert({
        subject: "/CN=cn-only.example.org",
        ext: ["basicConstraints=critical,CA:FALSE", "subjectAltName=DNS:san.example.org,DNS:198.51.100.7"],
        issuer: ca,
      }),
      await cert({
        subject: "/CN=cn-only.example.org",
        ext: ["basicConstraints=critical,CA:FALSE"],
        issuer: ca,
      }),
      await cert({
        subject: "/CN=cn-only.example.org",
        ext: ["basicConstraints=critical,CA:FALSE", "extendedKeyUsage=clientAuth"],
        issuer: ca,
      }),
      await cert({
        subject: "/CN=cn-only.example.org",
        ext: ["basicConstraints=critical,CA:FALSE", "subjectAltName=IP:198.51.100.7,IP:2001:db8::7"],
        issuer: ca,
      }),
      await cert({
        subject: "/CN=w",
        ext: [
          "basicConstraints=critical,CA:FALSE",
          "subjectAltName=DNS:*.example.org,DNS:*.org,DNS:a*.example.net,DNS:*x.example.com",
        ],
        issuer: ca,
      }),
    ];
    const hosts = [
      "san.example.org",
      "SAN.Example.ORG",
      "cn-only.example.org",
      "198.51.100.7",
      "2001:db8::7",
      "2001:DB8:0:0::7",
      "host.example.org",
      "a.b.example.org",
      "example.org",
      "anything.org",
      "ab.example.net",
      "a*.example.net",
      "yx.example.com",
      "x.example.com",
      "y.x.example.com",
    ];
    const verdicts: boolean[] = [];
    for (const c of certs) {
      for (const host of hosts) {
        const gnutls = await judge(c.certPem, host);
        verdicts.push(gnutls);
        expect({ host, ours: pki.gnutlsCheckHostname(c.certPem, host) }).toEqual({ host, ours: gnutls });
      }
    }
    // The judge says yes and no: the chain itself verifies, only the names decide.
    expect(verdicts.filter((v) => v).length).toBeGreaterThan(5);
    expect(verdicts.filter((v) => !v).length).toBeGreaterThan(5);
  });
});

test("the certificate-against-CA-file verdict agrees with GnuTLS 3.7.9's certtool --verify", async () => {
  const weakCa = await cert({
    subject: "/CN=Weak CA",
    ext: ["basicConstraints=critical,CA:TRUE", "keyUsage=cRLSign"],
  });
  const otherCa = await cert({ subject: "/CN=Another CA", ext: CA_EXT });
  const pairs: [string, string, string][] = [
    ["good", ca.certPem, server.certPem],
    [
      "CA keyUsage without keyCertSign",
      weakCa.certPem,
      (await cert({ subject: "/CN=a", ext: SERVER_EXT, issuer: weakCa })).certPem,
    ],
    [
      "SHA-1",
      ca.certPem,
      (await cert({ subject: "/CN=b", ext: SERVER_EXT, issuer: ca, digest: "sha1" })).certPem,
    ],
    [
      "unknown critical extension",
      ca.certPem,
      (
        await cert({
          subject: "/CN=c",
          ext: [...SERVER_EXT, "1.3.6.1.4.1.99999.1=critical,ASN1:NULL"],
          issuer: ca,
        })
      ).certPem,
    ],
    [
      "critical certificatePolicies",
      ca.certPem,
      (
        await cert({
          subject: "/CN=d",
          ext: [...SERVER_EXT, "certificatePolicies=critical,1.2.3.4"],
          issuer: ca,
        })
      ).certPem,
    ],
    ["another CA", otherCa.certPem, server.certPem],
  ];
  for (const [what, caPem, leafPem] of pairs) {
    const f = await writeFiles(dir, { [`vca${counter++}.pem`]: caPem, [`vl${counter++}.pem`]: leafPem });
    const [caFile, leafFile] = Object.values(f);
    const r = await run("certtool", ["--verify", "--load-ca-certificate", caFile, "--infile", leafFile]);
    const gnutls = /Chain verification output: Verified\./.test(r.stdout);
    const ours = !lvServer({ caCertPem: caPem, certPem: leafPem }).problems.some((p) =>
      p.message.startsWith("Our own certificate"),
    );
    expect({ what, ours }).toEqual({ what, ours: gnutls });
  }
});
