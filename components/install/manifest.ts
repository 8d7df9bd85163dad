/**
 * What a host reports after an install, and the check of that report against the plan. The install script
 * prints, on stdout:
 * ```
 * virt-pki-install <generation> changed=<0|1>
 * virt-pki-home <user> <home directory>        (one per user the plan names; the home may hold spaces)
 * virt-pki-file <planned path> <digest> <mode> <owner> <group>   (digest: as shown, see digests.ts)
 * virt-pki-reloaded                            (when the reload command ran)
 * ```
 * Pure.
 */
import { shownDigests } from "./digests";
import { InstallPlan, QEMU_GROUP, modeString } from "./layouts";

/** Prefix of manifest lines on stdout. */
export const MANIFEST_FILE = "virt-pki-file";
/** Prefix of the summary line on stdout. */
export const MANIFEST_INSTALL = "virt-pki-install";
/** Prefix of the lines that give users' home directories. */
export const MANIFEST_HOME = "virt-pki-home";

/** One manifest line, as the host reported it. */
export interface ManifestEntry {
  /** The planned path (`~user/...` for per-user files). */
  path: string;
  /** The digest the host reports: the sha256, or for a secret file the HMAC shown (see `digests.ts`). */
  sha256: string;
  /** Octal, 4 digits. */
  mode: string;
  /** The owner's name on the host. */
  owner: string;
  /** The group's name on the host. */
  group: string;
}

/** The manifest of an install script's stdout. */
export interface Manifest {
  /** One entry per `virt-pki-file` line. */
  files: ManifestEntry[];
  /** Home directories by user. */
  homes: Record<string, string>;
  /**
   * Whether any file's content changed (from the `virt-pki-install` line), if reported.
   * @default none when the output has no `virt-pki-install` line
   */
  changed?: boolean;
}

function count(values: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

/** Parses the manifest lines of an install script's stdout (other lines are ignored). */
export function parseManifest(stdout: string): Manifest {
  const manifest: Manifest = { files: [], homes: {} };
  for (const line of stdout.split("\n")) {
    const parts = line.split(" ");
    if (parts[0] === MANIFEST_FILE && parts.length === 6) {
      const [, path, sha256, m, owner, group] = parts;
      manifest.files.push({ path, sha256, mode: m.padStart(4, "0"), owner, group });
    } else if (parts[0] === MANIFEST_HOME && parts.length >= 3 && !(parts[1] in manifest.homes)) {
      manifest.homes[parts[1]] = parts.slice(2).join(" ");
    } else if (parts[0] === MANIFEST_INSTALL && parts.length === 3) {
      manifest.changed = parts[2] === "changed=1";
    }
  }
  return manifest;
}

/** The path of a planned file on the host: `~user/x` under that user's home, others under the local root. */
export function hostPathOf(path: string, homes: Record<string, string>, root = ""): string {
  if (!path.startsWith("~")) return root + path;
  const slash = path.indexOf("/");
  const user = path.slice(1, slash);
  return `${homes[user] ?? `~${user}`}${path.slice(slash)}`;
}

/** What one installed file looks like, as checked against the host's manifest. */
export interface InstalledFile {
  /** The planned path (`~user/...` for per-user files). */
  path: string;
  /** The path on the host (home and local root resolved). */
  hostPath: string;
  /** What it holds, e.g. `server-key`. */
  role: string;
  /**
   * The sha256 of its content, or for a secret file an HMAC-SHA256 under the install's digest key (a
   * plain hash of a short secret could be reversed by trying guesses; see `digests.ts`).
   */
  sha256: string;
  /** Octal, 4 digits. */
  mode: string;
  /** Its owner on the host (in a preview: the planned owner). */
  owner: string;
  /** Its group on the host (in a preview: the planned group, which may be a token such as `@qemu`). */
  group: string;
}

/**
 * Checks the host's manifest against the plan: every file present with the digest (as shown, see
 * `digests.ts`; the host reports it after checking the plain sha256 it received) and mode sent and (with
 * `setOwners`) the planned owner and group. Throws naming the host and the file.
 */
export function verifyManifest(
  stdout: string,
  plan: InstallPlan,
  opts: { hostLabel: string; setOwners: boolean; qemuGroup?: string; root?: string; digestKey?: string },
): InstalledFile[] {
  const manifest = parseManifest(stdout);
  const shown = shownDigests(plan, opts.digestKey);
  const entries = new Map(manifest.files.map((e) => [e.path, e]));
  const problems: string[] = [];
  for (const [path, n] of count(manifest.files.map((e) => e.path))) {
    if (n > 1) problems.push(`${path}: reported ${n} times`);
  }
  const installed: InstalledFile[] = [];
  for (const [i, f] of plan.files.entries()) {
    const e = entries.get(f.path);
    if (e === undefined) {
      problems.push(`${f.path}: missing from the host's manifest`);
      continue;
    }
    if (e.sha256 !== shown[i]) problems.push(`${f.path}: sha256 ${e.sha256} on the host, ${shown[i]} sent`);
    if (e.mode !== modeString(f.mode))
      problems.push(`${f.path}: mode ${e.mode} on the host, ${modeString(f.mode)} planned`);
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
      hostPath: hostPathOf(f.path, manifest.homes, opts.root),
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
