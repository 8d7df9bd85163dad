/**
 * Test support for running real programs (openssl, certtool, gnutls-*) as judges of certificates.
 *
 * Everything here is bounded: every spawned program has a timeout after which it is SIGKILLed, and
 * no helper touches the network beyond the loopback interface.
 */
import { spawn } from "child_process";
import { promises as fs } from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";

/** Default upper bound for a single program run. */
export const DEFAULT_RUN_TIMEOUT_MS = 30_000;

/** How long to wait for stdio to close after a timed-out program was SIGKILLed. */
const KILL_GRACE_MS = 2_000;

/** Options for {@link run}. */
export interface RunOptions {
  /** Written to the program's stdin (bytes as given), which is then closed. Without it stdin is closed immediately. */
  input?: string | Buffer;
  /** Working directory of the program. */
  cwd?: string;
  /** Upper bound in milliseconds (default {@link DEFAULT_RUN_TIMEOUT_MS}); the program is SIGKILLed after it. */
  timeoutMs?: number;
  /** Extra environment variables, merged over `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** Outcome of {@link run}. */
export interface RunResult {
  /** Exit code, or null when the program was ended by a signal (including a timeout kill). */
  code: number | null;
  /** The signal that ended the program, if any. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the program overran `timeoutMs` and was SIGKILLed. */
  timedOut: boolean;
}

/**
 * Runs `cmd` with `args` (no shell), feeding `opts.input` on stdin and collecting stdout/stderr.
 * Resolves once the program has exited (never rejects because of a non-zero exit code or a timeout);
 * rejects only when the program cannot be spawned at all (e.g. ENOENT).
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(cmd, [...args], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
      shell: false,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;

    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (graceTimer !== undefined) clearTimeout(graceTimer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
        timedOut,
      });
    };

    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
      // If a grandchild still holds the pipes open, "close" may never come: settle anyway.
      graceTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(child.exitCode, child.signalCode ?? "SIGKILL");
      }, KILL_GRACE_MS);
    }, timeoutMs);

    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (graceTimer !== undefined) clearTimeout(graceTimer);
      reject(new Error(`cannot run ${cmd}: ${err.message}`));
    });
    child.on("close", (code, signal) => finish(code, signal));

    // The program may exit without reading its input (EPIPE): that is its business, not an error here.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** Like {@link run}, but rejects with the command line, exit status and stderr unless the program exits 0. */
export async function runOrThrow(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const result = await run(cmd, args, opts);
  if (result.code !== 0 || result.timedOut) {
    const status = result.timedOut ? "timed out" : `exit code ${result.code} signal ${result.signal}`;
    throw new Error(`${cmd} ${args.join(" ")} failed (${status}):\n${result.stderr}${result.stdout}`);
  }
  return result;
}

/** Runs `openssl` with `args` (thin wrapper over {@link run}). */
export function openssl(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run("openssl", args, opts);
}

/** Runs GnuTLS's `certtool` with `args` (thin wrapper over {@link run}). */
export function certtool(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run("certtool", args, opts);
}

/** Creates a fresh, private (0700) directory under `os.tmpdir()` whose name starts with `prefix`. */
export function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Writes `files` (relative name → content) into `dir`, creating sub-directories as needed, and sets
 * every file's mode to exactly `mode` (default 0o600, independent of the umask). Names must stay inside
 * `dir`. Resolves to a record of the same names mapped to absolute paths.
 */
export async function writeFiles(
  dir: string,
  files: Record<string, string>,
  mode = 0o600,
): Promise<Record<string, string>> {
  const root = path.resolve(dir);
  const written: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    const target = path.resolve(root, name);
    if (target !== root && !target.startsWith(root + path.sep)) {
      throw new Error(`writeFiles: ${JSON.stringify(name)} escapes ${root}`);
    }
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, content, { mode });
    await fs.chmod(target, mode);
    written[name] = target;
  }
  return written;
}

/** Removes `dir` recursively; a directory that no longer exists is not an error. */
export function removeDir(dir: string): Promise<void> {
  return fs.rm(dir, { recursive: true, force: true });
}

/** Ports {@link freePort} handed out in this process, and when: never the same one twice within a minute. */
const handedOut = new Map<number, number>();
const HAND_OUT_MS = 60_000;

/**
 * Asks the kernel for a currently free TCP port on `host` (listen on port 0, read it, close), never one it
 * handed out in the last minute: two daemons started at once must not get the same port, or the readiness
 * probe of one that fails to start would reach the other. The port can still be taken by another process
 * before it is used, so callers that bind it should be ready to retry.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await kernelPort(host);
    const now = Date.now();
    for (const [p, at] of handedOut) if (now - at > HAND_OUT_MS) handedOut.delete(p);
    if (handedOut.has(port)) continue;
    handedOut.set(port, now);
    return port;
  }
  throw new Error(`freePort: no port on ${host} that was not handed out in the last minute (50 tries)`);
}

/** One free port as the kernel picks it. */
function kernelPort(host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`freePort: unexpected address ${String(address)}`));
        return;
      }
      const port = address.port;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
