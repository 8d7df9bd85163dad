/**
 * Renders an {@link InstallPlan} as the POSIX `sh` scripts a host runs, and the stdin payload they read.
 * Pure: the same plan and options always give the same text, so the scripts are unit-tested and a
 * changed script is a visible diff in `pulumi preview`.
 *
 * The install script (`set -eu`, `umask 077`):
 * 1. resolves the host's QEMU group (`qemu` or `libvirt-qemu`) and users' homes, creates directories;
 * 2. reads every file from stdin into a `mktemp` file *in its target directory* (0600 from the first
 *    byte), each framed by an end line that carries the file's SHA-256 (so it cannot occur in the file),
 *    with a bound on the number of lines;
 * 3. checks every received file's SHA-256, gives it owner and mode, fsyncs it;
 * 4. only then renames each over the old file (same directory: an atomic `rename(2)`), back to back, so a
 *    lost connection or a bad byte before this point leaves the old credentials untouched (the EXIT trap
 *    removes the temporary files);
 * 5. records a claim per file (install name and generation) in the state directory, labels files
 *    `cert_t` when SELinux is enabled, prints a manifest line per file (path, sha256, mode, owner, group)
 *    and runs the reload command if any content changed.
 *
 * Key material only ever travels on stdin: the scripts hold paths, hashes, owners and modes.
 *
 * Hand-written because no library renders shell for this: the format is the small protocol above.
 */
import { InstallPlan, PlannedFile, QEMU_GROUP, sha256Hex } from "./layouts";

/** Options of {@link renderInstallScript} and {@link renderRemoveScript}. */
export interface ScriptOptions {
  /** Install name, used in messages and claims. */
  name: string;
  /** What to call the host in messages, e.g. `compute1 (192.0.2.10)`. */
  hostLabel: string;
  /** Generation of this install (see {@link generationOf}). */
  generation: string;
  /** Local mode: every path is placed under this absolute folder, homes are `<root>/home/<user>`. */
  root?: string;
  /** chown files and directories to their planned owners. */
  setOwners: boolean;
  /** Label files with SELinux `cert_t` (restorecon) when the host has SELinux enabled. */
  selinux: boolean;
  /** Group QEMU runs as; detected on the host (`qemu`, then `libvirt-qemu`) when absent. */
  qemuGroup?: string;
  /** A command run (through `sh -c`) after files changed, e.g. `systemctl reload libvirtd`. */
  reloadCommand?: string;
  /** Where claims are kept. @default "/var/lib/virt-pki" */
  stateDir?: string;
}

/** Default folder of the claims that make delete remove only what this install wrote last. */
export const DEFAULT_STATE_DIR = "/var/lib/virt-pki";
/** Prefix of manifest lines on stdout. */
export const MANIFEST_FILE = "virt-pki-file";
/** Prefix of the summary line on stdout. */
export const MANIFEST_INSTALL = "virt-pki-install";

/** Single-quotes a value for `sh`. */
export function shQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The generation of an install: a digest of its name, its target and every file's path, content hash,
 * owner, group and mode. A claim carries it, so deleting an older generation (Pulumi replaces the
 * command when its triggers change, creating the new one first) keeps files a newer one wrote.
 */
export function generationOf(name: string, target: string, plan: InstallPlan): string {
  const files = plan.files.map((f) => [f.path, f.sha256, f.owner, f.group, f.mode]);
  return sha256Hex(JSON.stringify({ name, target, files })).slice(0, 32);
}

/** The end line that closes `file` in the payload. */
function endMarker(file: PlannedFile): string {
  return `virt-pki-end ${file.sha256}`;
}

/** The stdin of the install script: each file's text followed by its end line. Secret. */
export function renderPayload(plan: InstallPlan): string {
  return plan.files.map((f) => `${f.content}${endMarker(f)}\n`).join("");
}

/** Shell variable names for the users the plan's `~user` paths and primary groups refer to. */
function userVars(plan: InstallPlan): Map<string, number> {
  const users = new Set(plan.users);
  for (const x of [...plan.dirs, ...plan.files]) {
    for (const a of [x.owner, x.group]) if (a.startsWith("@primary:")) users.add(a.slice("@primary:".length));
  }
  return new Map([...users].sort().map((u, i) => [u, i + 1]));
}

/** A shell word for `path`: `"$root"'/etc/pki/x'` or `"$home_1"'/.pki/libvirt/x'`. */
function pathWord(path: string, users: Map<string, number>): string {
  if (path.startsWith("~")) {
    const slash = path.indexOf("/");
    const user = slash < 0 ? path.slice(1) : path.slice(1, slash);
    const rest = slash < 0 ? "" : path.slice(slash);
    return `"$home_${users.get(user)}"${rest ? shQuote(rest) : ""}`;
  }
  return `"$root"${shQuote(path)}`;
}

function accountWord(name: string, users: Map<string, number>): string {
  if (name === QEMU_GROUP) return `"$qemu_group"`;
  if (name.startsWith("@primary:")) return `"$group_${users.get(name.slice("@primary:".length))}"`;
  return shQuote(name);
}

function mode(m: number): string {
  return m.toString(8).padStart(4, "0");
}

function checkRoot(root: string | undefined): void {
  if (root !== undefined && !/^(\/[A-Za-z0-9._@+-]+)+$/.test(root)) {
    throw new Error(`root: ${JSON.stringify(root)} is not an absolute path of letters, digits and ._@+-`);
  }
}

/** Preamble shared by both scripts: strict mode, variables, `fail`, and user/group resolution. */
function preamble(plan: InstallPlan, opts: ScriptOptions, what: string): string[] {
  checkRoot(opts.root);
  const users = userVars(plan);
  const local = opts.root !== undefined;
  const lines = [
    `# pulumi-virt-pki: ${what} of install ${opts.name} (generation ${opts.generation}).`,
    "# Key material arrives on stdin only; this text holds paths, hashes, owners and modes.",
    "set -eu",
    "umask 077",
    "LC_ALL=C",
    "export LC_ALL",
    `root=${shQuote(opts.root ?? "")}`,
    `state="$root"${shQuote(opts.stateDir ?? DEFAULT_STATE_DIR)}`,
    `gen=${shQuote(opts.generation)}`,
    "fail() {",
    `  printf '%s\\n' "virt-pki: ${what} ${opts.name.replace(/["$`\\]/g, "")} on ${opts.hostLabel.replace(/["$`\\]/g, "")}: $*" >&2`,
    "  exit 1",
    "}",
  ];
  const needsQemu = opts.setOwners && plan.usesQemuGroup;
  if (needsQemu && what === "install") {
    if (opts.qemuGroup !== undefined) {
      lines.push(
        `qemu_group=${shQuote(opts.qemuGroup)}`,
        `getent group "$qemu_group" >/dev/null 2>&1 </dev/null || fail "group $qemu_group (qemuGroup) does not exist"`,
      );
    } else {
      lines.push(
        "if getent group qemu >/dev/null 2>&1 </dev/null; then qemu_group=qemu",
        "elif getent group libvirt-qemu >/dev/null 2>&1 </dev/null; then qemu_group=libvirt-qemu",
        `else fail "neither group qemu (Fedora/RHEL) nor libvirt-qemu (Debian/Ubuntu) exists: install QEMU first, or set qemuGroup"`,
        "fi",
      );
    }
  }
  for (const [user, i] of users) {
    if (local) {
      lines.push(`home_${i}="$root"${shQuote(user === "root" ? "/root" : `/home/${user}`)}`);
    } else {
      lines.push(
        `home_${i}=$(getent passwd ${shQuote(user)} </dev/null | cut -d: -f6) || home_${i}=`,
        what === "install"
          ? `[ -n "$home_${i}" ] || fail "user ${user} does not exist"`
          : `[ -n "$home_${i}" ] || home_${i}=/nonexistent`,
      );
    }
    if (opts.setOwners && what === "install") {
      lines.push(
        `group_${i}=$(id -gn ${shQuote(user)} </dev/null) || fail "user ${user} has no primary group"`,
      );
    }
  }
  return lines;
}

/** The install script (see the module comment). Run it with {@link renderPayload} on stdin. */
export function renderInstallScript(plan: InstallPlan, opts: ScriptOptions): string {
  const users = userVars(plan);
  const local = opts.root !== undefined;
  const L = preamble(plan, opts, "install");
  const owns = (word: string, x: { owner: string; group: string; mode: number }): string[] => [
    ...(opts.setOwners
      ? [`chown ${accountWord(x.owner, users)}:${accountWord(x.group, users)} ${word}`]
      : []),
    `chmod ${mode(x.mode)} ${word}`,
  ];

  L.push(
    "tmps=",
    "cleanup() {",
    '  for t in $tmps; do rm -f "$t"; done',
    "}",
    "trap cleanup EXIT",
    "trap 'exit 129' HUP",
    "trap 'exit 130' INT",
    "trap 'exit 143' TERM",
    "for c in sha256sum stat mktemp mv chmod cut; do",
    '  command -v "$c" >/dev/null 2>&1 || fail "$c is missing on this host"',
    "done",
    "# Reads one file from stdin up to its end line, at most $2 lines.",
    "receive() {",
    "  n=0",
    '  while [ "$n" -le "$2" ]; do',
    '    IFS= read -r line || fail "the file data ended early (connection lost?); nothing was replaced"',
    '    [ "$line" = "$1" ] && return 0',
    "    printf '%s\\n' \"$line\"",
    "    n=$((n + 1))",
    "  done",
    '  fail "the file data is longer than expected; nothing was replaced"',
    "}",
    "digest() {",
    '  sha256sum < "$1" | cut -d" " -f1',
    "}",
  );
  if (local) L.push('[ -d "$root" ] || (umask 022 && mkdir -p "$root")');

  L.push("# 1. directories");
  const planned = new Set(plan.dirs.map((d) => d.path));
  for (const d of plan.dirs) {
    const w = pathWord(d.path, users);
    const parent = d.path.slice(0, d.path.lastIndexOf("/"));
    if (!planned.has(parent) && parent !== "") {
      const pw = pathWord(parent, users);
      if (parent.startsWith("~") && !local) {
        L.push(`[ -d ${pw} ] || fail "the home directory ${parent} is missing"`);
      } else {
        L.push(`[ -d ${pw} ] || (umask 022 && mkdir -p ${pw})`);
      }
    }
    L.push(`if [ ! -d ${w} ]; then`, `  mkdir ${w} || fail "cannot create ${d.path}"`);
    if (!d.managed) L.push(...owns(w, d).map((l) => `  ${l}`));
    L.push("fi");
    if (d.managed) L.push(...owns(w, d));
  }

  L.push("# 2. receive every file into a temporary file next to its target (mode 0600 from the start)");
  plan.files.forEach((f, i) => {
    const dir = pathWord(f.path.slice(0, f.path.lastIndexOf("/")), users);
    const lines = f.content.split("\n").length - 1;
    L.push(
      `t${i}=$(mktemp ${dir}/.virt-pki.XXXXXX) || fail "cannot create a temporary file next to ${f.path}"`,
      `tmps="$tmps $t${i}"`,
      `receive ${shQuote(endMarker(f))} ${lines} > "$t${i}"`,
    );
  });

  L.push("# 3. check, give owner and mode, flush to disk");
  L.push("changed=0");
  plan.files.forEach((f, i) => {
    const t = `"$t${i}"`;
    L.push(
      `f${i}=${pathWord(f.path, users)}`,
      `[ "$(digest ${t})" = ${shQuote(f.sha256)} ] || fail "${f.path}: the data received does not match its sha256; nothing was replaced"`,
      `if [ -d "$f${i}" ] && [ ! -L "$f${i}" ]; then fail "${f.path} is a directory"; fi`,
      `same${i}=0`,
      `if [ -f "$f${i}" ] && [ ! -L "$f${i}" ] && [ "$(digest "$f${i}")" = ${shQuote(f.sha256)} ]; then same${i}=1; else changed=1; fi`,
      ...owns(t, f),
      `sync ${t} 2>/dev/null || sync`,
    );
  });

  L.push("# 4. replace: rename(2) within each directory, back to back");
  plan.files.forEach((f, i) => {
    L.push(
      `if [ "$same${i}" = 1 ]; then`,
      ...owns(`"$f${i}"`, f).map((l) => `  ${l}`),
      `  rm -f "$t${i}"`,
      "else",
      `  mv -f "$t${i}" "$f${i}" || fail "cannot replace ${f.path}"`,
      "fi",
    );
  });
  L.push("tmps=");
  for (const dir of new Set(plan.files.map((f) => f.path.slice(0, f.path.lastIndexOf("/"))))) {
    L.push(`sync ${pathWord(dir, users)} 2>/dev/null || true`);
  }

  L.push("# 5. claims: delete of an older generation leaves files this one wrote");
  L.push(
    '[ -d "$state/claims" ] || { (umask 022 && mkdir -p "$state") && (umask 077 && mkdir "$state/claims"); } ||',
    '  fail "cannot create $state/claims"',
  );
  plan.files.forEach((f, i) => {
    const claim = `"$state/claims/${sha256Hex(f.path)}"`;
    L.push(
      `printf '%s %s\\n' "$gen" ${shQuote(f.path)} > "$state/claims/.new.$$" && mv -f "$state/claims/.new.$$" ${claim} || fail "cannot record the claim on ${f.path} (file $f${i})"`,
    );
  });

  if (opts.selinux && !local) {
    const paths = [
      ...plan.dirs.filter((d) => d.managed).map((d) => d.path),
      ...plan.files.map((f) => f.path),
    ];
    const certT = paths.filter((p) => !p.startsWith("/etc/pki/") && !p.startsWith("~"));
    L.push(
      "# 6. SELinux: the policy's labels (cert_t under /etc/pki, home_cert_t under ~/.pki); cert_t elsewhere",
      "if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then",
      `  restorecon -F ${paths.map((p) => pathWord(p, users)).join(" ")} </dev/null || fail "restorecon failed"`,
      ...(certT.length
        ? [
            `  chcon -t cert_t ${certT.map((p) => pathWord(p, users)).join(" ")} </dev/null || fail "chcon failed"`,
          ]
        : []),
      "fi",
    );
  }

  L.push("# 7. manifest");
  L.push(`printf '%s %s %s changed=%s\\n' ${MANIFEST_INSTALL} ${shQuote(opts.name)} "$gen" "$changed"`);
  plan.files.forEach((f, i) => {
    L.push(
      `set -- $(stat -c '%a %U %G' "$f${i}")`,
      `printf '%s %s %s %s %s %s %s\\n' ${MANIFEST_FILE} ${shQuote(f.path)} "$f${i}" "$(digest "$f${i}")" "$1" "$2" "$3"`,
    );
  });

  if (opts.reloadCommand !== undefined && opts.reloadCommand.trim() !== "") {
    L.push(
      "# 8. reload, only when content changed",
      `if [ "$changed" = 1 ]; then`,
      `  sh -c ${shQuote(opts.reloadCommand)} </dev/null >&2 || fail "the reload command failed; the new files are in place"`,
      "  echo virt-pki-reloaded",
      "fi",
    );
  }
  return L.join("\n") + "\n";
}

/**
 * The delete script: removes each file only while its claim still names this generation (a newer
 * install of the same path, or another install, keeps it), and its claim. Directories stay.
 */
export function renderRemoveScript(plan: InstallPlan, opts: ScriptOptions): string {
  const users = userVars(plan);
  const L = preamble(plan, { ...opts, setOwners: false }, "remove");
  plan.files.forEach((f) => {
    const claim = `"$state/claims/${sha256Hex(f.path)}"`;
    L.push(
      `if [ -f ${claim} ] && [ "$(cut -d" " -f1 ${claim})" = "$gen" ]; then`,
      `  rm -f ${pathWord(f.path, users)} ${claim} || fail "cannot remove ${f.path}"`,
      `  echo virt-pki-removed ${shQuote(f.path)}`,
      "else",
      `  echo virt-pki-kept ${shQuote(f.path)}`,
      "fi",
    );
  });
  return L.join("\n") + "\n";
}

/** One manifest line, as the host reported it. */
export interface ManifestEntry {
  /** The planned path (`~user/...` for per-user files). */
  path: string;
  /** The path on the host (home and local root resolved). */
  hostPath: string;
  sha256: string;
  /** Octal, 4 digits. */
  mode: string;
  owner: string;
  group: string;
}

/** Parses the `virt-pki-file` lines of an install script's stdout. */
export function parseManifest(stdout: string): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  for (const line of stdout.split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts[0] !== MANIFEST_FILE || parts.length !== 7) continue;
    const [, path, hostPath, sha256, m, owner, group] = parts;
    entries.push({ path, hostPath, sha256, mode: m.padStart(4, "0"), owner, group });
  }
  return entries;
}

/** What one installed file looks like, as checked against the host's manifest. */
export interface InstalledFile {
  path: string;
  hostPath: string;
  role: string;
  sha256: string;
  mode: string;
  owner: string;
  group: string;
}

/**
 * Checks the host's manifest against the plan: every file present with the content hash and mode
 * sent and (with `setOwners`) the planned owner and group. Throws naming the host and the file.
 */
export function verifyManifest(
  stdout: string,
  plan: InstallPlan,
  opts: { hostLabel: string; setOwners: boolean; qemuGroup?: string },
): InstalledFile[] {
  const entries = new Map(parseManifest(stdout).map((e) => [e.path, e]));
  const problems: string[] = [];
  const installed: InstalledFile[] = [];
  for (const f of plan.files) {
    const e = entries.get(f.path);
    if (e === undefined) {
      problems.push(`${f.path}: missing from the host's manifest`);
      continue;
    }
    if (e.sha256 !== f.sha256) problems.push(`${f.path}: sha256 ${e.sha256} on the host, ${f.sha256} sent`);
    if (e.mode !== mode(f.mode))
      problems.push(`${f.path}: mode ${e.mode} on the host, ${mode(f.mode)} planned`);
    if (opts.setOwners) {
      const ok = (want: string, got: string): boolean =>
        want === QEMU_GROUP
          ? opts.qemuGroup !== undefined
            ? got === opts.qemuGroup
            : got === "qemu" || got === "libvirt-qemu"
          : want.startsWith("@primary:")
            ? got !== ""
            : got === want;
      if (!ok(f.owner, e.owner)) problems.push(`${f.path}: owner ${e.owner} on the host, ${f.owner} planned`);
      if (!ok(f.group, e.group)) problems.push(`${f.path}: group ${e.group} on the host, ${f.group} planned`);
    }
    installed.push({
      path: f.path,
      hostPath: e.hostPath,
      role: f.role,
      sha256: e.sha256,
      mode: e.mode,
      owner: e.owner,
      group: e.group,
    });
  }
  if (problems.length) {
    throw new Error(`install on ${opts.hostLabel} does not match what was sent:\n  ${problems.join("\n  ")}`);
  }
  return installed;
}
