/**
 * The certificate cases of libvirt 9.0's tests/virnettlscontexttest.c and tests/virnettlssessiontest.c and of
 * QEMU 7.2's tests/unit/test-crypto-tlscredsx509.c (with Debian's v7.2.22.diff), asked of checkTlsCredentials.
 * tests/pki/upstream/*.json hold every TLS_ROOT_REQ/TLS_CERT_REQ and every test registration as parsed from the
 * sources by tests/pki/upstream/parse.py; the certificates are built here the way the helpers
 * (virnettlshelpers.c, crypto-tls-x509-helpers.c) build them: one shared key, serial 01:02:03:04(:00), SHA-256,
 * validity now+start_offset hours to now+(expire_offset or 24) hours, no key identifiers, and each extension
 * present/critical exactly as requested. `reject` must equal the upstream test's expectFail; the real-daemon
 * judge of issue 12 is separate and not run here.
 */
import { generateKeyPairSync, KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import forge from "node-forge";
import { pki } from "../../index";
import * as der from "../../provider/pki/asn1";
import { altNamesToAsn1 } from "../../provider/pki/altnames";
import { signCertificate } from "../../provider/pki/certificate";
import { Extension, KeyUsage, keyUsage, OID } from "../../provider/pki/extensions";
import { spkiDer } from "../../provider/pki/keys";

interface Req {
  name: string;
  issuer: string | null;
  line: number;
  country: string | null;
  cn: string | null;
  altname1: string | null;
  altname2: string | null;
  ipaddr1: string | null;
  ipaddr2: string | null;
  bcEnable: boolean;
  bcCritical: boolean;
  bcIsCA: boolean;
  kuEnable: boolean;
  kuCritical: boolean;
  kuValue: string | number;
  kpEnable: boolean;
  kpCritical: boolean;
  kpOid1: string | null;
  kpOid2: string | null;
  startHours: number;
  expireHours: number;
}
interface Registration {
  line: number;
  name?: string;
  isServer: boolean;
  ca: string;
  cert: string;
  expectFail: string;
}
interface Suite {
  source: string;
  reqs: Req[];
  tests: Registration[];
  chains: Record<string, string[]>;
}

const load = (file: string): Suite =>
  JSON.parse(readFileSync(join(__dirname, "upstream", file), "utf8")) as Suite;

const GNUTLS_KEY: Record<string, KeyUsage> = {
  GNUTLS_KEY_DIGITAL_SIGNATURE: "digitalSignature",
  GNUTLS_KEY_NON_REPUDIATION: "nonRepudiation",
  GNUTLS_KEY_KEY_ENCIPHERMENT: "keyEncipherment",
  GNUTLS_KEY_DATA_ENCIPHERMENT: "dataEncipherment",
  GNUTLS_KEY_KEY_AGREEMENT: "keyAgreement",
  GNUTLS_KEY_KEY_CERT_SIGN: "keyCertSign",
  GNUTLS_KEY_CRL_SIGN: "cRLSign",
};
const GNUTLS_KP: Record<string, string> = {
  GNUTLS_KP_TLS_WWW_SERVER: OID.serverAuth,
  GNUTLS_KP_TLS_WWW_CLIENT: OID.clientAuth,
};

function name(req: Req): der.Asn1 {
  const rdn = (oid: string, type: number, value: string) =>
    der.set([der.seq([der.oid(oid), forge.asn1.create(forge.asn1.Class.UNIVERSAL, type, false, value)])]);
  return der.seq([
    ...(req.country ? [rdn("2.5.4.6", forge.asn1.Type.PRINTABLESTRING, req.country)] : []),
    ...(req.cn ? [rdn("2.5.4.3", forge.asn1.Type.UTF8, req.cn)] : []),
  ]);
}

function extensions(req: Req): Extension[] {
  const out: Extension[] = [];
  const dnsNames = [req.altname1, req.altname2].filter((x): x is string => x !== null);
  const ipAddresses = [req.ipaddr1, req.ipaddr2].filter((x): x is string => x !== null);
  if (dnsNames.length + ipAddresses.length > 0) {
    out.push({
      oid: OID.subjectAltName,
      critical: false,
      value: altNamesToAsn1({ dnsNames, ipAddresses, emailAddresses: [], uris: [] }),
    });
  }
  if (req.bcEnable) {
    out.push({ oid: OID.basicConstraints, critical: req.bcCritical, value: der.seq([der.bool(req.bcIsCA)]) });
  }
  if (req.kuEnable) {
    const bits = String(req.kuValue)
      .split("|")
      .map((s) => s.trim())
      .filter((s) => s !== "0")
      .map((s) => GNUTLS_KEY[s]);
    out.push(keyUsage(bits, req.kuCritical));
  }
  if (req.kpEnable) {
    const oids = [req.kpOid1, req.kpOid2].filter((x): x is string => x !== null).map((k) => GNUTLS_KP[k]);
    out.push({ oid: OID.extKeyUsage, critical: req.kpCritical, value: der.seq(oids.map((o) => der.oid(o))) });
  }
  return out;
}

/** Builds every request of a suite, issuers first, all with the one key. */
function build(suite: Suite, key: KeyObject, now: Date, serialHex: string): Map<string, string> {
  const pems = new Map<string, string>();
  const subjects = new Map<string, der.Asn1>();
  const pending = [...suite.reqs];
  while (pending.length > 0) {
    const i = pending.findIndex((r) => r.issuer === null || subjects.has(r.issuer));
    if (i < 0) throw new Error(`unresolvable issuers: ${pending.map((r) => r.name).join(", ")}`);
    const [req] = pending.splice(i, 1);
    const hour = 3_600_000;
    const subject = name(req);
    const certDer = signCertificate(
      {
        serialNumber: serialHex,
        issuer: req.issuer === null ? subject : (subjects.get(req.issuer) as der.Asn1),
        subject,
        validity: {
          notBefore: new Date(now.getTime() + req.startHours * hour),
          notAfter: new Date(now.getTime() + (req.expireHours || 24) * hour),
        },
        spki: spkiDer(key),
        extensions: extensions(req),
      },
      key,
    );
    subjects.set(req.name, subject);
    pems.set(req.name, der.derToPem(certDer, "CERTIFICATE"));
  }
  return pems;
}

/** The file a registration names: `xreq.filename`, or a written chain. */
function file(suite: Suite, pems: Map<string, string>, ref: string): string | undefined {
  const plain = ref.replace(/^WORKDIR\s*/, "").replace(/"/g, "");
  const req = plain.replace(/\.filename$/, "");
  if (pems.has(req)) return pems.get(req);
  const chain = suite.chains[plain];
  return chain ? chain.map((n) => pems.get(n) as string).join("") : undefined;
}

/** GnuTLS 3.7.9 is what Debian bookworm ships: the one version-dependent expectation evaluates to true. */
function expectFail(expr: string): boolean {
  if (expr === "true" || expr === "false") return expr === "true";
  if (expr === "(GNUTLS_VERSION_MAJOR == 3 && GNUTLS_VERSION_MINOR >= 1) || GNUTLS_VERSION_MAJOR > 3")
    return true;
  throw new Error(`unknown expectation ${expr}`);
}

const key = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
const keyPem = key.export({ type: "pkcs8", format: "pem" }).toString();
const NOW = new Date();

describe.each([
  ["libvirt" as const, "libvirt-9.0.0-virnettlscontexttest.json", "01020304"],
  ["qemu" as const, "qemu-7.2-test-crypto-tlscredsx509.json", "0102030405"],
])("%s: %s", (consumer, fixture, serial) => {
  const suite = load(fixture);
  const pems = build(suite, key, NOW, serial);
  const cases = suite.tests.map((t) => ({
    ...t,
    caPem: file(suite, pems, t.ca),
    certPem: file(suite, pems, t.cert),
  }));

  test("every registration is here: only the missing-file cases are left out (not a certificate case)", () => {
    const missing = cases.filter((c) => c.caPem === undefined || c.certPem === undefined);
    expect(missing.every((c) => /doesnotexist/.test(c.ca + c.cert))).toBe(true);
    expect(cases.length - missing.length).toBe(36);
  });

  /**
   * The upstream tests create a TLS context only: they judge the start-up check. Where that passes but
   * GnuTLS can never complete a handshake with the certificate (a keyUsage of keyCertSign only: no
   * digitalSignature for a TLS 1.3 server or any client, no keyEncipherment for TLS 1.2 RSA key exchange,
   * gnutls:auth/cert.c:1573-1577, :213), checkTlsCredentials rejects with its own handshake message; these
   * are the cases, to be confirmed by the real-daemon judge.
   */
  const HANDSHAKE_ONLY = consumer === "libvirt" ? [328, 416] : [352, 455];
  const handshake = (m: string) => /no TLS handshake can complete/.test(m);

  test.each(cases.filter((c) => c.caPem !== undefined && c.certPem !== undefined))(
    "line $line $name: $ca + $cert (expectFail $expectFail)",
    (c) => {
      const r = pki.checkTlsCredentials({
        consumer,
        role: c.isServer ? "server" : "client",
        caCertPem: c.caPem as string,
        certPem: c.certPem as string,
        keyPem,
        now: new Date(NOW.getTime() + 1000),
      });
      const errors = r.problems.filter((p) => p.severity === "error").map((p) => p.message);
      const startup = errors.filter((m) => !handshake(m));
      expect({ line: c.line, startupFails: startup.length > 0, errors }).toMatchObject({
        startupFails: expectFail(c.expectFail),
      });
      expect(errors.some(handshake)).toBe(HANDSHAKE_ONLY.includes(c.line));
    },
  );
});

describe("libvirt 9.0 tests/virnettlssessiontest.c", () => {
  const suite = load("libvirt-9.0.0-virnettlssessiontest.json");
  const pems = build(suite, key, NOW, "01020304");
  const at = new Date(NOW.getTime() + 1000);
  const chain = ["cacertrootreq", "cacertlevel1areq", "cacertlevel1breq", "cacertlevel2areq"]
    .map((n) => pems.get(n) as string)
    .join("");
  const pem = (n: string) => pems.get(n) as string;
  /** One DO_SESS_TEST: the server checks the client (DN list), the client checks the server (host name). */
  const session = (
    serverCa: string,
    clientCa: string,
    serverCrt: string,
    clientCrt: string,
    hostname: string,
    wildcards?: string[],
  ) => ({
    serverFails:
      pki.checkTlsCredentials({
        consumer: "libvirt",
        role: "client",
        caCertPem: serverCa, // the server verifies the client against its own CA file
        certPem: pem(clientCrt),
        allowedDnList: wildcards,
        now: at,
      }).verdict === "reject",
    clientFails:
      pki.checkTlsCredentials({
        consumer: "libvirt",
        role: "server",
        caCertPem: clientCa,
        certPem: pem(serverCrt),
        serverNames: [hostname],
        now: at,
      }).verdict === "reject",
  });
  const ca = () => pem("cacertreq");

  test.each([
    // [line, server cert, host name, DN globs, expectServerFail, expectClientFail]
    [334, "servercertreq", "libvirt.org", undefined, false, false],
    [356, "servercertalt1req", "libvirt.org", undefined, false, false],
    [358, "servercertalt1req", "www.libvirt.org", undefined, false, false],
    [360, "servercertalt1req", "wiki.libvirt.org", undefined, false, true],
    [363, "servercertalt2req", "libvirt.org", undefined, false, true],
    [365, "servercertalt2req", "www.libvirt.org", undefined, false, false],
    [367, "servercertalt2req", "wiki.libvirt.org", undefined, false, false],
    [396, "servercertreq", "libvirt.org", ["C=UK,CN=dogfood"], true, false],
    [398, "servercertreq", "libvirt.org", ["C=UK,CN=libvirt"], false, false],
    [400, "servercertreq", "libvirt.org", ["C=UK,CN=dogfood", "C=UK,CN=libvirt"], false, false],
    [402, "servercertreq", "libvirt.org", ["C=UK,CN=libvirtstuff"], true, false],
    [404, "servercertreq", "libvirt.org", ["C=UK,CN=libvirt*"], false, false],
    [406, "servercertreq", "libvirt.org", ["C=UK,CN=*virt*"], false, false],
  ] as const)("line %i: %s as %s, DN list %j", (_line, server, host, globs, serverFails, clientFails) => {
    expect(session(ca(), ca(), server, "clientcertreq", host, globs ? [...globs] : undefined)).toEqual({
      serverFails,
      clientFails,
    });
  });

  test("line 336 (DO_SESS_TEST_EXT): client and server from different CAs both fail", () => {
    // The server trusts cacertreq and gets a client certificate of altcacertreq; the client trusts
    // altcacertreq and gets the server's certificate of cacertreq.
    expect(session(ca(), pem("altcacertreq"), "servercertreq", "clientcertaltreq", "libvirt.org")).toEqual({
      serverFails: true,
      clientFails: true,
    });
  });

  test("line 457: the chain in the CA file", () => {
    expect(session(chain, chain, "servercertlevel3areq", "clientcertlevel2breq", "libvirt.org")).toEqual({
      serverFails: false,
      clientFails: false,
    });
  });
});
