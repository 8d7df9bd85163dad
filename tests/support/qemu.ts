/**
 * A REAL `qemu-nbd` NBD server with TLS (QEMU `tls-creds-x509` or `tls-creds-psk`) on a loopback address,
 * and `qemu-img info` as its TLS client.
 *
 * - x509 server dir: `ca-cert.pem`, `server-cert.pem`, `server-key.pem` (optional `ca-crl.pem`); QEMU's server
 *   endpoint verifies client certificates by default (`verify-peer=on`). Client dir: `ca-cert.pem`,
 *   `client-cert.pem`, `client-key.pem`. The NBD client checks the server certificate against the `host`
 *   it connects to (an IP address must be an IP SAN).
 * - PSK dir: `keys.psk` (`username:hexkey` lines). The client's identity is its `username` (default `qemu`).
 * - `qemu-nbd -t` (persistent) serves the export `disk` until killed; readiness is a TCP connect probe
 *   every 50 ms (bounded), which qemu-nbd tolerates. The process runs in its own process group, and
 *   {@link QemuNbd.stop} signals the whole group.
 */
import { spawn } from "child_process";
import * as path from "path";
import { assertLoopbackIPv4, ManagedProcess } from "./libvirtd";
import { freePort, run, runOrThrow, sleep } from "./programs";

const DEFAULT_START_TIMEOUT_MS = 15_000;
const DEFAULT_CLIENT_TIMEOUT_MS = 20_000;
const START_ATTEMPTS = 3;
const C_ENV: NodeJS.ProcessEnv = { LC_ALL: "C", LANG: "C" };

/** Kind of QEMU TLS credentials. */
export type QemuTlsKind = "x509" | "psk";

/** Options for {@link startQemuNbd}. */
export interface QemuNbdOptions {
  /** Loopback address to bind (`-b`). @default "127.0.0.1" */
  host?: string;
  /** Port (`-p`). @default a free port (retried on another one if it was taken) */
  port?: number;
  /** The server's credentials directory (`dir=` of the tls-creds object). */
  credsDir: string;
  /** x509 certificates or a PSK file. */
  kind: QemuTlsKind;
  /** Image to export as `disk` (raw; see {@link createRawImage}). */
  imagePath: string;
  /** Bound on waiting for the port to accept connections. @default 15 s */
  startTimeoutMs?: number;
}

/** A running qemu-nbd. */
export interface QemuNbd {
  readonly host: string;
  readonly port: number;
  /** The exact qemu-nbd arguments. */
  readonly args: readonly string[];
  /** Whether it has exited. */
  readonly exited: boolean;
  /** What it printed on stdout/stderr so far. */
  output(): string;
  /** Polls its output every 50 ms until `pattern` matches (resolves the matching line) or `timeoutMs` (default 3 s) passes (undefined). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string | undefined>;
  /** SIGTERM to its process group, SIGKILL after 3 s; resolves once it exited. Idempotent. */
  stop(): Promise<void>;
}

/** Rejects commas (QEMU's option separator) and non-absolute paths in an option value. */
function qemuPath(p: string): string {
  if (!path.isAbsolute(p) || p.includes(",")) throw new Error(`unsupported path for a QEMU option: ${p}`);
  return p;
}

/** Creates a raw image of `size` (e.g. "1M") with `qemu-img create`. */
export async function createRawImage(imagePath: string, size = "1M"): Promise<void> {
  await runOrThrow("qemu-img", ["create", "-f", "raw", imagePath, size], { env: C_ENV });
}

class RunningQemuNbd implements QemuNbd {
  private stopped = false;
  constructor(
    readonly proc: ManagedProcess,
    readonly host: string,
    readonly port: number,
    readonly args: readonly string[],
  ) {}

  get exited(): boolean {
    return this.proc.exited;
  }

  output(): string {
    return this.proc.output;
  }

  async waitForOutput(pattern: RegExp, timeoutMs = 3_000): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.output()
        .split("\n")
        .find((l) => pattern.test(l));
      if (line !== undefined || Date.now() >= deadline || this.exited) return line;
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.proc.stop();
  }
}

/**
 * Starts `qemu-nbd -t -b HOST -p PORT -x disk -f raw --object tls-creds-<kind>,id=tls0,dir=D,endpoint=server
 * --tls-creds tls0 IMG` and resolves once the port accepts connections. Rejects with its output if it
 * exits early or does not listen in time. The caller must `await server.stop()`.
 */
export async function startQemuNbd(opts: QemuNbdOptions): Promise<QemuNbd> {
  const host = opts.host ?? "127.0.0.1";
  assertLoopbackIPv4(host);
  const object = `tls-creds-${opts.kind},id=tls0,dir=${qemuPath(opts.credsDir)},endpoint=server`;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const port = opts.port ?? (await freePort(host));
    const args = ["-t", "-b", host, "-p", String(port), "-x", "disk", "-f", "raw"];
    args.push("--object", object, "--tls-creds", "tls0", qemuPath(opts.imagePath));
    const child = spawn("qemu-nbd", args, {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...C_ENV },
    });
    const proc = new ManagedProcess(child, `qemu-nbd on ${host}:${port}`);
    const server = new RunningQemuNbd(proc, host, port, args);
    const state = await proc.waitListening(host, port, opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    if (state === "ready") return server;
    await server.stop();
    const out = proc.output;
    if (state === "exited" && opts.port === undefined && /Address already in use/i.test(out)) continue;
    throw new Error(
      state === "exited"
        ? `qemu-nbd ${args.join(" ")} exited before listening (${proc.exitStatus}):\n${out}`
        : `qemu-nbd ${args.join(" ")} was not listening in time:\n${out}`,
    );
  }
  throw new Error(`qemu-nbd: every port tried on ${host} was taken (${START_ATTEMPTS} attempts)`);
}

/** Options for {@link qemuImgInfo}. */
export interface QemuImgInfoOptions {
  /** Loopback address of the NBD server (also what the server certificate is checked against). */
  host: string;
  port: number;
  /** The client's credentials directory. */
  credsDir: string;
  kind: QemuTlsKind;
  /** PSK identity (`username=` of tls-creds-psk). @default QEMU's default, `qemu` */
  username?: string;
  /** Name the server certificate is checked against (`tls-hostname=` of the nbd driver). @default `host` */
  tlsHostname?: string;
  /** Upper bound for the run. @default 20 s */
  timeoutMs?: number;
}

/** Outcome of {@link qemuImgInfo}. */
export interface QemuImgInfoResult {
  /** qemu-img exited 0 and printed the image's virtual size. */
  ok: boolean;
  /** stdout followed by stderr. */
  output: string;
}

/**
 * Runs `qemu-img info --object tls-creds-<kind>,id=tls0,dir=D,endpoint=client[,username=U] --image-opts
 * driver=nbd,host=H,port=P,export=disk,tls-creds=tls0[,tls-hostname=N]` (bounded). Never rejects because the handshake failed.
 */
export async function qemuImgInfo(opts: QemuImgInfoOptions): Promise<QemuImgInfoResult> {
  assertLoopbackIPv4(opts.host);
  let object = `tls-creds-${opts.kind},id=tls0,dir=${qemuPath(opts.credsDir)},endpoint=client`;
  if (opts.username !== undefined) {
    if (!/^[A-Za-z0-9._@+-]+$/.test(opts.username)) throw new Error(`bad PSK username ${opts.username}`);
    object += `,username=${opts.username}`;
  }
  let image = `driver=nbd,host=${opts.host},port=${opts.port},export=disk,tls-creds=tls0`;
  if (opts.tlsHostname !== undefined) {
    if (!/^[A-Za-z0-9.-]+$/.test(opts.tlsHostname)) throw new Error(`bad tls-hostname ${opts.tlsHostname}`);
    image += `,tls-hostname=${opts.tlsHostname}`;
  }
  const r = await run("qemu-img", ["info", "--object", object, "--image-opts", image], {
    env: C_ENV,
    timeoutMs: opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS,
  });
  const output = r.stdout + r.stderr;
  return { ok: r.code === 0 && !r.timedOut && /^virtual size:/m.test(r.stdout), output };
}
