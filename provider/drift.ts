/**
 * Drift of a host's installed files: what a host holds now against what the last install put there,
 * read over SSH at preview time (`@pulumi/command` has no read). No Pulumi import.
 *
 * The probe sends the host only paths (on stdin, to a fixed read-only script) and gets back, per file, its
 * kind, mode, owner, group and sha256; it never sends key material, and the expected digests stay here.
 * SSH is `ssh2` (a maintained, pure-JavaScript SSH client, the one Node tooling uses), with the host key
 * checked as `@pulumi/command` checks it: a pinned `hostKey` is the only key accepted, and only its type is
 * offered (pulumi-command provider/pkg/provider/remote/connection.go `SSHConfig`: `ssh.FixedHostKey`,
 * `HostKeyAlgorithms = []string{publicKey.Type()}`).
 */
import { Client, ConnectConfig } from "ssh2";

/** How to reach a host: the subset of `@pulumi/command`'s remote `ConnectionArgs` the probe uses. */
export interface ProbeConnection {
  host: string;
  /** @default 22 */
  port?: number;
  /** @default "root" */
  user?: string;
  privateKey?: string;
  privateKeyPassword?: string;
  password?: string;
  /** An OpenSSH public key line, `ssh-ed25519 AAAA...`; absent: any host key is accepted. */
  hostKey?: string;
  /** @default the environment's `SSH_AUTH_SOCK`, as `@pulumi/command` */
  agentSocketPath?: string;
  /** A bastion to go through (`@pulumi/command`'s `proxy`), itself checked by its own `hostKey`. */
  proxy?: ProbeConnection;
}

/** An owner or group the probe does not compare (the install does not set owners, `setOwners: false`). */
export const ANY_ACCOUNT = "@any";

/** One file as the last install left it. */
export interface ExpectedFile {
  /** Absolute, or `~user/...`. */
  path: string;
  /** Hex sha256 of the content (secret for a secret file: it never leaves this process). */
  sha256: string;
  /** Octal, 4 digits. */
  mode: string;
  owner: string;
  /** A group name, `@qemu` (qemu or libvirt-qemu), `@primary:<user>` or {@link ANY_ACCOUNT} (not compared). */
  group: string;
}

/** What the host reported for one path. */
export interface ObservedFile {
  path: string;
  kind: "file" | "missing" | "link" | "other";
  mode?: string;
  owner?: string;
  group?: string;
  sha256?: string;
}

/**
 * The fixed read-only script: one planned path a line on stdin (`~user/...` resolved with getent), one
 * answer a line on stdout: `F mode owner group sha256 path`, `M path` (missing), `L path` (a symbolic
 * link), `O path` (not a regular file). Paths are data, never code.
 */
export const PROBE_SCRIPT = [
  "set -euf",
  "export LC_ALL=C",
  "while IFS= read -r p; do",
  '  case $p in "~"*/*) u=${p%%/*} u=${u#"~"} h=$(getent passwd -- "$u" </dev/null | cut -d: -f6) || h=""; [ -n "$h" ] && f=$h/${p#*/} || { echo "M $p"; continue; } ;; *) f=$p ;; esac',
  '  if [ -L "$f" ]; then echo "L $p"',
  '  elif [ ! -e "$f" ]; then echo "M $p"',
  '  elif [ ! -f "$f" ]; then echo "O $p"',
  '  else s=$(sha256sum -- "$f" </dev/null) && printf "F %s %s %s\\n" "$(stat -c "%a %U %G" -- "$f" </dev/null)" "${s%% *}" "$p"',
  "  fi",
  "done",
].join("\n");

/** Parses the probe script's output. */
export function parseProbe(stdout: string): ObservedFile[] {
  const out: ObservedFile[] = [];
  for (const line of stdout.split("\n")) {
    const m = /^F (\d+) (\S+) (\S+) ([0-9a-f]{64}) (.+)$/.exec(line);
    if (m) {
      out.push({
        path: m[5],
        kind: "file",
        mode: m[1].padStart(4, "0"),
        owner: m[2],
        group: m[3],
        sha256: m[4],
      });
      continue;
    }
    const k = /^([MLO]) (.+)$/.exec(line);
    if (k) out.push({ path: k[2], kind: k[1] === "M" ? "missing" : k[1] === "L" ? "link" : "other" });
  }
  return out;
}

/**
 * The drift of each file, as reasons a preview shows (`<path>: <what differs>`), in the order of
 * `expected`. Pure. Digests are never printed: a secret file's plain sha256 must not reach the state.
 */
export function driftOf(expected: readonly ExpectedFile[], observed: readonly ObservedFile[]): string[] {
  const byPath = new Map(observed.map((o) => [o.path, o]));
  const reasons: string[] = [];
  for (const e of expected) {
    const o = byPath.get(e.path);
    if (o === undefined) {
      reasons.push(`${e.path}: not reported by the host`);
      continue;
    }
    if (o.kind === "missing") {
      reasons.push(`${e.path}: missing`);
      continue;
    }
    if (o.kind === "link") {
      reasons.push(`${e.path}: a symbolic link now`);
      continue;
    }
    if (o.kind === "other") {
      reasons.push(`${e.path}: not a regular file now`);
      continue;
    }
    const what: string[] = [];
    if (o.sha256 !== e.sha256) what.push("content differs (sha256)");
    if (o.mode !== e.mode) what.push(`mode ${o.mode}, installed ${e.mode}`);
    const groupOk =
      e.group.startsWith("@primary:") ||
      e.group === ANY_ACCOUNT ||
      (e.group === "@qemu" ? o.group === "qemu" || o.group === "libvirt-qemu" : o.group === e.group);
    const ownerOk = e.owner.startsWith("@") || o.owner === e.owner;
    if (!ownerOk || !groupOk) what.push(`owner ${o.owner}:${o.group}, installed ${e.owner}:${e.group}`);
    if (what.length) reasons.push(`${e.path}: ${what.join(", ")}`);
  }
  return reasons;
}

/** ssh2's settings for one hop: credentials, and the host key checked as `@pulumi/command` checks it. */
function hopConfig(conn: ProbeConnection, timeoutMs: number): ConnectConfig {
  const config: ConnectConfig = {
    host: conn.host,
    port: conn.port ?? 22,
    username: conn.user ?? "root",
    privateKey: conn.privateKey,
    passphrase: conn.privateKeyPassword,
    password: conn.password,
    agent: conn.agentSocketPath ?? process.env.SSH_AUTH_SOCK,
    readyTimeout: timeoutMs,
  };
  const pinned = conn.hostKey?.trim();
  if (pinned) {
    const [type, blob] = pinned.split(/\s+/);
    const want = Buffer.from(blob ?? "", "base64");
    // Only the pinned key's type is offered; an RSA key may sign with SHA-2 (OpenSSH 8.8 refuses SHA-1).
    const algorithms = type === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [type];
    config.algorithms = { serverHostKey: algorithms as never };
    config.hostVerifier = (key: Buffer) => key.equals(want);
  }
  return config;
}

/** An ssh2 error as a reason: a host key that is not the pinned one says so. */
function reason(err: Error): Error {
  return /verification failed/.test(err.message)
    ? new Error(`the host's key is not connection.hostKey (${err.message})`)
    : err;
}

/**
 * Runs `command` over SSH with `stdin` (through `conn.proxy` when given, as a forwarded TCP channel),
 * bounded by `timeoutMs`; resolves stdout, rejects on any failure.
 */
export function sshRun(
  conn: ProbeConnection,
  command: string,
  stdin: string,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const clients: Client[] = [];
    let done = false;
    const finish = (err: Error | undefined, out?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const c of clients) c.end();
      if (err) reject(err);
      else resolve(out ?? "");
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    const run = (client: Client): void => {
      client.exec(command, (err, stream) => {
        if (err) return finish(err);
        let out = "";
        let errOut = "";
        stream.on("data", (d: Buffer) => {
          out += d.toString("utf8");
        });
        stream.stderr.on("data", (d: Buffer) => {
          errOut += d.toString("utf8");
        });
        stream.on("close", (code: number | null) => {
          if (code === 0) finish(undefined, out);
          else finish(new Error(`the probe exited ${code}: ${errOut.trim().slice(0, 200)}`));
        });
        stream.end(stdin);
      });
    };
    const target = new Client();
    clients.push(target);
    target.on("ready", () => run(target)).on("error", (err) => finish(reason(err)));
    if (conn.proxy === undefined) {
      target.connect(hopConfig(conn, timeoutMs));
      return;
    }
    const bastion = new Client();
    clients.push(bastion);
    bastion
      .on("ready", () => {
        bastion.forwardOut("127.0.0.1", 0, conn.host, conn.port ?? 22, (err, sock) => {
          if (err) return finish(new Error(`through the proxy: ${err.message}`));
          const { host: _h, port: _p, ...rest } = hopConfig(conn, timeoutMs);
          void _h;
          void _p;
          target.connect({ ...rest, sock });
        });
      })
      .on("error", (err) => finish(new Error(`the proxy: ${reason(err).message}`)))
      .connect(hopConfig(conn.proxy, timeoutMs));
  });
}

/**
 * The drift of a host's files: reasons as {@link driftOf} gives them, or one reason
 * `host unreachable: <why>` when the host cannot be probed (a preview reports it; it does not fail).
 */
export async function probeDrift(
  conn: ProbeConnection,
  expected: readonly ExpectedFile[],
  timeoutMs = 15_000,
): Promise<string[]> {
  if (expected.length === 0) return [];
  let stdout: string;
  try {
    stdout = await sshRun(conn, PROBE_SCRIPT, expected.map((e) => e.path).join("\n") + "\n", timeoutMs);
  } catch (err) {
    const why = (err as Error).message.replace(/\s+/g, " ").slice(0, 200);
    return [`host unreachable: ${why}`];
  }
  return driftOf(expected, parseProbe(stdout));
}
