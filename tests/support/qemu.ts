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
import { promises as fs } from "fs";
import * as net from "net";
import * as path from "path";
import { assertLoopbackIPv4, ManagedProcess } from "./libvirtd";
import { freePort, removeDir, run, runOrThrow, sleep, tempDir } from "./programs";

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

/**
 * A REAL `qemu-system-x86_64` whose only job is a VNC server with TLS (QEMU `tls-creds-x509`, VeNCrypt), with a
 * QMP monitor on a UNIX socket, so that a test can replace the credential files and send
 * `display-reload` (QEMU >= 6.0) the way an operator does after a certificate renewal.
 *
 * - No guest: `-machine none -nodefaults -display none -S`; the VNC server runs without a display device.
 * - Credentials dir: `ca-cert.pem`, `server-cert.pem`, `server-key.pem` (optional `ca-crl.pem`), read when QEMU
 *   starts and again on `display-reload` with `tls-certs: true`, never otherwise (observed with QEMU 7.2: files
 *   replaced on disk are not served until the reload; a reload that fails, e.g. key and certificate not
 *   matching, is a QMP error and the previous credentials stay in use).
 * - Port: `-vnc HOST:N` listens on 5900+N; by default N is derived from a free port (start retried on another
 *   one if it was taken, which QEMU reports as `Failed to find an available port: Address already in use`).
 * - QMP: {@link QemuVnc.qmp} opens a fresh connection per command (greeting, `qmp_capabilities`, the command,
 *   close); events on the way are skipped. Everything is bounded; {@link QemuVnc.stop} signals the process group
 *   and removes the temp dir holding the QMP socket.
 */

const QMP_TIMEOUT_MS = 10_000;
const VNC_BASE_PORT = 5900;

/** Options for {@link startQemuVnc}. */
export interface QemuVncOptions {
  /** Loopback address the VNC server binds. @default "127.0.0.1" */
  host?: string;
  /** VNC display number N (port 5900+N). @default derived from a free port */
  display?: number;
  /** The server's x509 credentials directory (`dir=` of the tls-creds-x509 object). */
  credsDir: string;
  /** Whether QEMU requires and checks client certificates (`verify-peer=`). @default false */
  verifyPeer?: boolean;
  /** Bound on waiting for the VNC port to accept connections. @default 15 s */
  startTimeoutMs?: number;
}

/** A QMP error response (`{"error": {"class", "desc"}}`). */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
  }
}

/** A running qemu-system-x86_64 with a TLS VNC server. */
export interface QemuVnc {
  readonly host: string;
  /** TCP port of the VNC server (5900 + display). */
  readonly port: number;
  readonly display: number;
  /** The QMP UNIX socket. */
  readonly qmpSocket: string;
  /** The exact qemu-system-x86_64 arguments. */
  readonly args: readonly string[];
  readonly exited: boolean;
  /** What it printed on stdout/stderr so far. */
  output(): string;
  /** Runs one QMP command (see {@link qmpExecute}): resolves its `return` value, rejects with a {@link QmpError}. */
  qmp(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<unknown>;
  /** SIGTERM to its process group, SIGKILL after 3 s, then removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Connects to a QMP UNIX socket, reads the greeting, sends `qmp_capabilities`, then `command` with `args`, and
 * resolves the command's `return` value (events are skipped). Rejects with a {@link QmpError} on an error
 * response, or when the exchange does not complete within `timeoutMs`. The connection is always closed.
 */
export async function qmpExecute(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = QMP_TIMEOUT_MS,
): Promise<unknown> {
  const socket = net.connect({ path: socketPath });
  const messages: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let pending = "";
  let closed: Error | undefined;
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === "") continue;
      try {
        messages.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        closed ??= new Error(`not QMP: ${JSON.stringify(line.slice(0, 200))}`);
        socket.destroy();
      }
    }
    wake();
  });
  socket.on("error", (err) => {
    closed ??= err;
    wake();
  });
  socket.on("close", () => {
    closed ??= new Error("QEMU closed the QMP connection");
    wake();
  });
  /** Resolves the first message (in order) that `match` accepts, dropping those before it. */
  const next = async (match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    for (;;) {
      while (messages.length > 0) {
        const m = messages.shift()!;
        if (match(m)) return m;
      }
      if (closed !== undefined) throw closed;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const call = async (id: number, execute: string, callArgs?: Record<string, unknown>): Promise<unknown> => {
    socket.write(JSON.stringify({ execute, ...(callArgs ? { arguments: callArgs } : {}), id }) + "\n");
    const reply = await next((m) => m.id === id);
    const error = reply.error as { class?: string; desc?: string } | undefined;
    if (error !== undefined) throw new QmpError(execute, String(error.class), String(error.desc));
    return reply.return;
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`QMP ${command} on ${socketPath} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  const exchange = async (): Promise<unknown> => {
    await next((m) => "QMP" in m);
    await call(1, "qmp_capabilities");
    return call(2, command, args);
  };
  try {
    return await Promise.race([exchange(), timeout]);
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

class RunningQemuVnc implements QemuVnc {
  private stopped = false;
  constructor(
    readonly proc: ManagedProcess,
    readonly dir: string,
    readonly host: string,
    readonly display: number,
    readonly qmpSocket: string,
    readonly args: readonly string[],
  ) {}

  get port(): number {
    return VNC_BASE_PORT + this.display;
  }

  get exited(): boolean {
    return this.proc.exited;
  }

  output(): string {
    return this.proc.output;
  }

  qmp(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<unknown> {
    return qmpExecute(this.qmpSocket, command, args, timeoutMs);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.proc.stop();
    } finally {
      await removeDir(this.dir);
    }
  }
}

/** A VNC display number whose port (5900+N) was free a moment ago. */
async function freeDisplay(host: string): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort(host);
    if (port > VNC_BASE_PORT) return port - VNC_BASE_PORT;
  }
  throw new Error(`no free port above ${VNC_BASE_PORT} on ${host}`);
}

/**
 * Starts `qemu-system-x86_64 -machine none -nodefaults -display none -S -object tls-creds-x509,id=vnc-tls0,
 * dir=D,endpoint=server,verify-peer=on|off -vnc HOST:N,tls-creds=vnc-tls0 -qmp unix:SOCK,server=on,wait=off`
 * and resolves once the VNC port accepts connections and the QMP socket exists. Rejects with its output if it
 * exits early or is not ready in time. The caller must `await qemu.stop()`.
 */
export async function startQemuVnc(opts: QemuVncOptions): Promise<QemuVnc> {
  const host = opts.host ?? "127.0.0.1";
  assertLoopbackIPv4(host);
  const verifyPeer = opts.verifyPeer ? "on" : "off";
  const object = `tls-creds-x509,id=vnc-tls0,dir=${qemuPath(opts.credsDir)},endpoint=server,verify-peer=${verifyPeer}`;
  const startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const display = opts.display ?? (await freeDisplay(host));
    const dir = await tempDir("virt-pki-qemu-vnc-");
    const qmpSocket = path.join(dir, "qmp.sock");
    const args = ["-machine", "none", "-nodefaults", "-display", "none", "-S", "-object", object];
    args.push("-vnc", `${host}:${display},tls-creds=vnc-tls0`);
    args.push("-qmp", `unix:${qemuPath(qmpSocket)},server=on,wait=off`);
    const child = spawn("qemu-system-x86_64", args, {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...C_ENV },
    });
    const proc = new ManagedProcess(child, `qemu-system-x86_64 VNC on ${host}:${VNC_BASE_PORT + display}`);
    const qemu = new RunningQemuVnc(proc, dir, host, display, qmpSocket, args);
    const deadline = Date.now() + startTimeoutMs;
    let state = await proc.waitListening(host, qemu.port, startTimeoutMs);
    while (state === "ready" && !(await exists(qmpSocket))) {
      if (Date.now() >= deadline) state = "timeout";
      else await sleep(50);
    }
    if (state === "ready") return qemu;
    await qemu.stop();
    const out = proc.output;
    if (state === "exited" && opts.display === undefined && /Address already in use/i.test(out)) continue;
    throw new Error(
      state === "exited"
        ? `qemu-system-x86_64 ${args.join(" ")} exited before listening (${proc.exitStatus}):\n${out}`
        : `qemu-system-x86_64 ${args.join(" ")} was not ready in time:\n${out}`,
    );
  }
  throw new Error(
    `qemu-system-x86_64: every VNC port tried on ${host} was taken (${START_ATTEMPTS} attempts)`,
  );
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}
