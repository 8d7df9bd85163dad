/**
 * Real TLS handshakes judged by GnuTLS's own programs (Debian gnutls-bin: `gnutls-serv`, `gnutls-cli`).
 *
 * Facts established with real runs of gnutls-bin 3.7.9 (the version these helpers were written for):
 *
 * - `gnutls-serv` has no option to bind an address: it always listens on 0.0.0.0 *and* [::] on the given
 *   port. These helpers therefore only ever connect to loopback (127.0.0.1 by default; `host` is checked
 *   to be a loopback address), on a sandboxed test machine. When the port is taken, `gnutls-serv` does
 *   not exit; it prints `... listening on IPv4 0.0.0.0 port N...bind() failed: ...` and idles, which is
 *   why readiness is read from that stderr line (and the start is retried on another port), rather than
 *   probed with a TCP connect. A bare TCP probe would also make the server log a spurious
 *   `Error in handshake:` line, which would confuse {@link judgeClientCertificate}.
 * - `gnutls-cli` verifies the server certificate by default and, with `--verify-hostname NAME`, checks
 *   NAME against it (DNS or IP SANs). It is never given `--insecure` here. With stdin at EOF it sends a
 *   close_notify and keeps reading until the server closes, so an alert the server sends in reaction to
 *   the client's certificate (which, under TLS 1.3, arrives after the client already printed
 *   `- Handshake was completed`) is always seen before the client exits, and makes it exit 1.
 * - `gnutls-serv --require-client-cert --verify-client-cert` really refuses a bad client: its handshake
 *   fails, it sends a fatal alert and logs `Error in handshake: <reason>` on stderr (unbuffered), e.g.
 *   TLS 1.3 without a certificate: alert 116 "Certificate is required" / "Certificate is required.";
 *   untrusted or revoked (via `--x509crlfile`) certificate: alert 49 "Access was denied" /
 *   "Error in the certificate.". Its stdout (`* Accepted connection ...`) is block-buffered when piped,
 *   so it is captured but not relied upon.
 */
import { ChildProcessWithoutNullStreams, spawn } from "child_process";
import { freePort, run, sleep } from "./programs";

/** Environment forced on the GnuTLS programs so that the messages parsed here stay in English. */
const GNUTLS_ENV: NodeJS.ProcessEnv = { LC_ALL: "C", LANG: "C" };

const POLL_MS = 50;
const DEFAULT_START_TIMEOUT_MS = 10_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 2_000;
/** How long {@link judgeClientCertificate} waits for the server to log a handshake error after the client exits. */
const SERVER_LOG_WAIT_MS = 2_000;
const START_ATTEMPTS = 3;

/** Options for {@link startGnutlsServer}. */
export interface GnutlsServerOptions {
  /** Server certificate (chain) in PEM: `--x509certfile`. */
  certFile: string;
  /** Server private key in PEM: `--x509keyfile`. */
  keyFile: string;
  /** CA certificate(s) used to verify client certificates: `--x509cafile`. */
  caFile?: string;
  /** CRL used when verifying client certificates: `--x509crlfile`. */
  crlFile?: string;
  /** Adds `--require-client-cert --verify-client-cert` (needs `caFile`). */
  requireClientCert?: boolean;
  /** Loopback address clients should use (gnutls-serv itself cannot bind one; see the module comment). */
  host?: string;
  /** GnuTLS priority string (`--priority`), e.g. to pin a protocol version. */
  priority?: string;
  /** Bound on waiting for the server to listen (default 10 s). */
  startTimeoutMs?: number;
}

/** A running `gnutls-serv`. */
export interface GnutlsServer {
  /** The TCP port it listens on. */
  readonly port: number;
  /** The loopback address clients should connect to. */
  readonly host: string;
  /** The exact arguments `gnutls-serv` was started with. */
  readonly args: readonly string[];
  /** Everything it wrote to stdout so far (block-buffered by gnutls-serv, so possibly incomplete). */
  readonly stdout: string;
  /** Everything it wrote to stderr so far (unbuffered: listening lines, `Error in handshake:` lines). */
  readonly stderr: string;
  /** Whether the process has exited. */
  readonly exited: boolean;
  /** The `Error in handshake: ...` reasons it logged so far, in order. */
  handshakeErrors(): string[];
  /** Stops it: SIGTERM, then SIGKILL after 2 s; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
}

/** Servers not yet stopped, killed as a last resort if the test process exits without stopping them. */
const liveServers = new Set<ChildProcessWithoutNullStreams>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of liveServers) child.kill("SIGKILL");
  });
}

function assertLoopback(host: string): void {
  if (!(host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host))) {
    throw new Error(`refusing non-loopback host ${JSON.stringify(host)}: these helpers only use loopback`);
  }
}

const HANDSHAKE_ERROR = /^Error in handshake: (.*)$/gm;

function handshakeErrorsIn(stderr: string): string[] {
  return [...stderr.matchAll(HANDSHAKE_ERROR)].map((m) => m[1].trim());
}

class RunningGnutlsServer implements GnutlsServer {
  private out: Buffer[] = [];
  private err: Buffer[] = [];
  private exitPromise: Promise<void>;
  private hasExited = false;
  /** Set while {@link judgeClientCertificate} attributes log lines to one connection. */
  busy = false;

  constructor(
    readonly child: ChildProcessWithoutNullStreams,
    readonly port: number,
    readonly host: string,
    readonly args: readonly string[],
  ) {
    child.stdout.on("data", (chunk: Buffer) => this.out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => this.err.push(chunk));
    this.exitPromise = new Promise<void>((resolve) => {
      child.once("exit", () => {
        this.hasExited = true;
        liveServers.delete(child);
        resolve();
      });
      child.once("error", () => {
        this.hasExited = true;
        liveServers.delete(child);
        resolve();
      });
    });
  }

  get stdout(): string {
    return Buffer.concat(this.out).toString("utf8");
  }

  get stderr(): string {
    return Buffer.concat(this.err).toString("utf8");
  }

  get exited(): boolean {
    return this.hasExited;
  }

  handshakeErrors(): string[] {
    return handshakeErrorsIn(this.stderr);
  }

  /** Resolves true if the process exited within `ms`. */
  async waitExit(ms: number): Promise<boolean> {
    if (this.hasExited) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const exited = await Promise.race([this.exitPromise.then(() => true as const), timeout]);
    clearTimeout(timer);
    return exited;
  }

  async stop(): Promise<void> {
    if (this.hasExited) return;
    this.child.kill("SIGTERM");
    if (await this.waitExit(STOP_GRACE_MS)) return;
    this.child.kill("SIGKILL");
    if (!(await this.waitExit(STOP_GRACE_MS))) {
      throw new Error(`gnutls-serv (pid ${this.child.pid}) did not exit after SIGKILL`);
    }
  }
}

/** What the server's stderr says about listening on IPv4: undefined while the line is incomplete. */
function ipv4ListenState(stderr: string): "listening" | "failed" | undefined {
  const m = /listening on IPv4 [^\n]*? port \d+\.\.\.([^\n]*)\n/.exec(stderr);
  if (!m) return undefined;
  return m[1].trim() === "done" ? "listening" : "failed";
}

async function startOnce(
  opts: GnutlsServerOptions,
  host: string,
): Promise<RunningGnutlsServer | "port-taken"> {
  const port = await freePort("127.0.0.1");
  const args = ["--x509certfile", opts.certFile, "--x509keyfile", opts.keyFile];
  if (opts.caFile !== undefined) args.push("--x509cafile", opts.caFile);
  if (opts.requireClientCert) args.push("--require-client-cert", "--verify-client-cert");
  if (opts.crlFile !== undefined) args.push("--x509crlfile", opts.crlFile);
  if (opts.priority !== undefined) args.push("--priority", opts.priority);
  args.push("-p", String(port));

  const child = spawn("gnutls-serv", args, {
    env: { ...process.env, ...GNUTLS_ENV },
    stdio: ["pipe", "pipe", "pipe"],
    shell: false,
  });
  installExitHook();
  liveServers.add(child);
  child.stdin.on("error", () => undefined);
  child.stdin.end();
  const server = new RunningGnutlsServer(child, port, host, args);

  const deadline = Date.now() + (opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  for (;;) {
    const state = ipv4ListenState(server.stderr);
    if (state === "listening") return server;
    if (state === "failed") {
      await server.stop();
      if (/in use/i.test(server.stderr)) return "port-taken";
      throw new Error(`gnutls-serv ${args.join(" ")} could not listen:\n${server.stderr}`);
    }
    if (server.exited) {
      throw new Error(
        `gnutls-serv ${args.join(" ")} exited before listening (code ${child.exitCode}, signal ${child.signalCode}):\n` +
          `${server.stderr}${server.stdout}`,
      );
    }
    if (Date.now() >= deadline) {
      await server.stop();
      throw new Error(`gnutls-serv ${args.join(" ")} was not listening in time:\n${server.stderr}`);
    }
    await sleep(POLL_MS);
  }
}

/**
 * Starts `gnutls-serv` with the given certificate/key (and, for client authentication, CA, CRL and
 * `--require-client-cert --verify-client-cert`) on a free port, and resolves once it listens on IPv4.
 * Rejects with the server's stderr if it exits early or is not listening within `startTimeoutMs`.
 * The caller must `await server.stop()` (e.g. in `afterEach` or `finally`).
 */
export async function startGnutlsServer(opts: GnutlsServerOptions): Promise<GnutlsServer> {
  const host = opts.host ?? "127.0.0.1";
  assertLoopback(host);
  if (opts.requireClientCert && opts.caFile === undefined) {
    throw new Error("startGnutlsServer: requireClientCert needs caFile to verify client certificates");
  }
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const started = await startOnce(opts, host);
    if (started !== "port-taken") return started;
  }
  throw new Error(`gnutls-serv: every port tried was taken (${START_ATTEMPTS} attempts)`);
}

/** Options for {@link gnutlsConnect}. */
export interface GnutlsConnectOptions {
  port: number;
  /** Loopback address to connect to (default 127.0.0.1). */
  host?: string;
  /** CA certificate(s) the client trusts: `--x509cafile`. */
  caFile: string;
  /** Name checked against the server certificate: `--verify-hostname` (default: `host`). Always checked. */
  verifyHostname?: string;
  /** Client certificate: `--x509certfile` (requires `keyFile`). */
  certFile?: string;
  /** Client private key: `--x509keyfile`. */
  keyFile?: string;
  /** CRL the client applies to the server certificate: `--x509crlfile`. */
  crlFile?: string;
  /** GnuTLS priority string (`--priority`), e.g. to pin a protocol version. */
  priority?: string;
  /** Upper bound for the whole client run (default 15 s). */
  timeoutMs?: number;
}

/** Outcome of {@link gnutlsConnect}. */
export interface GnutlsConnectResult {
  /** Handshake completed, the server certificate verified (chain and hostname), and no alert or error followed. */
  ok: boolean;
  /** The client's stdout followed by its stderr. */
  output: string;
  /** gnutls-cli's exit code (null if killed). */
  code: number | null;
  timedOut: boolean;
  /** The client printed `- Handshake was completed` (under TLS 1.3 this happens before the server judged the client). */
  handshakeCompleted: boolean;
  /** The client printed `- Status: The certificate is trusted.` for the server certificate. */
  serverCertTrusted: boolean;
  /** A fatal alert the client received from the server (`*** Received alert [N]: ...`), if any. */
  alert?: { code: number; description: string };
  /** The exact arguments gnutls-cli was run with. */
  args: string[];
}

/**
 * Runs `gnutls-cli` against a loopback server with CA verification and hostname verification on
 * (never `--insecure`), optionally presenting a client certificate, sends no data (stdin at EOF), and
 * reports whether the handshake and all verification succeeded. Never rejects on a failed handshake.
 */
export async function gnutlsConnect(opts: GnutlsConnectOptions): Promise<GnutlsConnectResult> {
  const host = opts.host ?? "127.0.0.1";
  assertLoopback(host);
  if ((opts.certFile === undefined) !== (opts.keyFile === undefined)) {
    throw new Error("gnutlsConnect: certFile and keyFile go together");
  }
  const args = ["--x509cafile", opts.caFile, "--verify-hostname", opts.verifyHostname ?? host];
  if (opts.certFile !== undefined && opts.keyFile !== undefined) {
    args.push("--x509certfile", opts.certFile, "--x509keyfile", opts.keyFile);
  }
  if (opts.crlFile !== undefined) args.push("--x509crlfile", opts.crlFile);
  if (opts.priority !== undefined) args.push("--priority", opts.priority);
  args.push("-p", String(opts.port), host);

  const result = await run("gnutls-cli", args, {
    input: "",
    env: GNUTLS_ENV,
    timeoutMs: opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  });
  const output = result.stdout + result.stderr;
  const handshakeCompleted = /^- Handshake was completed\s*$/m.test(output);
  const serverCertTrusted = /^- Status: The certificate is trusted\.\s*$/m.test(output);
  const alertMatch = /^\*\*\* Received alert \[(\d+)\]: (.*)$/m.exec(output);
  const alert = alertMatch ? { code: Number(alertMatch[1]), description: alertMatch[2].trim() } : undefined;
  const failed = /^\*\*\* /m.test(output); // "*** Fatal error", "*** Received alert", "*** PKI verification ..."
  const ok = result.code === 0 && !result.timedOut && handshakeCompleted && serverCertTrusted && !failed;
  return {
    ok,
    output,
    code: result.code,
    timedOut: result.timedOut,
    handshakeCompleted,
    serverCertTrusted,
    alert,
    args,
  };
}

/** Verdict of {@link judgeClientCertificate}. */
export interface ClientCertificateJudgement {
  /**
   * - `accepted`: the client's connection fully succeeded (`ok`) and the server logged no handshake error.
   * - `refused`: the server refused the client (see {@link judgeClientCertificate}).
   * - `inconclusive`: anything else, e.g. the *client* rejected the server certificate; never a pass for
   *   either expectation.
   */
  verdict: "accepted" | "refused" | "inconclusive";
  /** The client run. */
  client: GnutlsConnectResult;
  /** `Error in handshake:` reasons the server logged for this connection. */
  serverErrors: string[];
  /** Human-readable explanation, for assertion messages. */
  detail: string;
}

/**
 * Connects to `server` with {@link gnutlsConnect} and decides whether the SERVER refused the client
 * (certificate missing, untrusted or revoked). "Refused" means all of:
 *  1. the client trusted the server certificate (`- Status: The certificate is trusted.`), so the
 *     failure is not the client's own verification;
 *  2. the client exited non-zero after receiving a fatal alert from the server
 *     (`*** Received alert [N]: ...`; e.g. 116 certificate_required, 49 access_denied);
 *  3. the server logged a new `Error in handshake: <reason>` line on stderr for this connection (waited
 *     for up to 2 s, since the server may print it just after the client exits).
 * Connections are attributed by counting stderr lines, so calls on one server must not overlap.
 */
export async function judgeClientCertificate(
  server: GnutlsServer,
  opts: Omit<GnutlsConnectOptions, "port" | "host">,
): Promise<ClientCertificateJudgement> {
  if (!(server instanceof RunningGnutlsServer)) {
    throw new Error("judgeClientCertificate: server must come from startGnutlsServer");
  }
  if (server.busy) throw new Error("judgeClientCertificate: concurrent judgements on one server");
  server.busy = true;
  try {
    const before = server.handshakeErrors().length;
    const client = await gnutlsConnect({ ...opts, port: server.port, host: server.host });
    const newErrors = (): string[] => server.handshakeErrors().slice(before);

    if (client.ok) {
      // The server sent its close_notify only after its handshake succeeded, so no error line can follow.
      const serverErrors = newErrors();
      return serverErrors.length === 0
        ? {
            verdict: "accepted",
            client,
            serverErrors,
            detail: "handshake and verification succeeded on both ends",
          }
        : {
            verdict: "inconclusive",
            client,
            serverErrors,
            detail: `client ok but server logged: ${serverErrors.join("; ")}`,
          };
    }

    const deadline = Date.now() + SERVER_LOG_WAIT_MS;
    while (newErrors().length === 0 && !server.exited && Date.now() < deadline) await sleep(POLL_MS / 2);
    const serverErrors = newErrors();

    if (
      client.serverCertTrusted &&
      client.code !== 0 &&
      client.alert !== undefined &&
      serverErrors.length > 0
    ) {
      return {
        verdict: "refused",
        client,
        serverErrors,
        detail: `server sent alert ${client.alert.code} (${client.alert.description}) and logged: ${serverErrors.join("; ")}`,
      };
    }
    const reasons: string[] = [];
    if (!client.serverCertTrusted) reasons.push("the client did not trust the server certificate");
    if (client.alert === undefined) reasons.push("the client received no alert from the server");
    if (serverErrors.length === 0) reasons.push("the server logged no handshake error");
    if (client.timedOut) reasons.push("the client timed out");
    return {
      verdict: "inconclusive",
      client,
      serverErrors,
      detail: reasons.join("; ") || "unexplained failure",
    };
  } finally {
    server.busy = false;
  }
}
