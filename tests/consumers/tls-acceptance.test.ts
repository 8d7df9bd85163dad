/**
 * The real judges of tests/fixtures/tls-acceptance/cases.ts: for every upstream case, the certificates are made
 * with openssl (tests/support/tlsCases.ts) and installed into a REAL libvirtd 9.0 (`test:///` driver over TLS)
 * and `virsh -c test+tls://`, or a REAL `qemu-nbd` 7.2 (tls-creds-x509, endpoint=server) and `qemu-img info`
 * (endpoint=client). The judge's verdict is "accept" when the server started with its credentials AND the
 * client connected through it; it is asserted against the case's `observed` verdict where the real programs
 * differ from the upstream test, else against `expected`.
 *
 * Setup per case (see `TlsAcceptanceCase.peer`):
 * - context, role server: the case's CA file + certificate are the server's; the client gets `peer`.
 * - context, role client: the case's files are the client's; the server gets `peer`.
 * - session, role client (the daemon judges a client certificate): daemon = case CA + peer certificate
 *   (+ tls_allowed_dn_list); virsh = peer CA + case certificate.
 * - session, role server (virsh judges the server certificate): daemon = peer CA + case certificate;
 *   virsh = case CA + peer certificate, connecting to `serverNames[0]` through a private hosts file.
 * (In session role client cases virsh connects to the peer server certificate's name, so that only the
 * daemon's check of the client certificate decides.)
 * The client connects to the judged server certificate's first DNS name, else its CN (virsh: a private
 * /etc/hosts maps it to the loopback address; qemu-img: `tls-hostname=`).
 *
 * Servers with the same credentials are started once and shared; cases run a few at a time. Every process
 * is stopped in afterAll. Run under `flock /tmp/vpki-hosts.lock` (the test bed is shared).
 */
import { promises as fs } from "fs";
import * as path from "path";
import { CertSpec, TLS_ACCEPTANCE_CASES, TlsAcceptanceCase, Verdict } from "../fixtures/tls-acceptance/cases";
import { Libvirtd, startLibvirtd, virshConnect } from "../support/libvirtd";
import { removeDir, tempDir } from "../support/programs";
import { createRawImage, QemuNbd, qemuImgInfo, startQemuNbd } from "../support/qemu";
import { CertFactory } from "../support/tlsCases";
import { checkTlsCredentials, TlsCredentialsVerdict } from "../../provider/pki/acceptance";

/** How many cases are judged at once. */
const PARALLEL = 6;

/** What a real judge saw for one case. */
interface Observation {
  verdict: Verdict;
  /** Whether the server started with its credentials. */
  serverStarted: boolean;
  /** Whether the client connected (false when the server did not start). */
  clientConnected: boolean;
  /** The server's error (when it did not start) or the client's output (when it did not connect). */
  detail: string;
  /**
   * libvirt context cases: the VIR_WARN lines of virnettlscontext.c that libvirtd (role server) or virsh (role
   * client, `LIBVIRT_LOG_OUTPUTS=3:stderr`) logged while loading the case's credentials, file paths reduced to
   * base names.
   */
  loadWarnings?: string[];
}

/** One side's credentials: the CA file's certificates and the own certificate (null: file absent). */
interface Side {
  ca: CertSpec[];
  cert: CertSpec | null;
}

/** The name a client must connect to for `cert`: its first DNS name, else its CN. */
function hostFor(cert: CertSpec | null): string {
  if (cert === null) return "localhost";
  return cert.altNames.dns[0] ?? cert.subject.CN ?? "localhost";
}

/** The two sides of a case's real setup, the host name the client connects to and the daemon's DN list. */
function setupOf(c: TlsAcceptanceCase): { server: Side; client: Side; host: string; dnList?: string[] } {
  const own: Side = { ca: c.ca, cert: c.cert };
  if (c.stage === "context") {
    return c.role === "server"
      ? { server: own, client: c.peer, host: hostFor(c.cert) }
      : { server: c.peer, client: own, host: hostFor(c.peer.cert) };
  }
  // The daemon judges a client certificate: virsh connects to a name the server certificate matches, so that
  // only the daemon's check decides. virsh judges the server certificate: it connects to the case's name.
  return c.role === "client"
    ? {
        server: { ca: c.ca, cert: c.peer.cert },
        client: { ca: c.peer.ca, cert: c.cert },
        host: hostFor(c.peer.cert),
        dnList: c.allowedDnList,
      }
    : {
        server: { ca: c.peer.ca, cert: c.cert },
        client: { ca: c.ca, cert: c.peer.cert },
        host: c.serverNames?.[0] ?? hostFor(c.cert),
      };
}

function sideKey(side: Side): string {
  return `${side.ca.map((s) => s.id).join("+")}|${side.cert?.id ?? "-"}`;
}

/** Runs `work` over `items`, at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(runners);
}

/** Shortens a program's output to its informative lines. */
function excerpt(text: string, pattern: RegExp): string {
  const lines = text.split("\n").filter((l) => pattern.test(l));
  return (lines.length > 0 ? lines : text.split("\n").slice(-3)).join(" | ").slice(0, 600);
}

/** The daemon's last error lines, without the harmless ones of the readiness probe (see libvirtd.ts). */
function daemonErrors(daemon: Libvirtd): string {
  return daemon
    .log()
    .split("\n")
    .filter((l) => / error : /.test(l) && !/non-properly terminated/.test(l))
    .slice(-2)
    .map((l) => l.replace(/^.* error : /, ""))
    .join(" | ");
}

/** The warnings virnettlscontext.c logged in libvirtd's log, paths reduced to base names (see Observation). */
function daemonLoadWarnings(log: string): string[] {
  return log
    .split("\n")
    .filter((l) => / warning : virNetTLSContext/.test(l))
    .map((l) => l.replace(/^.* warning : \S+ : /, "").replace(/\/\S*\/([^/\s]+)/g, "$1"));
}

const work: { dir: string } = { dir: "" };
const factories = new Map<CertSpec["key"], Promise<CertFactory>>();
const servers = new Map<string, Promise<Libvirtd | QemuNbd | Error>>();
const observations = new Map<string, Observation>();
let imagePath = "";
let dirCounter = 0;

function factory(key: CertSpec["key"]): Promise<CertFactory> {
  let f = factories.get(key);
  if (f === undefined) {
    f = CertFactory.create(key);
    factories.set(key, f);
  }
  return f;
}

/** Writes one side's files into a new directory under the work dir (absent files are not written). */
async function writeSide(
  side: Side,
  key: CertSpec["key"],
  names: { ca: string; cert: string; key: string },
): Promise<string> {
  const f = await factory(key);
  const dir = path.join(work.dir, `d${++dirCounter}`);
  await fs.mkdir(dir);
  if (side.ca.length > 0) await f.writeBundle(path.join(dir, names.ca), side.ca);
  if (side.cert !== null) await f.writeBundle(path.join(dir, names.cert), [side.cert]);
  await fs.copyFile(f.keyFile, path.join(dir, names.key));
  return dir;
}

const LIBVIRT_SERVER = { ca: "cacert.pem", cert: "servercert.pem", key: "serverkey.pem" };
const LIBVIRT_CLIENT = { ca: "cacert.pem", cert: "clientcert.pem", key: "clientkey.pem" };
const QEMU_SERVER = { ca: "ca-cert.pem", cert: "server-cert.pem", key: "server-key.pem" };
const QEMU_CLIENT = { ca: "ca-cert.pem", cert: "client-cert.pem", key: "client-key.pem" };

async function judgeLibvirt(c: TlsAcceptanceCase): Promise<Observation> {
  const { server, client, host, dnList } = setupOf(c);
  const key = c.cert?.key ?? c.peer.cert?.key ?? "ec-p384";
  const skey = `libvirt|${sideKey(server)}|${(dnList ?? []).join(";")}`;
  let started = servers.get(skey);
  if (started === undefined) {
    started = (async () => {
      const dir = await writeSide(server, key, LIBVIRT_SERVER);
      try {
        return await startLibvirtd({ pkiDir: dir, tlsAllowedDnList: dnList, startTimeoutMs: 10_000 });
      } catch (err) {
        return err as Error;
      }
    })();
    servers.set(skey, started);
  }
  const daemon = await started;
  if (daemon instanceof Error) {
    return {
      verdict: "reject",
      serverStarted: false,
      clientConnected: false,
      detail: excerpt(daemon.message, / error : /).replace(/^.* error : /, ""),
      loadWarnings:
        c.stage === "context" && c.role === "server" ? daemonLoadWarnings(daemon.message) : undefined,
    };
  }
  const loadWarnings =
    c.stage === "context" && c.role === "server" ? daemonLoadWarnings((daemon as Libvirtd).log()) : undefined;
  const pkiPath = await writeSide(client, key, LIBVIRT_CLIENT);
  const r = await virshConnect({
    host,
    port: (daemon as Libvirtd).port,
    pkiPath,
    hosts: { [host]: (daemon as Libvirtd).host },
    // virsh's own warnings (level 3) on stderr: the load warnings of its client credentials.
    env: { LIBVIRT_LOG_OUTPUTS: "3:stderr" },
  });
  const clientWarnings =
    c.stage === "context" && c.role === "client" ? daemonLoadWarnings(r.output) : undefined;
  return {
    verdict: r.ok ? "accept" : "reject",
    serverStarted: true,
    clientConnected: r.ok,
    detail: r.ok ? "" : `${excerpt(r.output, /error/i)} || daemon: ${daemonErrors(daemon as Libvirtd)}`,
    loadWarnings: loadWarnings ?? clientWarnings,
  };
}

async function judgeQemu(c: TlsAcceptanceCase): Promise<Observation> {
  const { server, client, host } = setupOf(c);
  const key = c.cert?.key ?? c.peer.cert?.key ?? "rsa-3072";
  const skey = `qemu|${sideKey(server)}`;
  let started = servers.get(skey);
  if (started === undefined) {
    started = (async () => {
      const credsDir = await writeSide(server, key, QEMU_SERVER);
      try {
        return await startQemuNbd({ credsDir, kind: "x509", imagePath, startTimeoutMs: 10_000 });
      } catch (err) {
        return err as Error;
      }
    })();
    servers.set(skey, started);
  }
  const nbd = await started;
  if (nbd instanceof Error) {
    return {
      verdict: "reject",
      serverStarted: false,
      clientConnected: false,
      detail: excerpt(nbd.message, /qemu-nbd:|error|certificate/i),
    };
  }
  const credsDir = await writeSide(client, key, QEMU_CLIENT);
  const r = await qemuImgInfo({
    host: (nbd as QemuNbd).host,
    port: (nbd as QemuNbd).port,
    credsDir,
    kind: "x509",
    tlsHostname: host,
  });
  return {
    verdict: r.ok ? "accept" : "reject",
    serverStarted: true,
    clientConnected: r.ok,
    detail: r.ok ? "" : excerpt(r.output, /qemu-img:|error|certificate/i),
  };
}

beforeAll(async () => {
  work.dir = await tempDir("virt-pki-tls-acceptance-");
  imagePath = path.join(work.dir, "disk.raw");
  await createRawImage(imagePath);
  await pool(TLS_ACCEPTANCE_CASES, PARALLEL, async (c) => {
    observations.set(c.id, c.consumer === "libvirt" ? await judgeLibvirt(c) : await judgeQemu(c));
  });
  const rows = TLS_ACCEPTANCE_CASES.map((c) => {
    const o = observations.get(c.id);
    return `${c.id}\t${c.expected}\t${o?.verdict}\tserver=${o?.serverStarted} client=${o?.clientConnected}\t${o?.detail}\t${JSON.stringify(o?.loadWarnings)}`;
  });
  if (process.env.TLS_ACCEPTANCE_REPORT !== undefined) {
    await fs.writeFile(process.env.TLS_ACCEPTANCE_REPORT, rows.join("\n") + "\n");
  }
}, 300_000);

afterAll(async () => {
  const running = await Promise.all(servers.values());
  await Promise.all(running.map((s) => (s instanceof Error ? undefined : s.stop())));
  await Promise.all([...factories.values()].map(async (f) => (await f).dispose()));
  if (work.dir !== "") await removeDir(work.dir);
}, 60_000);

test("every case id is unique", () => {
  const ids = TLS_ACCEPTANCE_CASES.map((c) => c.id);
  expect(new Set(ids).size).toBe(ids.length);
});

describe.each(TLS_ACCEPTANCE_CASES.map((c) => [c.id, c] as const))("%s", (_id, c) => {
  test(`the real ${c.consumer} ${c.observed !== undefined ? "(observed)" : "(as upstream)"} ${c.observed ?? c.expected}s`, () => {
    const o = observations.get(c.id);
    expect(o).toBeDefined();
    expect({ verdict: o?.verdict, detail: o?.detail }).toEqual({
      verdict: c.observed ?? c.expected,
      detail: expect.any(String),
    });
    if (c.consumer === "libvirt" && c.stage === "context") {
      expect(o?.loadWarnings).toEqual(c.daemonWarnings ?? []);
    }
  });
});

/**
 * What `pki.checkTlsCredentials` predicts for a case, from the very files the judge got: the judged side's
 * certificate checked against the CA file that judges it, the name the client connected to (a server
 * certificate), the daemon's tls_allowed_dn_list (a client certificate in a session case). Undefined for a
 * case whose certificate or CA file is absent: the function takes certificates, not missing files.
 */
async function predict(c: TlsAcceptanceCase): Promise<TlsCredentialsVerdict | undefined> {
  if (c.cert === null || c.ca.length === 0) return undefined;
  const f = await factory(c.cert.key);
  const caCertPem = (await Promise.all(c.ca.map((s) => f.certPem(s)))).join("");
  const { host, dnList } = setupOf(c);
  return checkTlsCredentials({
    consumer: c.consumer,
    role: c.role,
    caCertPem,
    certPem: await f.certPem(c.cert),
    keyPem: await fs.readFile(f.keyFile, "utf8"),
    serverNames: c.role === "server" ? [host] : undefined,
    allowedDnList: c.stage === "session" && c.role === "client" ? dnList : undefined,
    now: new Date(f.now),
  });
}

describe.each(
  TLS_ACCEPTANCE_CASES.filter((c) => c.cert !== null && c.ca.length > 0).map((c) => [c.id, c] as const),
)("checkTlsCredentials agrees with the real judge: %s", (_id, c) => {
  test("same verdict (reject exactly when the real program refuses)", async () => {
    const o = observations.get(c.id);
    const p = await predict(c);
    const predicted = p?.verdict === "reject" ? "reject" : "accept";
    expect({ judge: o?.verdict, predicted, problems: p?.problems }).toEqual({
      judge: o?.verdict,
      predicted: o?.verdict,
      problems: expect.anything(),
    });
    if (c.consumer === "libvirt" && c.stage === "context" && o?.verdict === "accept") {
      // warn exactly when libvirt logged a warning loading these credentials
      expect({ warn: p?.verdict === "warn", logged: o.loadWarnings }).toEqual({
        warn: (o.loadWarnings ?? []).length > 0,
        logged: o.loadWarnings,
      });
    }
  });
});
