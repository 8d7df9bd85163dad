/**
 * A multi-host test bed on this one machine: every "host" is a REAL OpenSSH server (`/usr/sbin/sshd`) on its
 * own loopback address, in its own mount and PID namespaces, so that code which installs files on hosts over
 * SSH (e.g. `@pulumi/command` `remote.Command` resources captured with Pulumi mocks) can be run for real and
 * judged by real services (libvirtd, virsh, qemu-nbd, qemu-img) that read those files at their DEFAULT paths.
 *
 * How a host is isolated (established with OpenSSH 9.2p1 and util-linux 2.38 on Debian bookworm, as root):
 *
 * - `unshare --mount --uts --propagation private --pid --fork --kill-child --mount-proc sh -c SCRIPT`,
 *   spawned detached (own process group). SCRIPT sets the host name (its own UTS namespace), mounts private
 *   tmpfs over `/etc/pki`, `/root`, `/home` and `/var/lib/virt-pki`,
 *   bind-mounts a private hosts file over `/etc/hosts` (every bed host: `address name aliases...`), writes
 *   `/root/.ssh/authorized_keys` and the home directories of the bed's extra users, then
 *   `exec /usr/sbin/sshd -D -e -f <the host's own sshd_config>`. `/tmp`, `/etc/passwd`, the network and
 *   everything else are shared with the machine. The only traces left on the machine are the (empty)
 *   directories `/etc/pki`, `/var/lib/virt-pki` and `/run/sshd` (created if missing) and the extra users (see {@link TestBedOptions}).
 * - sshd is PID 1 of the host's PID namespace. sshd does NOT signal non-pty session processes when a client
 *   disconnects, so a session's background processes outlive it; in the host's PID namespace they are
 *   re-parented to sshd instead of the machine's init, and the kernel kills all of them when sshd dies.
 *   {@link TestHost.stop} additionally walks `/proc` and signals every descendant of the host's `unshare`
 *   and every member of its PID namespace (SIGTERM, SIGKILL after a grace period, bounded passes).
 * - Each host has its own ed25519 host key; the bed's client uses a per-bed known_hosts file listing every
 *   host as `[address]:port` with `StrictHostKeyChecking yes`. Readiness is an actual `ssh ... true`.
 * - The bed has one ed25519 client key pair, authorized for root and for every extra user.
 *
 * Everything is bounded: every ssh run has a timeout after which the client is SIGKILLed, every wait polls
 * with a deadline, and only 127.x.y.z addresses are used.
 */
import { spawn } from "child_process";
import { promises as fs, readdirSync, readFileSync, readlinkSync, rmSync } from "fs";
import * as net from "net";
import * as path from "path";
import {
  assertLoopbackIPv4,
  killGroup,
  Libvirtd,
  ManagedProcess,
  prepareLibvirtd,
  RunningLibvirtd,
} from "./libvirtd";
import { freePort, removeDir, run, RunResult, runOrThrow, sleep, tempDir, writeFiles } from "./programs";
import { createRawImage, QemuTlsKind } from "./qemu";

const SSHD = "/usr/sbin/sshd";
const POLL_MS = 50;
const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
const DEFAULT_START_TIMEOUT_MS = 15_000;
const DEFAULT_CLIENT_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 3_000;
const KILL_PASSES = 5;
const START_ATTEMPTS = 3;
/** How long to wait for stdio to close after an ssh client was SIGKILLed. */
const CLOSE_GRACE_MS = 2_000;
/** Keeps messages in English for the assertions. */
const C_ENV = "LC_ALL=C LANG=C";

// ---------------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------------

/** One host of {@link TestBedOptions}. */
export interface TestHostSpec {
  /** Host name, listed in every host's `/etc/hosts` (e.g. `tb-a.test`). */
  name: string;
  /** Loopback IPv4 address sshd listens on (any 127.x.y.z, e.g. `127.0.0.21`). */
  address: string;
  /** Further names of the host in every host's `/etc/hosts`. */
  aliases?: readonly string[];
  /**
   * Give the host libvirt's directories of its own, as a real host has: tmpfs over `/run` (then `/run/sshd`),
   * `/var/lib/libvirt`, `/var/cache/libvirt`, `/var/log/libvirt`, `/etc/init.d` (empty) and `/etc/libvirt`, the
   * last holding a copy of the machine's `/etc/libvirt`. A libvirtd started on the host with its default paths
   * ({@link startSystemLibvirtd}) then reads the host's own `/etc/libvirt/libvirtd.conf` and `virsh` and
   * `virt-admin` run on the host reach it at the default sockets. @default false
   */
  libvirt?: boolean;
}

/** Options for {@link startTestBed}. */
export interface TestBedOptions {
  hosts: readonly TestHostSpec[];
  /**
   * Extra login users. Missing ones are created machine-wide (`useradd -M -d /home/U -s /bin/sh -p '*' U`)
   * and never deleted; a user whose password is locked (`!`) gets `*` instead, since sshd without PAM refuses
   * locked accounts even for public keys. Each host gets a private `/home/U` (owned by U, 0700) with the bed's
   * key in `.ssh/authorized_keys`.
   */
  users?: readonly string[];
  /**
   * Home directories other than `/home/U` for some of `users` (absolute, under `/home`, spaces allowed);
   * a user whose home differs is moved there machine-wide (`usermod -d`). @default /home/U
   */
  homes?: Readonly<Record<string, string>>;
  /** Bound on waiting for each host's sshd to accept an `ssh ... true`. @default 15 s */
  startTimeoutMs?: number;
}

/** The shape of `@pulumi/command`'s `remote.ConnectionArgs` that the bed hands out for its hosts. */
export interface SshConnection {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  /** The host's own public key, so that commands given this connection are pinned to this host. */
  hostKey: string;
}

/** A connection as `remote.Command` receives it (only the fields the runner supports). */
export interface RemoteConnection {
  /** A loopback IPv4 address, or the name or alias of a host of a running bed (mapped to its address). */
  host: string;
  /** @default 22 */
  port?: number;
  /** @default "root" */
  user?: string;
  /** OpenSSH private key (PEM text). Required: the runner never falls back to another key. */
  privateKey?: string;
  /**
   * The host's public key (`ssh-ed25519 AAAA...`): the only key accepted. Without it ANY host key is
   * accepted, as `@pulumi/command` 1.2.1 does (see {@link connectionTarget}).
   */
  hostKey?: string;
}

/** Outcome of a remote or local command: exit code (null if killed), signal, output, `timedOut`. */
export type CommandResult = RunResult;

/** Options for {@link TestHost.exec}. */
export interface ExecOptions {
  /** Written to the remote command's stdin, which is then closed. */
  stdin?: string | Buffer;
  /** Login user. @default "root" */
  user?: string;
  /** Upper bound; the ssh client is SIGKILLed after it. @default 30 s */
  timeoutMs?: number;
}

/** Owner, group and permission bits of a remote file. */
export interface FileStat {
  /** Octal permission bits, zero-padded to 4 digits, e.g. `"0644"`. */
  mode: string;
  owner: string;
  group: string;
}

/** Options for {@link TestHost.writeFile}. */
export interface WriteFileOptions {
  /** Octal mode, e.g. `"0640"`. @default "0644" */
  mode?: string;
  /** @default "root" */
  owner?: string;
  /** @default "root" */
  group?: string;
}

/** Options for {@link TestHost.spawnDaemon}. */
export interface SpawnDaemonOptions {
  /** For messages. */
  description: string;
  /** Readiness: the daemon is up once a TCP connection to readyHost:readyPort succeeds. */
  readyHost: string;
  readyPort: number;
  /** Bound on the readiness wait. @default 15 s */
  timeoutMs?: number;
  /** Login user that runs the command. @default "root" */
  user?: string;
}

/** A long-lived process started on a host by {@link TestHost.spawnDaemon}. */
export interface RemoteDaemon {
  readonly description: string;
  /** Its PID in the host's PID namespace (as the remote shell saw `$$`). */
  readonly remotePid: number | undefined;
  /** Whether the local ssh client has exited (i.e. the remote command ended or the session broke). */
  readonly exited: boolean;
  /** What the ssh client received on stdout and stderr so far. */
  output(): string;
  /**
   * Kills the remote process group through a separate `exec` as root (SIGTERM, SIGKILL after 3 s), then the
   * local ssh client, and removes the pid-file directory. Idempotent.
   */
  stop(): Promise<void>;
}

/** One host of a {@link TestBed}. */
export interface TestHost {
  readonly name: string;
  readonly aliases: readonly string[];
  readonly address: string;
  /** sshd's port. */
  readonly port: number;
  /** Its public host key, `ssh-ed25519 AAAA...`. */
  readonly hostKey: string;
  /** Its known_hosts line, `[address]:port ssh-ed25519 AAAA...`. */
  readonly knownHostsLine: string;
  /** `{ host: address, port, user: "root", privateKey }`, usable as `remote.ConnectionArgs`. */
  readonly connection: SshConnection;
  /** Runs `command` through ssh (the login shell's `-c`). Resolves on any exit status; rejects only if ssh cannot run. */
  exec(command: string, opts?: ExecOptions): Promise<CommandResult>;
  /** Like {@link exec}, but rejects with stdout/stderr unless the command exits 0. */
  execOrThrow(command: string, opts?: ExecOptions): Promise<CommandResult>;
  /** Starts `command` on the host and resolves once readyHost:readyPort accepts TCP (see {@link SpawnDaemonOptions}). */
  spawnDaemon(command: string, opts: SpawnDaemonOptions): Promise<RemoteDaemon>;
  /** The content of a remote file (UTF-8); rejects if it cannot be read. */
  readFile(file: string): Promise<string>;
  /** Atomically (temp file + rename) writes a remote file with mode/owner/group; missing directories get 0755. */
  writeFile(file: string, content: string | Buffer, opts?: WriteFileOptions): Promise<void>;
  /** Mode, owner and group of a remote path, or undefined if it does not exist. */
  stat(file: string): Promise<FileStat | undefined>;
  /** Whether a remote path exists (`test -e`). */
  exists(file: string): Promise<boolean>;
  /** What sshd printed (`-e`: its log) so far. */
  log(): string;
  /** Kills the host's whole process tree and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** A running test bed. */
export interface TestBed {
  readonly hosts: readonly TestHost[];
  /** The bed's temp directory (keys, known_hosts, one sub-directory per host). */
  readonly dir: string;
  /** The client private key (OpenSSH PEM), authorized for root and every extra user on every host. */
  readonly privateKey: string;
  /** Path of the client private key file (mode 0600). */
  readonly privateKeyPath: string;
  /** The client public key, `ssh-ed25519 AAAA... comment`. */
  readonly publicKey: string;
  /** Path of the known_hosts file listing every host. */
  readonly knownHostsPath: string;
  readonly users: readonly string[];
  /** The host with this name, alias or address; throws if there is none. */
  host(nameOrAddress: string): TestHost;
  /** Stops every host (see {@link TestHost.stop}) and removes the bed's directory. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------------------

/** Single-quotes a value for a POSIX shell. */
export function shQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function assertName(kind: string, value: string): void {
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(value)) {
    throw new Error(`testbed: bad ${kind} ${JSON.stringify(value)}`);
  }
}

function assertUser(user: string): void {
  if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(user))
    throw new Error(`testbed: bad user name ${JSON.stringify(user)}`);
}

/** Rejects commas (QEMU's option separator) and non-absolute paths in a QEMU option value. */
function qemuPath(p: string): string {
  if (!path.isAbsolute(p) || /[,\s']/.test(p)) throw new Error(`unsupported path for a QEMU option: ${p}`);
  return p;
}

/** Numeric uid and gid of a machine user (`getent passwd`). */
async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  const r = await run("getent", ["passwd", user]);
  const fields = r.stdout.trim().split(":");
  if (r.code !== 0 || fields.length < 4) throw new Error(`testbed: no such user ${user}`);
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
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

/** Where and as whom an ssh client connects, and with which key and known_hosts file. */
interface SshTarget {
  address: string;
  port: number;
  user: string;
  keyPath: string;
  /** The known_hosts file to check against; undefined: accept any host key (no hostKey in the connection). */
  knownHostsPath: string | undefined;
  /** `HostKeyAlgorithms` when pinned to one key: only that key's type is offered. */
  hostKeyAlgorithm?: string;
}

/** The OpenSSH client arguments for running `command` (one argument after `--`) on `t`. */
function sshArgs(t: SshTarget, command: string): string[] {
  const hostKeys =
    t.knownHostsPath === undefined
      ? ["UserKnownHostsFile=/dev/null", "StrictHostKeyChecking=no"]
      : [
          "UserKnownHostsFile=" + t.knownHostsPath,
          "StrictHostKeyChecking=yes",
          ...(t.hostKeyAlgorithm ? ["HostKeyAlgorithms=" + t.hostKeyAlgorithm] : []),
        ];
  const opts = [
    ...hostKeys,
    "GlobalKnownHostsFile=/dev/null",
    "UpdateHostKeys=no",
    "BatchMode=yes",
    "IdentitiesOnly=yes",
    "ControlMaster=no",
    "ConnectTimeout=5",
    "LogLevel=ERROR",
  ];
  return [
    "-F",
    "/dev/null",
    "-T",
    "-i",
    t.keyPath,
    "-p",
    String(t.port),
    ...opts.flatMap((o) => ["-o", o]),
    `${t.user}@${t.address}`,
    "--",
    command,
  ];
}

// ---------------------------------------------------------------------------------------------------------
// Process-tree killing
// ---------------------------------------------------------------------------------------------------------

/** pid → [ppid, state] of every process, from `/proc/PID/stat`. */
function processTable(): Map<number, { ppid: number; state: string }> {
  const table = new Map<number, { ppid: number; state: string }>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return table;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      table.set(Number(entry), { state: rest[0], ppid: Number(rest[1]) });
    } catch {
      // Gone meanwhile.
    }
  }
  return table;
}

function nsLink(pid: number | "self", kind: "pid" | "mnt"): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}

/** Live (non-zombie) descendants of `root` (and `root` itself) plus every live member of PID namespace `pidNs`. */
function treeOf(root: number, pidNs: string | undefined): number[] {
  const table = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, { ppid }] of table) {
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const found = new Set<number>();
  const queue = table.has(root) ? [root] : [];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    if (found.has(pid)) continue;
    found.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  if (pidNs !== undefined && pidNs !== nsLink("self", "pid")) {
    for (const pid of table.keys()) if (nsLink(pid, "pid") === pidNs) found.add(pid);
  }
  found.delete(process.pid);
  return [...found].filter((pid) => table.get(pid)?.state !== "Z");
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** SIGTERM to the tree, SIGKILL to what is left after the grace period; a few passes for late forks. */
async function killTree(root: number, pidNs: string | undefined): Promise<void> {
  for (let pass = 0; pass < KILL_PASSES; pass++) {
    const targets = treeOf(root, pidNs);
    if (targets.length === 0) return;
    const signal: NodeJS.Signals = pass === 0 ? "SIGTERM" : "SIGKILL";
    for (const pid of targets) signalPid(pid, signal);
    const deadline = Date.now() + STOP_GRACE_MS;
    while (Date.now() < deadline) {
      const table = processTable();
      if (targets.every((pid) => !table.has(pid) || table.get(pid)?.state === "Z")) break;
      await sleep(POLL_MS);
    }
  }
  const left = treeOf(root, pidNs);
  if (left.length > 0) throw new Error(`testbed: processes ${left.join(", ")} survived SIGKILL`);
}

/**
 * Hosts not yet stopped: as a last resort when the test process exits, their trees are SIGKILLed and their
 * directories (and those of their daemons) removed; the bed directory itself is in {@link liveBeds}.
 */
const liveHosts = new Set<RunningHost>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const host of liveHosts) {
      for (const pid of treeOf(host.proc.pgid, host.pidNs)) signalPid(pid, "SIGKILL");
      killGroup(host.proc.pgid, "SIGKILL");
      for (const daemon of host.daemons) rmSync(daemon.dir, { recursive: true, force: true });
      rmSync(host.dir, { recursive: true, force: true });
    }
    for (const bed of liveBeds) rmSync(bed.dir, { recursive: true, force: true });
  });
}

/** Running beds, to find the known_hosts file for {@link runRemoteCommand}. */
const liveBeds = new Set<RunningBed>();

// ---------------------------------------------------------------------------------------------------------
// Hosts and beds
// ---------------------------------------------------------------------------------------------------------

class RunningDaemon implements RemoteDaemon {
  private stopped = false;
  remotePid: number | undefined;
  constructor(
    readonly description: string,
    readonly proc: ManagedProcess,
    private readonly host: RunningHost,
    readonly dir: string,
    readonly pidFile: string,
  ) {}

  get exited(): boolean {
    return this.proc.exited;
  }

  output(): string {
    return this.proc.output;
  }

  /** Reads the remote pid file (it lives under the shared /tmp). */
  async readPid(): Promise<number | undefined> {
    try {
      const pid = Number((await fs.readFile(this.pidFile, "utf8")).trim());
      if (Number.isInteger(pid) && pid > 1) this.remotePid = pid;
    } catch {
      // Not written (yet).
    }
    return this.remotePid;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.host.daemons.delete(this);
    const errors: string[] = [];
    try {
      const pid = await this.readPid();
      if (pid !== undefined && !this.host.stopped) {
        // POSIX sh (root's login shell may be bash or dash). Neither dash's `kill` nor procps' `/bin/kill`
        // takes a negative PID reliably (procps reads `-- -12` as signal 12 when the PID is small, as it is in
        // the host's PID namespace), hence `pkill -g` for the group.
        const script = [
          `p=${pid}`,
          `alive() {`,
          `  for q in $p $(pgrep -g $p); do`,
          `    st=$(sed 's/.*) //' /proc/$q/stat 2>/dev/null | cut -c1)`,
          `    [ -n "$st" ] && [ "$st" != Z ] && return 0`,
          `  done`,
          `  return 1`,
          `}`,
          `stop() { pkill --signal $1 -g $p; kill -s $1 $p; } 2>/dev/null`,
          `stop TERM`,
          `i=0; while alive && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done`,
          `alive && stop KILL`,
          `i=0; while alive && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done`,
          `! alive`,
        ].join("\n");
        const r = await this.host.exec(script, { timeoutMs: 15_000 });
        if (r.code !== 0) errors.push(`remote pid ${pid} survived: ${r.stderr}${r.stdout}`);
      }
    } finally {
      try {
        await this.proc.stop();
      } catch (err) {
        errors.push((err as Error).message);
      }
      await removeDir(this.dir);
    }
    if (errors.length > 0) throw new Error(`${this.description}: ${errors.join("; ")}`);
  }
}

class RunningHost implements TestHost {
  stopped = false;
  pidNs: string | undefined;
  readonly daemons = new Set<RunningDaemon>();
  readonly connection: SshConnection;
  readonly knownHostsLine: string;

  constructor(
    readonly name: string,
    readonly aliases: readonly string[],
    readonly address: string,
    readonly port: number,
    readonly hostKey: string,
    readonly proc: ManagedProcess,
    readonly dir: string,
    private readonly bed: { privateKey: string; privateKeyPath: string; knownHostsPath: string },
  ) {
    this.connection = { host: address, port, user: "root", privateKey: bed.privateKey, hostKey };
    this.knownHostsLine = `[${address}]:${port} ${hostKey}`;
  }

  target(user = "root", knownHostsPath = this.bed.knownHostsPath): SshTarget {
    assertUser(user);
    return { address: this.address, port: this.port, user, keyPath: this.bed.privateKeyPath, knownHostsPath };
  }

  exec(command: string, opts: ExecOptions = {}): Promise<CommandResult> {
    return run("ssh", sshArgs(this.target(opts.user), command), {
      input: opts.stdin,
      timeoutMs: opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
    });
  }

  async execOrThrow(command: string, opts: ExecOptions = {}): Promise<CommandResult> {
    const r = await this.exec(command, opts);
    if (r.code !== 0 || r.timedOut) {
      const status = r.timedOut ? "timed out" : `exit code ${r.code} signal ${r.signal}`;
      throw new Error(`on ${this.name}: ${command} failed (${status}):\n${r.stderr}${r.stdout}`);
    }
    return r;
  }

  async spawnDaemon(command: string, opts: SpawnDaemonOptions): Promise<RemoteDaemon> {
    const user = opts.user ?? "root";
    assertUser(user);
    const dir = await tempDir("virt-pki-daemon-");
    if (user !== "root") {
      const { uid, gid } = await userIds(user);
      await fs.chown(dir, uid, gid);
    }
    const pidFile = path.join(dir, "pid");
    const child = spawn("ssh", sshArgs(this.target(user), `echo $$ > ${shQuote(pidFile)}; exec ${command}`), {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const description = `${opts.description} on ${this.name}`;
    const proc = new ManagedProcess(child, description);
    const daemon = new RunningDaemon(description, proc, this, dir, pidFile);
    this.daemons.add(daemon);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const state = await proc.waitListening(opts.readyHost, opts.readyPort, timeoutMs);
    await daemon.readPid();
    if (state === "ready") return daemon;
    const output = proc.output;
    await daemon.stop().catch(() => undefined);
    throw new Error(
      state === "exited"
        ? `${description} exited before listening on ${opts.readyHost}:${opts.readyPort} (${proc.exitStatus}):\n${output}`
        : `${description} was not listening on ${opts.readyHost}:${opts.readyPort} within ${timeoutMs} ms:\n${output}`,
    );
  }

  async readFile(file: string): Promise<string> {
    return (await this.execOrThrow(`cat -- ${shQuote(file)}`)).stdout;
  }

  async writeFile(file: string, content: string | Buffer, opts: WriteFileOptions = {}): Promise<void> {
    const mode = opts.mode ?? "0644";
    if (!/^[0-7]{3,4}$/.test(mode)) throw new Error(`writeFile: bad mode ${mode}`);
    const owner = opts.owner ?? "root";
    const group = opts.group ?? "root";
    assertUser(owner);
    assertUser(group);
    const f = shQuote(file);
    const tmp = shQuote(`${file}.testbed-tmp`);
    await this.execOrThrow(
      `set -e; umask 022; mkdir -p -- "$(dirname -- ${f})"; umask 077; cat > ${tmp}; ` +
        `chown ${owner}:${group} ${tmp}; chmod ${mode} ${tmp}; mv -f -- ${tmp} ${f}`,
      { stdin: content },
    );
  }

  async stat(file: string): Promise<FileStat | undefined> {
    const r = await this.exec(`LC_ALL=C stat -c '%a %U %G' -- ${shQuote(file)}`);
    if (r.code !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw new Error(`stat ${file} on ${this.name} failed: ${r.stderr}${r.stdout}`);
    }
    const [mode, owner, group] = r.stdout.trim().split(" ");
    return { mode: mode.padStart(4, "0"), owner, group };
  }

  async exists(file: string): Promise<boolean> {
    const r = await this.exec(`test -e ${shQuote(file)} || test -L ${shQuote(file)}`);
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    throw new Error(`test -e ${file} on ${this.name} failed (${r.code}): ${r.stderr}`);
  }

  log(): string {
    return this.proc.output;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const errors: string[] = [];
    try {
      await killTree(this.proc.pgid, this.pidNs);
    } catch (err) {
      errors.push((err as Error).message);
    }
    // The remote processes are gone with the namespace; this stops the local ssh clients and cleans up.
    for (const daemon of [...this.daemons])
      await daemon.stop().catch((err: Error) => errors.push(err.message));
    try {
      await this.proc.stop();
    } catch (err) {
      errors.push((err as Error).message);
    }
    liveHosts.delete(this);
    await removeDir(this.dir);
    if (errors.length > 0) throw new Error(`stopping ${this.name}: ${errors.join("; ")}`);
  }
}

class RunningBed implements TestBed {
  private stopped = false;
  readonly hosts: RunningHost[] = [];
  constructor(
    readonly dir: string,
    readonly privateKey: string,
    readonly privateKeyPath: string,
    readonly publicKey: string,
    readonly knownHostsPath: string,
    readonly users: readonly string[],
  ) {}

  host(nameOrAddress: string): TestHost {
    const found = this.findHost(nameOrAddress);
    if (found === undefined) throw new Error(`testbed: no host ${nameOrAddress}`);
    return found;
  }

  findHost(nameOrAddress: string, port?: number): RunningHost | undefined {
    return this.hosts.find(
      (h) =>
        (h.name === nameOrAddress || h.address === nameOrAddress || h.aliases.includes(nameOrAddress)) &&
        (port === undefined || h.port === port),
    );
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    liveBeds.delete(this);
    const results = await Promise.allSettled(this.hosts.map((h) => h.stop()));
    await removeDir(this.dir);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed.length > 0) throw new Error(failed.map((r) => String(r.reason)).join("\n"));
  }
}

/** Creates missing users machine-wide and unlocks locked ones (see {@link TestBedOptions.users}). */
async function ensureUsers(users: readonly string[], homes: Readonly<Record<string, string>>): Promise<void> {
  for (const user of users) {
    const home = homes[user] ?? `/home/${user}`;
    // useradd fails while another process holds the passwd lock (e.g. a concurrent test adding the same user).
    for (let attempt = 1; (await run("getent", ["passwd", user])).code !== 0; attempt++) {
      const r = await run("useradd", ["-M", "-d", home, "-s", "/bin/sh", "-p", "*", user]);
      if (r.code !== 0 && attempt >= 5) throw new Error(`useradd ${user} failed: ${r.stderr}`);
      if (r.code !== 0) await sleep(200);
    }
    const entry = (await run("getent", ["passwd", user])).stdout.trim().split(":");
    if (entry[5] !== home) await runOrThrow("usermod", ["-d", home, user]);
    const shadow = await run("getent", ["shadow", user]);
    if (shadow.code === 0 && shadow.stdout.split(":")[1]?.startsWith("!")) {
      await runOrThrow("usermod", ["-p", "*", user]);
    }
  }
}

/** Generates an ed25519 key pair at `file` / `file.pub`; resolves to the public key line. */
async function generateKey(file: string, comment: string): Promise<string> {
  await runOrThrow("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
  await fs.chmod(file, 0o600);
  return (await fs.readFile(`${file}.pub`, "utf8")).trim();
}

interface BedFiles {
  dir: string;
  privateKey: string;
  privateKeyPath: string;
  authorizedKeysPath: string;
  hostsPath: string;
  knownHostsPath: string;
  users: readonly string[];
  homes: Readonly<Record<string, string>>;
}

async function startHostOnce(
  spec: TestHostSpec,
  files: BedFiles,
  hostDir: string,
  hostKey: string,
  port: number,
  startTimeoutMs: number,
): Promise<RunningHost | "port-taken"> {
  const confPath = path.join(hostDir, "sshd_config");
  await writeFiles(
    hostDir,
    {
      sshd_config:
        [
          `ListenAddress ${spec.address}`,
          `Port ${port}`,
          `HostKey ${path.join(hostDir, "ssh_host_ed25519_key")}`,
          // sshd is PID 1 of its namespace: a pid file would say "1", which means init on the machine.
          "PidFile none",
          "PermitRootLogin prohibit-password",
          "PubkeyAuthentication yes",
          "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "UsePAM no",
          "StrictModes no",
          "AuthorizedKeysFile .ssh/authorized_keys",
          "PrintMotd no",
          "PrintLastLog no",
          "UseDNS no",
          "X11Forwarding no",
          "Subsystem sftp internal-sftp",
        ].join("\n") + "\n",
    },
    0o600,
  );
  const keys = shQuote(files.authorizedKeysPath);
  const etcCopy = shQuote(path.join(hostDir, "etc-libvirt"));
  const libvirt = spec.libvirt
    ? [
        `cp -a /etc/libvirt ${etcCopy}`,
        "mkdir -p /var/lib/libvirt /var/cache/libvirt /var/log/libvirt",
        "mount -t tmpfs -o mode=0755 testbed-run /run",
        "mount -t tmpfs -o mode=0755 testbed-etc-libvirt /etc/libvirt",
        `cp -a ${etcCopy}/. /etc/libvirt/`,
        "mount -t tmpfs -o mode=0755 testbed-lib-libvirt /var/lib/libvirt",
        "mount -t tmpfs -o mode=0755 testbed-cache-libvirt /var/cache/libvirt",
        "mount -t tmpfs -o mode=0755 testbed-log-libvirt /var/log/libvirt",
        "mount -t tmpfs -o mode=0755 testbed-init /etc/init.d",
      ]
    : [];
  const script = [
    "set -e",
    "mkdir -p /etc/pki /etc/libvirt /run/sshd",
    ...libvirt,
    "mkdir -p /run/sshd",
    "mount -t tmpfs -o mode=0755 testbed-pki /etc/pki",
    "mount -t tmpfs -o mode=0700 testbed-root /root",
    "mount -t tmpfs -o mode=0755 testbed-home /home",
    // A real host's /var/lib is its own: installs keep their claims in /var/lib/virt-pki.
    "mkdir -p /var/lib/virt-pki",
    "mount -t tmpfs -o mode=0755 testbed-state /var/lib/virt-pki",
    // Its own host name too (UTS namespace): virt-pki-validate compares it with the server certificate.
    `hostname ${shQuote(spec.name)}`,
    `mount --bind ${shQuote(files.hostsPath)} /etc/hosts`,
    "mkdir -m 0700 /root/.ssh",
    `cp ${keys} /root/.ssh/authorized_keys`,
    "chmod 0600 /root/.ssh/authorized_keys",
    ...files.users.flatMap((u) => {
      const home = shQuote(files.homes[u] ?? `/home/${u}`);
      return [
        `mkdir -m 0700 ${home} ${home}/.ssh`,
        `cp ${keys} ${home}/.ssh/authorized_keys`,
        `chmod 0600 ${home}/.ssh/authorized_keys`,
        `chown -R ${u}: ${home}`,
      ];
    }),
    `exec ${SSHD} -D -e -f ${shQuote(confPath)}`,
  ].join("\n");
  const child = spawn(
    "unshare",
    [
      "--mount",
      "--uts",
      "--propagation",
      "private",
      "--pid",
      "--fork",
      "--kill-child",
      "--mount-proc",
    ].concat(["sh", "-c", script]),
    { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C", LANG: "C" } },
  );
  const proc = new ManagedProcess(child, `sshd of ${spec.name} on ${spec.address}:${port}`);
  const host = new RunningHost(
    spec.name,
    spec.aliases ?? [],
    spec.address,
    port,
    hostKey,
    proc,
    hostDir,
    files,
  );
  liveHosts.add(host);
  installExitHook();

  // Readiness: an actual login, checked against this host's key alone.
  const knownHostsPath = path.join(hostDir, "known_hosts");
  await writeFiles(hostDir, { known_hosts: host.knownHostsLine + "\n" }, 0o600);
  const deadline = Date.now() + startTimeoutMs;
  let last: CommandResult | undefined;
  while (!proc.exited && Date.now() < deadline) {
    if (await tcpProbe(spec.address, port, 1_000)) {
      last = await run("ssh", sshArgs(host.target("root", knownHostsPath), "true"), {
        input: undefined,
        timeoutMs: 10_000,
      });
      if (last.code === 0) break;
    }
    await sleep(POLL_MS);
  }
  if (!proc.exited && last?.code === 0) {
    const sshd = [...processTable()].find(([, p]) => p.ppid === proc.pgid)?.[0];
    host.pidNs = sshd === undefined ? undefined : nsLink(sshd, "pid");
    return host;
  }
  const exitedEarly = proc.exited;
  const output = proc.output;
  await host.stop().catch(() => undefined);
  await fs.mkdir(hostDir, { recursive: true }); // host.stop removed it; a retry reuses it
  if (exitedEarly && /Address already in use/i.test(output)) return "port-taken";
  throw new Error(
    `sshd of ${spec.name} on ${spec.address}:${port} ` +
      (exitedEarly ? `exited (${proc.exitStatus})` : `did not accept ssh within ${startTimeoutMs} ms`) +
      `:\n${output}` +
      (last === undefined ? "" : `\nlast ssh attempt: ${last.stderr}`),
  );
}

async function startHost(spec: TestHostSpec, files: BedFiles, startTimeoutMs: number): Promise<RunningHost> {
  const hostDir = path.join(files.dir, spec.name);
  await fs.mkdir(hostDir, { mode: 0o700 });
  const keyPath = path.join(hostDir, "ssh_host_ed25519_key");
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    // Regenerated per attempt: a failed attempt removes the directory.
    const hostKey = (await generateKey(keyPath, spec.name)).split(" ").slice(0, 2).join(" ");
    const started = await startHostOnce(
      spec,
      files,
      hostDir,
      hostKey,
      await freePort(spec.address),
      startTimeoutMs,
    );
    if (started !== "port-taken") return started;
    await fs.rm(keyPath, { force: true });
    await fs.rm(`${keyPath}.pub`, { force: true });
  }
  throw new Error(
    `sshd of ${spec.name}: every port tried on ${spec.address} was taken (${START_ATTEMPTS} attempts)`,
  );
}

/**
 * Starts one sshd per host (see the module comment) and resolves once each accepts `ssh root@address true`.
 * Rejects (after stopping whatever it started) if any host fails to start. The caller must `await bed.stop()`.
 */
export async function startTestBed(opts: TestBedOptions): Promise<TestBed> {
  if (opts.hosts.length === 0) throw new Error("startTestBed: no hosts");
  const seen = new Set<string>();
  for (const h of opts.hosts) {
    assertLoopbackIPv4(h.address);
    for (const name of [h.name, ...(h.aliases ?? [])]) {
      assertName("host name", name);
      if (seen.has(name)) throw new Error(`startTestBed: duplicate name ${name}`);
      seen.add(name);
    }
    if (seen.has(h.address)) throw new Error(`startTestBed: duplicate address ${h.address}`);
    seen.add(h.address);
  }
  const users = [...(opts.users ?? [])];
  users.forEach(assertUser);
  if (users.includes("root")) throw new Error("startTestBed: root is always a login user");
  const homes = opts.homes ?? {};
  for (const [u, home] of Object.entries(homes)) {
    if (!users.includes(u) || !/^\/home\/[A-Za-z0-9 ._-]+$/.test(home)) {
      throw new Error(`startTestBed: bad home ${JSON.stringify(home)} for ${u}`);
    }
  }
  await ensureUsers(users, homes);

  const dir = await tempDir("virt-pki-testbed-");
  let bed: RunningBed | undefined;
  try {
    const privateKeyPath = path.join(dir, "id_ed25519");
    const publicKey = await generateKey(privateKeyPath, "virt-pki-testbed");
    const privateKey = await fs.readFile(privateKeyPath, "utf8");
    const hostsLines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"].concat(
      opts.hosts.map((h) => [h.address, h.name, ...(h.aliases ?? [])].join(" ")),
    );
    const written = await writeFiles(
      dir,
      { hosts: hostsLines.join("\n") + "\n", authorized_keys: publicKey + "\n" },
      0o644,
    );
    const knownHostsPath = path.join(dir, "known_hosts");
    const files: BedFiles = {
      dir,
      privateKey,
      privateKeyPath,
      authorizedKeysPath: written.authorized_keys,
      hostsPath: written.hosts,
      knownHostsPath,
      users,
      homes,
    };
    bed = new RunningBed(dir, privateKey, privateKeyPath, publicKey, knownHostsPath, users);
    liveBeds.add(bed);
    const startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const results = await Promise.allSettled(opts.hosts.map((h) => startHost(h, files, startTimeoutMs)));
    for (const r of results) if (r.status === "fulfilled") bed.hosts.push(r.value);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    await writeFiles(dir, { known_hosts: bed.hosts.map((h) => h.knownHostsLine).join("\n") + "\n" }, 0o600);
    return bed;
  } catch (err) {
    if (bed !== undefined) await bed.stop().catch(() => undefined);
    await removeDir(dir);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Running captured @pulumi/command commands
// ---------------------------------------------------------------------------------------------------------

/** Options for {@link runRemoteCommand}. */
export interface RemoteCommandOptions {
  /** Upper bound; the ssh client is SIGKILLed after it. @default 30 s */
  timeoutMs?: number;
  /**
   * known_hosts file to check the host key against, for tests of the runner itself. @default none: the
   * connection's `hostKey` is pinned, and without one any key is accepted (see {@link connectionTarget})
   */
  knownHostsFile?: string;
}

/**
 * Resolves a connection to an ssh target, with the private key (and a pinned host key) in 0600 temp files
 * that `cleanup` removes. Host keys as `@pulumi/command` 1.2.1 checks them (pulumi-command
 * `provider/pkg/provider/remote/connection.go`, `connectionBase.SSHConfig`): with `connection.hostKey`, the
 * parsed key is the only one accepted (`ssh.FixedHostKey`) and only its type is offered
 * (`HostKeyAlgorithms = []string{publicKey.Type()}`); without it, any key is accepted
 * (`ssh.InsecureIgnoreHostKey()`). `knownHostsFile` (tests of the runner itself) overrides both.
 */
async function connectionTarget(
  connection: RemoteConnection,
  knownHostsFile: string | undefined,
): Promise<{ target: SshTarget; cleanup: () => Promise<void> }> {
  const port = connection.port ?? 22;
  const user = connection.user ?? "root";
  assertUser(user);
  let address = connection.host;
  if (!net.isIP(address)) {
    const owners = [...liveBeds].map((b) => b.findHost(connection.host, port)).filter((h) => h !== undefined);
    if (owners[0] !== undefined) address = owners[0].address;
  }
  if (!net.isIP(connection.host) && address === connection.host) {
    throw new Error(`runRemoteCommand: no running test bed has ${connection.host}:${port}`);
  }
  assertLoopbackIPv4(address);
  if (connection.privateKey === undefined || connection.privateKey === "") {
    throw new Error("runRemoteCommand: the connection has no privateKey");
  }
  const dir = await tempDir("virt-pki-sshkey-");
  const key = connection.privateKey.endsWith("\n") ? connection.privateKey : connection.privateKey + "\n";
  const files: Record<string, string> = { id: key };
  let hostKeyAlgorithm: string | undefined;
  if (knownHostsFile === undefined && connection.hostKey !== undefined) {
    // ssh.ParseAuthorizedKey: "<type> <base64> [comment]"; a line that does not parse fails the dial.
    const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: [^\n]*)?$/.exec(connection.hostKey.trim());
    if (!m) {
      await removeDir(dir);
      throw new Error("runRemoteCommand: failed to parse host key");
    }
    hostKeyAlgorithm = m[1];
    files.known_hosts = `[${address}]:${port} ${m[1]} ${m[2]}\n`;
  }
  const written = await writeFiles(dir, files, 0o600);
  return {
    target: {
      address,
      port,
      user,
      keyPath: written.id,
      knownHostsPath: knownHostsFile ?? written.known_hosts,
      hostKeyAlgorithm,
    },
    cleanup: () => removeDir(dir),
  };
}

/**
 * Runs `command` the way `@pulumi/command`'s `remote.Command` does: one SSH `exec` request with the command
 * string (run by the remote login shell), `stdin` written and then closed, using exactly the connection's
 * host, port (default 22), user (default root) and private key (written to a 0600 temp file, removed
 * afterwards). Host keys are checked as the command provider checks them: the connection's `hostKey`
 * only, or none (see {@link connectionTarget}). Never rejects for an exit status.
 */
export async function runRemoteCommand(
  connection: RemoteConnection,
  command: string,
  stdin?: string,
  opts: RemoteCommandOptions = {},
): Promise<CommandResult> {
  const { target, cleanup } = await connectionTarget(connection, opts.knownHostsFile);
  try {
    return await run("ssh", sshArgs(target, command), {
      input: stdin,
      timeoutMs: opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
    });
  } finally {
    await cleanup();
  }
}

/** Options for {@link interruptRemoteCommand}. */
export interface InterruptOptions extends RemoteCommandOptions {
  /** How long to let the command run after writing the prefix. @default 500 ms */
  waitMs?: number;
  /** Also wait until the command's stdout matches this (bounded by `timeoutMs`, default 10 s). */
  untilStdout?: RegExp;
}

/**
 * Starts `command` like {@link runRemoteCommand}, writes only `stdinPrefix` to its stdin WITHOUT closing it,
 * waits (`waitMs`, and `untilStdout` if given), then SIGKILLs the ssh client, as a dying deployment would.
 * The remote command then sees EOF on stdin. Resolves with what the client got (`signal` is SIGKILL unless
 * the command had already ended).
 */
export async function interruptRemoteCommand(
  connection: RemoteConnection,
  command: string,
  stdinPrefix: string,
  opts: InterruptOptions = {},
): Promise<CommandResult> {
  const { target, cleanup } = await connectionTarget(connection, opts.knownHostsFile);
  try {
    const child = spawn("ssh", sshArgs(target, command), { stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => stdout.push(c));
    child.stderr.on("data", (c: Buffer) => stderr.push(c));
    child.stdin.on("error", () => undefined);
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once("close", (code, signal) => resolve({ code, signal }));
      child.once("error", () => resolve({ code: null, signal: null }));
    });
    let ended = false;
    void closed.then(() => (ended = true));
    child.stdin.write(stdinPrefix);
    const start = Date.now();
    const deadline = start + (opts.timeoutMs ?? 10_000);
    const waitMs = opts.waitMs ?? 500;
    while (!ended && Date.now() < deadline) {
      const matched =
        opts.untilStdout === undefined || opts.untilStdout.test(Buffer.concat(stdout).toString());
      if (matched && Date.now() - start >= waitMs) break;
      await sleep(POLL_MS);
    }
    const timedOut = !ended && Date.now() >= deadline;
    child.kill("SIGKILL");
    const status = await Promise.race([closed, sleep(CLOSE_GRACE_MS).then(() => undefined)]);
    child.stdout.destroy();
    child.stderr.destroy();
    return {
      code: status?.code ?? null,
      // A command that had already ended reports its own exit (signal null); one still running was killed.
      signal: status ? status.signal : "SIGKILL",
      stdout: Buffer.concat(stdout).toString("utf8"),
      stderr: Buffer.concat(stderr).toString("utf8"),
      timedOut,
    };
  } finally {
    await cleanup();
  }
}

/**
 * The installer's temporary files and directories (`.virt-pki.*`) left below `dirs` on `host`, polled (bounded by
 * `timeoutMs`) until there are none: after a killed transfer the remote script is still exiting through its traps.
 */
export async function installLeftovers(
  host: TestHost,
  dirs: readonly string[],
  timeoutMs = 4_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let found = "";
  do {
    found = (await host.exec(`find ${dirs.map(shQuote).join(" ")} -name '.virt-pki.*'`)).stdout;
    if (found === "") break;
    await sleep(POLL_MS);
  } while (Date.now() < deadline);
  return found;
}

/** Options for {@link runLocalCommand}. */
export interface LocalCommandOptions {
  /** Working directory (`dir` of `local.Command`). */
  dir?: string;
  /** @default ["/bin/sh", "-c"] as `local.Command` on Linux */
  interpreter?: readonly string[];
  /** Extra environment (`environment` of `local.Command`). */
  env?: Record<string, string>;
  /** @default 30 s */
  timeoutMs?: number;
}

/** Runs `command` the way `@pulumi/command`'s `local.Command` does: `interpreter... command`, `stdin` then EOF. */
export function runLocalCommand(
  command: string,
  stdin?: string,
  opts: LocalCommandOptions = {},
): Promise<CommandResult> {
  const interpreter = opts.interpreter ?? ["/bin/sh", "-c"];
  if (interpreter.length === 0) throw new Error("runLocalCommand: empty interpreter");
  return run(interpreter[0], [...interpreter.slice(1), command], {
    input: stdin,
    cwd: opts.dir,
    env: opts.env,
    timeoutMs: opts.timeoutMs,
  });
}

// ---------------------------------------------------------------------------------------------------------
// Services on hosts
// ---------------------------------------------------------------------------------------------------------

/** Options for {@link startLibvirtdOnHost}. */
export interface HostLibvirtdOptions {
  /** `tls_allowed_dn_list` globs. */
  tlsAllowedDnList?: readonly string[];
  /** TLS port. @default a free port on the host's address (retried on another one if it was taken) */
  port?: number;
  /** @default 15 s */
  startTimeoutMs?: number;
}

/** A libvirtd running inside a host: the same shape as a local one (its directory is under the shared /tmp). */
export type RemoteLibvirtd = Libvirtd;

async function startLibvirtdOnHostOnce(
  host: TestHost,
  opts: HostLibvirtdOptions,
  port: number,
): Promise<RemoteLibvirtd | "port-taken"> {
  const dir = await tempDir("virt-pki-hostlibvirtd-");
  // No files: libvirtd uses /etc/pki/CA/cacert.pem, /etc/pki/libvirt/servercert.pem,
  // /etc/pki/libvirt/private/serverkey.pem (and /etc/pki/CA/cacrl.pem) of the host it runs in.
  const { confPath, logPath, script } = await prepareLibvirtd(dir, host.address, port, {
    tlsAllowedDnList: opts.tlsAllowedDnList,
  });
  const command = `env ${C_ENV} unshare --mount --propagation private sh -c ${shQuote(script)}`;
  let daemon: RemoteDaemon;
  try {
    daemon = await host.spawnDaemon(command, {
      description: `libvirtd on ${host.address}:${port}`,
      readyHost: host.address,
      readyPort: port,
      timeoutMs: opts.startTimeoutMs,
    });
  } catch (err) {
    let log = "";
    try {
      log = await fs.readFile(logPath, "utf8");
    } catch {
      // No log.
    }
    await removeDir(dir);
    const message = `${(err as Error).message}\n--- libvirtd log ---\n${log}`;
    if (opts.port === undefined && /Address already in use/i.test(message)) return "port-taken";
    throw new Error(message);
  }
  return new RunningLibvirtd(daemon, host.address, port, dir, confPath, logPath);
}

/**
 * Starts a real libvirtd with TLS inside `host` (so it reads that host's private `/etc/pki` at libvirt's
 * default paths), in a nested mount namespace with private libvirt state directories like `startLibvirtd`.
 * Resolves once its TLS port accepts TCP. The caller must `await daemon.stop()` (or stop the bed).
 */
export async function startLibvirtdOnHost(
  host: TestHost,
  opts: HostLibvirtdOptions = {},
): Promise<RemoteLibvirtd> {
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const started = await startLibvirtdOnHostOnce(host, opts, opts.port ?? (await freePort(host.address)));
    if (started !== "port-taken") return started;
  }
  throw new Error(`libvirtd: every port tried on ${host.address} was taken (${START_ATTEMPTS} attempts)`);
}

/** Options for {@link virshOnHost}. */
export interface VirshOnHostOptions {
  /** e.g. `test+tls://tb-a.test:PORT/default` (resolved with the client host's /etc/hosts). */
  uri: string;
  /** Login user running virsh (root uses /etc/pki, others ~/.pki/libvirt). @default "root" */
  user?: string;
  /** @default 20 s */
  timeoutMs?: number;
}

/** Outcome of {@link virshOnHost} / {@link qemuImgInfoOnHost}. */
export interface ClientResult {
  ok: boolean;
  /** stdout followed by stderr. */
  output: string;
}

/** Runs `LC_ALL=C virsh -c URI list` on `clientHost`; ok = exit 0 and the `Id Name State` header. */
export async function virshOnHost(clientHost: TestHost, opts: VirshOnHostOptions): Promise<ClientResult> {
  const r = await clientHost.exec(`${C_ENV} virsh -c ${shQuote(opts.uri)} list`, {
    user: opts.user,
    timeoutMs: opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS,
  });
  const ok = r.code === 0 && !r.timedOut && /^\s*Id\s+Name\s+State/m.test(r.stdout);
  return { ok, output: r.stdout + r.stderr };
}

/** Options for {@link startQemuNbdOnHost}. */
export interface HostQemuNbdOptions {
  kind: QemuTlsKind;
  /** The server's credentials directory on the host (e.g. `/etc/pki/qemu`). */
  dir: string;
  /** Raw image to export as `disk`. @default a fresh 1M raw image in a temp dir, owned by `runAs` */
  image?: string;
  /** Runs qemu-nbd as this user (with its groups, via `setpriv`), e.g. `libvirt-qemu`. @default root */
  runAs?: string;
  /** @default a free port on the host's address (retried on another one if it was taken) */
  port?: number;
  /** @default 15 s */
  startTimeoutMs?: number;
}

/** A qemu-nbd running inside a host. */
export interface RemoteQemuNbd {
  readonly host: string;
  readonly port: number;
  /** The exact remote command line. */
  readonly command: string;
  readonly exited: boolean;
  output(): string;
  /** Kills it and removes its image directory. Idempotent. */
  stop(): Promise<void>;
}

function runAsPrefix(runAs: string | undefined): string {
  if (runAs === undefined) return "";
  assertUser(runAs);
  return `setpriv --reuid=${runAs} --regid=${runAs} --init-groups -- `;
}

/**
 * Starts `qemu-nbd -t -b ADDRESS -p PORT -x disk -f raw --object tls-creds-<kind>,id=tls0,dir=DIR,endpoint=server
 * --tls-creds tls0 IMAGE` inside `host` (optionally as `runAs`), resolving once the port accepts TCP.
 */
export async function startQemuNbdOnHost(host: TestHost, opts: HostQemuNbdOptions): Promise<RemoteQemuNbd> {
  const object = `tls-creds-${opts.kind},id=tls0,dir=${qemuPath(opts.dir)},endpoint=server`;
  const imageDir = await tempDir("virt-pki-hostnbd-");
  try {
    let image = opts.image;
    if (image === undefined) {
      image = path.join(imageDir, "disk.raw");
      await createRawImage(image);
      if (opts.runAs !== undefined) {
        const { uid, gid } = await userIds(opts.runAs);
        await fs.chown(imageDir, uid, gid);
        await fs.chown(image, uid, gid);
      }
    }
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const port = opts.port ?? (await freePort(host.address));
      const args = ["-t", "-b", host.address, "-p", String(port), "-x", "disk", "-f", "raw"];
      args.push("--object", object, "--tls-creds", "tls0", qemuPath(image));
      const command = `env ${C_ENV} ${runAsPrefix(opts.runAs)}qemu-nbd ${args.join(" ")}`;
      try {
        const daemon = await host.spawnDaemon(command, {
          description: `qemu-nbd on ${host.address}:${port}`,
          readyHost: host.address,
          readyPort: port,
          timeoutMs: opts.startTimeoutMs,
        });
        let stopped = false;
        return {
          host: host.address,
          port,
          command,
          get exited() {
            return daemon.exited;
          },
          output: () => daemon.output(),
          stop: async () => {
            if (stopped) return;
            stopped = true;
            try {
              await daemon.stop();
            } finally {
              await removeDir(imageDir);
            }
          },
        };
      } catch (err) {
        if (opts.port === undefined && /Address already in use/i.test((err as Error).message)) continue;
        throw err;
      }
    }
    throw new Error(`qemu-nbd: every port tried on ${host.address} was taken (${START_ATTEMPTS} attempts)`);
  } catch (err) {
    await removeDir(imageDir);
    throw err;
  }
}

/** Options for {@link qemuImgInfoOnHost}. */
export interface QemuImgInfoOnHostOptions {
  /** NBD server name or address as the client host sees it (checked against the server certificate). */
  serverName: string;
  port: number;
  kind: QemuTlsKind;
  /** The client's credentials directory on the client host (e.g. `/etc/pki/qemu`). */
  dir: string;
  /** PSK identity (`username=`). */
  username?: string;
  /** Runs qemu-img as this user (via `setpriv`). @default root */
  runAs?: string;
  /** @default 20 s */
  timeoutMs?: number;
}

/**
 * Runs `qemu-img info --object tls-creds-<kind>,id=tls0,dir=DIR,endpoint=client[,username=U] --image-opts
 * driver=nbd,host=NAME,port=P,export=disk,tls-creds=tls0` on `clientHost`; ok = exit 0 and `virtual size:`.
 */
export async function qemuImgInfoOnHost(
  clientHost: TestHost,
  opts: QemuImgInfoOnHostOptions,
): Promise<ClientResult> {
  if (net.isIP(opts.serverName)) assertLoopbackIPv4(opts.serverName);
  else assertName("server name", opts.serverName);
  let object = `tls-creds-${opts.kind},id=tls0,dir=${qemuPath(opts.dir)},endpoint=client`;
  if (opts.username !== undefined) {
    if (!/^[A-Za-z0-9._@+-]+$/.test(opts.username)) throw new Error(`bad PSK username ${opts.username}`);
    object += `,username=${opts.username}`;
  }
  const image = `driver=nbd,host=${opts.serverName},port=${opts.port},export=disk,tls-creds=tls0`;
  const r = await clientHost.exec(
    `env ${C_ENV} ${runAsPrefix(opts.runAs)}qemu-img info --object ${object} --image-opts ${image}`,
    { timeoutMs: opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS },
  );
  return { ok: r.code === 0 && !r.timedOut && /^virtual size:/m.test(r.stdout), output: r.stdout + r.stderr };
}

/** The init script {@link installLibvirtdService} writes: start, stop, restart, as a sysvinit host has. */
const LIBVIRTD_INIT = `#!/bin/sh
# libvirtd for a test-bed host without systemd: the host's own /etc/libvirt/libvirtd.conf, --listen.
pidf=/run/libvirtd.pid
export LC_ALL=C
running() { [ -f $pidf ] && kill -0 "$(cat $pidf)" 2>/dev/null; }
case $1 in
start) running || libvirtd --daemon --listen --pid-file $pidf </dev/null >>/var/log/libvirt/start.log 2>&1 ;;
stop)
  if running; then
    p=$(cat $pidf)
    kill "$p"
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f $pidf
  ;;
restart) "$0" stop && "$0" start ;;
*) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
`;

/** libvirtd as a service of a host started with `libvirt: true` (see {@link installLibvirtdService}). */
export interface LibvirtdService {
  /** `/etc/init.d/libvirtd start`; resolves once the daemon answers `virt-admin srv-list` (or rejects). */
  start(): Promise<void>;
  /** `/etc/init.d/libvirtd stop`. */
  stop(): Promise<void>;
  /** The daemon's PID in the host's PID namespace, or undefined when it does not run. */
  pid(): Promise<number | undefined>;
}

/**
 * Writes `/etc/init.d/libvirtd` on a host of a bed started with `libvirt: true`: the script a sysvinit host
 * has, which the install's `reload: "auto"` finds and runs to restart the daemon after its settings changed.
 * The daemon reads the host's `/etc/libvirt/libvirtd.conf` (which must set `listen_addr` and `tls_port`).
 */
export async function installLibvirtdService(host: TestHost): Promise<LibvirtdService> {
  await host.writeFile("/etc/init.d/libvirtd", LIBVIRTD_INIT, { mode: "0755" });
  const pid = async (): Promise<number | undefined> => {
    const r = await host.exec("cat /run/libvirtd.pid 2>/dev/null && kill -0 $(cat /run/libvirtd.pid)");
    return r.code === 0 ? Number(r.stdout.trim()) : undefined;
  };
  return {
    start: async () => {
      const r = await host.exec(
        "/etc/init.d/libvirtd start && i=0 && while ! LC_ALL=C virt-admin -q srv-list >/dev/null 2>&1; do " +
          "[ $i -lt 150 ] || exit 1; i=$((i + 1)); sleep 0.1; done || { cat /var/log/libvirt/start.log; exit 1; }",
        { timeoutMs: 30_000 },
      );
      if (r.code !== 0) {
        throw new Error(`libvirtd on ${host.name} did not start (${r.code}): ${r.stdout}${r.stderr}`);
      }
    },
    stop: async () => {
      await host.exec("/etc/init.d/libvirtd stop", { timeoutMs: 30_000 });
    },
    pid,
  };
}
