/**
 * A REAL `libvirtd` listening for TLS on a loopback address, and `virsh` clients connecting to it with
 * libvirt's `test` driver (`test+tls://HOST:PORT/default`, no hypervisor needed).
 *
 * How it is isolated (established with libvirt 9.0.0 on Debian bookworm, as root, also under gVisor):
 *
 * - libvirtd writes state outside its config: `/run/libvirt/*` (pid files of its drivers, e.g.
 *   `/run/libvirt/qemu/driver.pid`, which a second daemon collides on), `/var/lib/libvirt/qemu/*`,
 *   `/var/cache/libvirt/qemu`, `/var/log/libvirt` and `/etc/libvirt/{nwfilter,secrets}`. Each daemon therefore
 *   runs in its own mount namespace (`unshare --mount --propagation private`), where a private, per-daemon
 *   temp directory is bind-mounted over each of those five directories before `exec libvirtd`. The only
 *   trace left on the machine is the (empty) mount-point directories, created if missing.
 * - Its config is a private `libvirtd.conf` (`-f`): `listen_tls=1`, `listen_tcp=0`, `listen_addr`, `tls_port`,
 *   UNIX sockets in the temp dir, `auth_tls="none"`, explicit `key_file`/`cert_file`/`ca_file`/`crl_file`,
 *   optional `tls_allowed_dn_list`, and a log file with debug output of the TLS code
 *   (`rpc.nettls*`) and warnings/errors of everything else. Errors about dnsmasq, D-Bus, udev/DMI and
 *   dmidecode that it logs in a container are harmless.
 * - `libvirtd --listen -f CONF --pid-file F` runs in the foreground without `--timeout` (it never exits
 *   on its own). The spawned process is made a process-group leader (`detached`), `unshare` and `sh` both
 *   `exec`, so the group is exactly libvirtd and any helper it forks; {@link Libvirtd.stop} signals the group.
 * - Readiness is a bare TCP connect to the TLS port every 50 ms (at most 15 s). Each probe makes libvirtd log
 *   one harmless `TLS handshake failed The TLS connection was non-properly terminated.` error line.
 *
 * Connecting by DNS name without touching the machine's `/etc/hosts`: {@link virshConnect} with `hosts`
 * runs virsh inside its own mount namespace with a private hosts file bind-mounted over `/etc/hosts`
 * (glibc's `files` source, which `/etc/nsswitch.conf` consults first). The name in the URI is then what
 * libvirt's client checks against the server certificate (`gnutls_x509_crt_check_hostname`), and what it
 * resolves to is decided by that private file only.
 */
import { ChildProcess, spawn } from "child_process";
import { promises as fs, readFileSync } from "fs";
import * as net from "net";
import * as path from "path";
import { freePort, removeDir, run, sleep, tempDir, writeFiles } from "./programs";

const POLL_MS = 50;
const DEFAULT_START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;
const DEFAULT_VIRSH_TIMEOUT_MS = 20_000;
const START_ATTEMPTS = 3;
/** Directories libvirtd writes to outside its config; each gets a private bind mount. */
const PRIVATE_DIRS = [
  "/run/libvirt",
  "/var/lib/libvirt",
  "/var/cache/libvirt",
  "/var/log/libvirt",
  "/etc/libvirt",
];
/** Keeps messages in English for the assertions. */
const C_ENV: NodeJS.ProcessEnv = { LC_ALL: "C", LANG: "C" };

/** Options for {@link startLibvirtd}. Give `pkiDir` or all of `caFile`, `certFile` and `keyFile`. */
export interface LibvirtdOptions {
  /** Loopback IPv4 address to listen on (`listen_addr`), any 127.x.y.z. @default "127.0.0.1" */
  listenAddr?: string;
  /** TLS port (`tls_port`). @default a free port (start retried on another port if it was taken) */
  port?: number;
  /** Directory holding `cacert.pem`, `servercert.pem`, `serverkey.pem` and, optionally, `cacrl.pem`. */
  pkiDir?: string;
  /** `ca_file`. */
  caFile?: string;
  /** `cert_file`. */
  certFile?: string;
  /** `key_file`. */
  keyFile?: string;
  /** `crl_file`. */
  crlFile?: string;
  /** `tls_allowed_dn_list` globs (GnuTLS compat DN form, e.g. `C=GB,ST=London,...,CN=client1`). */
  tlsAllowedDnList?: readonly string[];
  /**
   * Lines appended to the generated libvirtd.conf as they are, e.g. the product's own `tls_allowed_dn_list`
   * line (`tlsAllowedDnListLine`) instead of `tlsAllowedDnList`. @default none
   */
  extraConfLines?: readonly string[];
  /** Bound on waiting for the TLS port to accept connections. @default 15 s */
  startTimeoutMs?: number;
}

/** A running libvirtd. */
export interface Libvirtd {
  /** The address it listens on. */
  readonly host: string;
  /** Its TLS port. */
  readonly port: number;
  /** Its private temp directory (config, log, sockets, private state dirs). */
  readonly dir: string;
  /** Path of the generated `libvirtd.conf`. */
  readonly confPath: string;
  /** Path of its log file. */
  readonly logPath: string;
  /** Whether the process has exited. */
  readonly exited: boolean;
  /** The log file's current content (plus anything the process printed on stdout/stderr). */
  log(): string;
  /**
   * Polls the log every 50 ms for a line matching `pattern`, up to `timeoutMs` (default 3 s): resolves
   * to the first matching line, or undefined. (libvirtd may write its error line just after the client gave up.)
   */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string | undefined>;
  /** Kills the whole process tree (SIGTERM, SIGKILL after 3 s), awaits exit, removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Process groups not yet stopped, SIGKILLed as a last resort if the test process exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const pgid of liveGroups) killGroup(pgid, "SIGKILL");
  });
}

/** Signals a whole process group; a group that is already gone is not an error. */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** Throws unless `host` is a loopback IPv4 address. */
export function assertLoopbackIPv4(host: string): void {
  if (!/^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(host)) {
    throw new Error(`refusing ${JSON.stringify(host)}: only loopback 127.x.y.z addresses are used here`);
  }
}

/** Resolves true once a TCP connection to host:port succeeds (then closes it), false after `ms`. */
function tcpProbe(host: string, port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** A long-running child in its own process group, with bounded stop and readiness helpers. */
export class ManagedProcess {
  private out: Buffer[] = [];
  private exitPromise: Promise<void>;
  private hasExited = false;
  readonly pgid: number;

  constructor(
    readonly child: ChildProcess,
    readonly description: string,
  ) {
    if (child.pid === undefined) throw new Error(`${description}: not started`);
    this.pgid = child.pid;
    liveGroups.add(this.pgid);
    installExitHook();
    child.stdout?.on("data", (c: Buffer) => this.out.push(c));
    child.stderr?.on("data", (c: Buffer) => this.out.push(c));
    this.exitPromise = new Promise<void>((resolve) => {
      const mark = (): void => {
        this.hasExited = true;
        resolve();
      };
      child.once("exit", mark);
      child.once("error", mark);
    });
  }

  /** What the process printed on stdout and stderr so far. */
  get output(): string {
    return Buffer.concat(this.out).toString("utf8");
  }

  /** Whether the group leader has exited. */
  get exited(): boolean {
    return this.hasExited;
  }

  /** Its exit code and signal, for error messages. */
  get exitStatus(): string {
    return `code ${this.child.exitCode} signal ${this.child.signalCode}`;
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

  /**
   * Polls a TCP connect to host:port every 50 ms until it succeeds ("ready"), the process exits
   * ("exited") or `timeoutMs` passes ("timeout").
   */
  async waitListening(
    host: string,
    port: number,
    timeoutMs: number,
  ): Promise<"ready" | "exited" | "timeout"> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.hasExited) return "exited";
      if (await tcpProbe(host, port, 1_000)) return this.hasExited ? "exited" : "ready";
      if (Date.now() >= deadline) return "timeout";
      await sleep(POLL_MS);
    }
  }

  /** SIGTERM to the whole group, SIGKILL after `graceMs`; resolves once the leader has exited. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    killGroup(this.pgid, "SIGTERM");
    if (!(await this.waitExit(graceMs))) {
      killGroup(this.pgid, "SIGKILL");
      if (!(await this.waitExit(graceMs))) {
        throw new Error(`${this.description} (pid ${this.pgid}) did not exit after SIGKILL`);
      }
    }
    // Helpers the leader forked may outlive it: the group gets a final SIGKILL either way.
    killGroup(this.pgid, "SIGKILL");
    liveGroups.delete(this.pgid);
  }
}

/**
 * Quotes a value for libvirtd.conf (a double-quoted string). libvirt's parser has no escapes
 * (src/util/virconf.c), so the value is written as is (a DN's backslashes included); `"` and line ends cannot be.
 */
function confString(value: string): string {
  if (/["\n\r]/.test(value))
    throw new Error(`libvirtd.conf: unsupported character in ${JSON.stringify(value)}`);
  return `"${value}"`;
}

/** Single-quotes a value for `sh`. */
function shQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function tlsFiles(opts: LibvirtdOptions): {
  caFile: string;
  certFile: string;
  keyFile: string;
  crlFile?: string;
} {
  const explicit = [opts.caFile, opts.certFile, opts.keyFile];
  if (opts.pkiDir !== undefined) {
    if (explicit.some((f) => f !== undefined))
      throw new Error("startLibvirtd: give pkiDir or explicit files, not both");
    return {
      caFile: path.join(opts.pkiDir, "cacert.pem"),
      certFile: path.join(opts.pkiDir, "servercert.pem"),
      keyFile: path.join(opts.pkiDir, "serverkey.pem"),
      crlFile: opts.crlFile,
    };
  }
  if (opts.caFile === undefined || opts.certFile === undefined || opts.keyFile === undefined) {
    throw new Error("startLibvirtd: give pkiDir, or all of caFile, certFile and keyFile");
  }
  return { caFile: opts.caFile, certFile: opts.certFile, keyFile: opts.keyFile, crlFile: opts.crlFile };
}

/** The process behind a {@link Libvirtd}: a local child, or a daemon started on a test-bed host. */
export interface LibvirtdProcess {
  readonly exited: boolean;
  /** What it printed on stdout and stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/** A running libvirtd whose log file is readable here (local, or on a test-bed host sharing /tmp). */
export class RunningLibvirtd implements Libvirtd {
  private stopped = false;
  constructor(
    readonly proc: LibvirtdProcess,
    readonly host: string,
    readonly port: number,
    readonly dir: string,
    readonly confPath: string,
    readonly logPath: string,
  ) {}

  get exited(): boolean {
    return this.proc.exited;
  }

  log(): string {
    let text = "";
    try {
      text = readFileSync(this.logPath, "utf8");
    } catch {
      // Not written yet.
    }
    const output = this.proc.output();
    return output === "" ? text : `${text}\n--- stdout/stderr ---\n${output}`;
  }

  async waitForLog(pattern: RegExp, timeoutMs = 3_000): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.log()
        .split("\n")
        .find((l) => pattern.test(l));
      if (line !== undefined || Date.now() >= deadline) return line;
      await sleep(POLL_MS);
    }
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

/** A libvirtd's private directory, prepared by {@link prepareLibvirtd}. */
export interface PreparedLibvirtd {
  confPath: string;
  logPath: string;
  /** `sh` script: bind-mount the private state directories, then `exec libvirtd --listen -f CONF`. */
  script: string;
}

/**
 * Writes a libvirtd.conf into `dir` (TLS on host:port, UNIX sockets in `dir`, `auth_tls="none"`, the TLS files
 * when given, else libvirt's default /etc/pki paths, and `tls_allowed_dn_list`), creates the private state
 * directories, and returns the script to run in a fresh mount namespace (see the module comment).
 */
export async function prepareLibvirtd(
  dir: string,
  host: string,
  port: number,
  opts: {
    files?: { caFile: string; certFile: string; keyFile: string; crlFile?: string };
    tlsAllowedDnList?: readonly string[];
    extraConfLines?: readonly string[];
  },
): Promise<PreparedLibvirtd> {
  const confPath = path.join(dir, "libvirtd.conf");
  const logPath = path.join(dir, "libvirtd.log");
  const pidPath = path.join(dir, "libvirtd.pid");
  const sockDir = path.join(dir, "sock");
  const lines = [
    "listen_tls = 1",
    "listen_tcp = 0",
    `listen_addr = ${confString(host)}`,
    `tls_port = ${confString(String(port))}`,
    `unix_sock_dir = ${confString(sockDir)}`,
    `unix_sock_group = "root"`,
    `unix_sock_ro_perms = "0700"`,
    `unix_sock_rw_perms = "0700"`,
    `unix_sock_admin_perms = "0700"`,
    `auth_tls = "none"`,
    `auth_unix_ro = "none"`,
    `auth_unix_rw = "none"`,
  ];
  const files = opts.files;
  if (files !== undefined) {
    lines.push(
      `key_file = ${confString(files.keyFile)}`,
      `cert_file = ${confString(files.certFile)}`,
      `ca_file = ${confString(files.caFile)}`,
    );
    if (files.crlFile !== undefined) lines.push(`crl_file = ${confString(files.crlFile)}`);
  }
  if (opts.tlsAllowedDnList !== undefined) {
    lines.push(`tls_allowed_dn_list = [${opts.tlsAllowedDnList.map(confString).join(", ")}]`);
  }
  lines.push(...(opts.extraConfLines ?? []));
  lines.push(
    `log_outputs = ${confString(`1:file:${logPath}`)}`,
    `log_filters = "1:rpc.nettls 1:rpc.netserverclient 3:*"`,
  );
  await writeFiles(dir, { "libvirtd.conf": lines.join("\n") + "\n" });
  await fs.mkdir(sockDir, { mode: 0o700 });

  const mounts: string[] = [];
  for (const target of PRIVATE_DIRS) {
    const source = path.join(dir, "root", target.replace(/\//g, "_"));
    await fs.mkdir(source, { recursive: true, mode: 0o755 });
    mounts.push(`mkdir -p ${shQuote(target)}`, `mount --bind ${shQuote(source)} ${shQuote(target)}`);
  }
  const script = [
    "set -e",
    ...mounts,
    `exec libvirtd --listen -f ${shQuote(confPath)} --pid-file ${shQuote(pidPath)}`,
  ].join("\n");
  return { confPath, logPath, script };
}

async function startOnce(
  opts: LibvirtdOptions,
  host: string,
  port: number,
): Promise<RunningLibvirtd | "port-taken"> {
  const files = tlsFiles(opts);
  const dir = await tempDir("virt-pki-libvirtd-");
  const crlFile =
    files.crlFile ?? (opts.pkiDir !== undefined ? path.join(opts.pkiDir, "cacrl.pem") : undefined);
  const withCrl = crlFile !== undefined && (opts.crlFile !== undefined || (await exists(crlFile)));
  const { confPath, logPath, script } = await prepareLibvirtd(dir, host, port, {
    files: { ...files, crlFile: withCrl ? crlFile : undefined },
    tlsAllowedDnList: opts.tlsAllowedDnList,
    extraConfLines: opts.extraConfLines,
  });
  const child = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...C_ENV },
  });
  const proc = new ManagedProcess(child, `libvirtd on ${host}:${port}`);
  const handle: LibvirtdProcess = {
    get exited() {
      return proc.exited;
    },
    output: () => proc.output,
    stop: () => proc.stop(),
  };
  const daemon = new RunningLibvirtd(handle, host, port, dir, confPath, logPath);

  const state = await proc.waitListening(host, port, opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  if (state === "ready") return daemon;
  const log = daemon.log();
  await daemon.stop();
  if (state === "exited" && opts.port === undefined && /Address already in use/i.test(log))
    return "port-taken";
  throw new Error(
    state === "exited"
      ? `libvirtd exited before listening on ${host}:${port} (${proc.exitStatus}):\n${log}`
      : `libvirtd was not listening on ${host}:${port} in time:\n${log}`,
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

/**
 * Starts a real libvirtd with TLS on a loopback address (in its own mount namespace, see the module
 * comment) and resolves once its TLS port accepts TCP connections. Rejects with its log if it exits
 * early or does not listen within `startTimeoutMs`. The caller must `await daemon.stop()`.
 */
export async function startLibvirtd(opts: LibvirtdOptions): Promise<Libvirtd> {
  const host = opts.listenAddr ?? "127.0.0.1";
  assertLoopbackIPv4(host);
  tlsFiles(opts); // validate before creating anything
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const started = await startOnce(opts, host, opts.port ?? (await freePort(host)));
    if (started !== "port-taken") return started;
  }
  throw new Error(`libvirtd: every port tried on ${host} was taken (${START_ATTEMPTS} attempts)`);
}

/** Options for {@link virshConnect}. */
export interface VirshConnectOptions {
  /** Host as it appears in the URI: a 127.x address, or a name (see `hosts`). */
  host: string;
  port: number;
  /** Directory with `cacert.pem`, `clientcert.pem`, `clientkey.pem` (the URI's `pkipath`). */
  pkiPath: string;
  /** Adds `no_verify=1` to the URI (client skips verifying the server certificate). */
  noVerify?: boolean;
  /**
   * Name → loopback address entries of a private `/etc/hosts` that virsh alone sees (it runs in its own
   * mount namespace with that file bind-mounted over `/etc/hosts`). Without it, the machine's resolver is used.
   */
  hosts?: Record<string, string>;
  /** Upper bound for the virsh run. @default 20 s */
  timeoutMs?: number;
  /** Extra environment for virsh, e.g. `LIBVIRT_LOG_OUTPUTS` (merged over the C locale). */
  env?: NodeJS.ProcessEnv;
}

/** Outcome of {@link virshConnect}. */
export interface VirshResult {
  /** virsh exited 0 and listed the test driver's domains. */
  ok: boolean;
  /** stdout followed by stderr. */
  output: string;
  /** The URI used. */
  uri: string;
}

/**
 * Runs `virsh -c 'test+tls://HOST:PORT/default?pkipath=DIR' list` (bounded), optionally resolving
 * names through a private hosts file. Never rejects because the connection failed.
 */
export async function virshConnect(opts: VirshConnectOptions): Promise<VirshResult> {
  if (net.isIP(opts.host)) assertLoopbackIPv4(opts.host);
  else if (!/^[A-Za-z0-9.-]+$/.test(opts.host)) throw new Error(`virshConnect: bad host ${opts.host}`);
  const hostEntries = Object.entries(opts.hosts ?? {});
  for (const [, address] of hostEntries) assertLoopbackIPv4(address);
  if (!net.isIP(opts.host) && opts.hosts !== undefined && !(opts.host in opts.hosts)) {
    throw new Error(`virshConnect: ${opts.host} is not in the private hosts file`);
  }
  if (/[&?#]/.test(opts.pkiPath)) throw new Error(`virshConnect: unsupported pkiPath ${opts.pkiPath}`);
  const uri =
    `test+tls://${opts.host}:${opts.port}/default?pkipath=${opts.pkiPath}` +
    (opts.noVerify ? "&no_verify=1" : "");
  const timeoutMs = opts.timeoutMs ?? DEFAULT_VIRSH_TIMEOUT_MS;
  const env = { ...C_ENV, ...opts.env };

  let result;
  if (hostEntries.length === 0) {
    result = await run("virsh", ["-c", uri, "list"], { env, timeoutMs });
  } else {
    const dir = await tempDir("virt-pki-hosts-");
    try {
      const hostsFile = path.join(dir, "hosts");
      const content = hostEntries.map(([name, address]) => `${address} ${name}`).join("\n") + "\n";
      await writeFiles(dir, { hosts: content }, 0o644);
      result = await run(
        "unshare",
        [
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          'mount --bind "$1" /etc/hosts && exec virsh -c "$2" list',
          "sh",
          hostsFile,
          uri,
        ],
        { env, timeoutMs },
      );
    } finally {
      await removeDir(dir);
    }
  }
  const output = result.stdout + result.stderr;
  const ok = result.code === 0 && !result.timedOut && /^\s*Id\s+Name\s+State/m.test(result.stdout);
  return { ok, output, uri };
}
