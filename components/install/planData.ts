/**
 * The install plan as data: the text the fixed host scripts ({@link INSTALL_SCRIPT}, {@link REMOVE_SCRIPT})
 * read from stdin with `read`, followed by the files' contents. Everything that differs between hosts
 * and plans is here, never in the scripts, so no value of a program ever reaches the shell as code.
 *
 * Format 1, one record a line, fields separated by one space:
 * ```
 * virt-pki-plan 1 <bytes of the records that follow, up to and including "end\n">
 * label <free text for messages>
 * gen <generation, 32 hex>
 * opts <setOwners 0|1> <selinux 0|1>
 * root <local root>                      (local installs only)
 * state <state directory>
 * qemu <group, or - to detect>           (when owners are set and a path has the QEMU group)
 * reload <word>                          (one per word of the reload command)
 * part root 0 <bytes>                    (what root writes: every directory root writes in, with all
 * d <path> <owner> <group> <mode> <managed 0|1>      its ancestors and the state directory, a user's top
 * f <path> <owner> <group> <mode> <lines> <sha256> <claim> <shown>   directory, and root's files; claim:
 *                                  the sha256 of the path, its claim file's name; shown: the digest the
 *                                  host's manifest reports, an HMAC for a secret file, see digests.ts)
 * part <user> <switch 0|1> <bytes>       (what a user writes, as that user when switch is 1; bytes: of
 *                                         the part's files, which follow root's on stdin)
 * d ... / f ...
 * end
 * ```
 * then each file's content, in the order of the `f` records. `label` and `reload` hold any text without
 * control characters; every other field is made of `A-Za-z0-9._@+/~:-`, which the scripts check again.
 * Pure.
 */
import { checkLayoutCredentials } from "./acceptance";
import { PkiError } from "../../provider/pki/errors";
import { DaemonConfig, DaemonPlan, checkDaemonConfig, daemonRecords, planDaemon } from "./daemonConfig";
import { shownDigests } from "./digests";
import { AllowedDn } from "./snippets";
import { INSTALL_SCRIPT, REMOVE_SCRIPT } from "./hostScripts";
import {
  InstallPlan,
  Layout,
  Ownership,
  PathOverride,
  PlannedDir,
  PlannedFile,
  checkAccount,
  checkPath,
  modeString,
  planInstall,
  rootDir,
  sha256Hex,
} from "./layouts";
import { quoteInput } from "../../provider/pki/quote";

/** Options of {@link renderStdin}: what else the host scripts need besides the plan. */
export interface PlanDataOptions {
  /** Install name, for messages. */
  name: string;
  /** What to call the host in messages, e.g. `compute1 (192.0.2.10)`. */
  hostLabel: string;
  /** Generation of this install (see {@link generationOf}). */
  generation: string;
  /**
   * Local mode: every path is placed under this absolute folder, homes are `<root>/home/<user>`.
   * @default none: paths are the host's own (an install over SSH)
   */
  root?: string;
  /** chown files and directories to their planned owners. */
  setOwners: boolean;
  /** Label files with SELinux `cert_t` (restorecon) when the host has SELinux enabled. */
  selinux: boolean;
  /**
   * Group QEMU runs as; detected on the host (`qemu`, then `libvirt-qemu`) when absent.
   * @default detected on the host (only asked when owners are set and a path has the QEMU group)
   */
  qemuGroup?: string;
  /** The command run after files changed, as words (see {@link reloadArgv}). @default none */
  reload?: readonly string[];
  /** Where claims are kept. @default "/var/lib/virt-pki" */
  stateDir?: string;
  /** Keys the digests shown of secret files (see `digests.ts`). @default derived from the install's keys */
  digestKey?: string;
  /** The daemon configuration and reload records (see `daemonConfig.ts`). @default none */
  daemon?: DaemonPlan;
}

/** Default folder of the claims that make delete remove only what this install wrote last. */
export const DEFAULT_STATE_DIR = "/var/lib/virt-pki";

/**
 * The generation of an install: a digest of its name, its target and every file's path, shown digest
 * (an HMAC for a secret file, see `digests.ts`: the generation is shown too), owner, group and mode. A
 * claim carries it, so deleting an older generation (Pulumi replaces the command when its triggers
 * change, creating the new one first) keeps files a newer one wrote.
 */
export function generationOf(name: string, target: string, plan: InstallPlan, digestKey?: string): string {
  const shown = shownDigests(plan, digestKey);
  const files = plan.files.map((f, i) => [f.path, shown[i], f.owner, f.group, f.mode]);
  return sha256Hex(JSON.stringify({ name, target, files, triggers: TRIGGERS_FORMAT })).slice(0, 32);
}

/**
 * The version of what {@link triggersOf} shows. A replacement must always bring a new generation (the old
 * command's delete removes what its generation still claims, after the new one installed): the generation
 * covers every value the triggers show, and this version, so that a release that changes the triggers'
 * format (and so replaces every install once) changes every generation too. 2: the target was added.
 */
const TRIGGERS_FORMAT = 2;

const FIELD = /^[A-Za-z0-9._@+/~:-]+$/;
const CONTROL = /[\x00-\x1f\x7f]/; // eslint-disable-line no-control-regex

/** One structured field: checked here as the last line of defence (the scripts check it once more). */
function field(value: string): string {
  if (!FIELD.test(value)) throw new Error(`internal: ${JSON.stringify(value)} cannot be a plan field`);
  return value;
}

/**
 * A reload command as words. An array is taken as it is (each word passed as one argument, never through
 * a shell). A string is split at spaces when it holds only plain words; anything a shell would interpret
 * (quotes, `$`, `;`, `|`, `&`, redirections, globs, ...) is refused with the fix, since the host runs the
 * words without a shell: write `["sh", "-c", "..."]` to ask for one.
 */
export function reloadArgv(value: string | readonly string[], property = "reloadCommand"): string[] {
  if (typeof value === "string") {
    const words = value
      .trim()
      .split(/ +/)
      .filter((w) => w !== "");
    const bad = words.find((w) => !/^[A-Za-z0-9_./:=@%+,-]+$/.test(w));
    if (words.length === 0 || bad !== undefined) {
      throw new PkiError(
        property,
        `${quoteInput(value)} is not a plain command (${words.length ? `${quoteInput(bad)} has characters a shell would interpret` : "it is empty"}); ` +
          `give its words, e.g. ["systemctl", "reload", "libvirtd"], or ["sh", "-c", "..."] to run a shell on the host`,
      );
    }
    return words;
  }
  if (!Array.isArray(value) || value.length === 0 || value.some((w) => typeof w !== "string")) {
    throw new PkiError(property, 'give the command as words, e.g. ["systemctl", "reload", "libvirtd"]');
  }
  value.forEach((w, i) => {
    if (w === "" || CONTROL.test(w)) {
      throw new PkiError(`${property}[${i}]`, "is empty or holds a control character (newline, tab, ...)");
    }
  });
  return [...value];
}

/** One part of the plan data: what one writer (root, or a user's own process) puts. */
interface Part {
  writer: string;
  dirs: PlannedDir[];
  files: PlannedFile[];
}

/** The parts of a plan: root's (always first), then one per user whose own process writes its paths. */
function partsOf(plan: InstallPlan, stateDir: string): Part[] {
  const key = (f: PlannedFile) => `${f.owner}\0${f.group}\0${modeString(f.mode)}`;
  const sorted = (files: PlannedFile[]) =>
    files
      .map((f, i) => ({ f, i }))
      .sort((a, b) => (key(a.f) < key(b.f) ? -1 : key(a.f) > key(b.f) ? 1 : a.i - b.i))
      .map(({ f }) => f);
  const rootDirs = withAncestors(plan, stateDir);
  const parts = [
    { writer: "root", dirs: rootDirs, files: sorted(plan.files.filter((f) => f.context === "root")) },
  ];
  for (const user of plan.writers) {
    // A user file belongs to the owner of its directory (planInstall refuses anything else).
    parts.push({
      writer: user,
      dirs: plan.dirs.filter((d) => d.context === "user" && d.owner === user),
      files: sorted(plan.files.filter((f) => f.context === "user" && f.owner === user)),
    });
  }
  return parts;
}

/**
 * The directories root writes in, parents first: the plan's (all but the users' own), every ancestor of
 * them and the state directory with its `claims` (unmanaged root:root 0755 when not planned; `claims` 0700),
 * which the host checks before root writes anything and creates when missing.
 */
function withAncestors(plan: InstallPlan, stateDir: string): PlannedDir[] {
  const byPath = new Map(plan.dirs.filter((d) => d.context !== "user").map((d) => [d.path, d]));
  const claims = `${stateDir}/claims`;
  for (const path of [...byPath.keys(), claims]) {
    if (path.startsWith("~")) continue; // the home itself is checked on the host
    const parts = path.split("/");
    for (let i = 2; i <= parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      if (!byPath.has(p)) byPath.set(p, p === claims ? rootDir(p, 0o700, true) : rootDir(p, 0o755, false));
    }
  }
  return [...byPath.values()].sort(
    (a, b) => a.path.split("/").length - b.path.split("/").length || a.path.localeCompare(b.path),
  );
}

/** The plan records (up to and including `end`), without the files' contents. Not secret. */
export function renderPlan(plan: InstallPlan, opts: PlanDataOptions): string {
  return planRecords(plan, opts, partsOf(plan, opts.stateDir ?? DEFAULT_STATE_DIR));
}

/** {@link renderPlan} with the parts already made. */
function planRecords(plan: InstallPlan, opts: PlanDataOptions, parts: Part[]): string {
  const label = `${opts.name} on ${opts.hostLabel}`.replace(/[\x00-\x1f\x7f]/g, "?"); // eslint-disable-line no-control-regex
  const lines = [
    `label install ${label}`,
    `gen ${field(opts.generation)}`,
    `opts ${opts.setOwners ? 1 : 0} ${opts.selinux ? 1 : 0}`,
  ];
  if (opts.root !== undefined) lines.push(`root ${field(opts.root)}`);
  const stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
  lines.push(`state ${field(stateDir)}`);
  if (opts.setOwners && plan.usesQemuGroup) lines.push(`qemu ${field(opts.qemuGroup ?? "-")}`);
  for (const word of opts.reload ?? []) {
    if (CONTROL.test(word)) throw new Error("internal: a reload word holds a control character");
    lines.push(`reload ${word}`);
  }
  if (opts.daemon !== undefined) {
    for (const w of opts.daemon.restart ?? []) {
      if (CONTROL.test(w)) throw new Error("internal: a restart word holds a control character");
    }
    lines.push(...daemonRecords(opts.daemon, field));
  }
  // A user's own process writes the user's paths, except in a staging tree without owners (local mode).
  const switching = opts.root === undefined || opts.setOwners;
  const shown = new Map(shownDigests(plan, opts.digestKey).map((d, i) => [plan.files[i], d]));
  for (const part of parts) {
    const bytes = part.files.reduce((n, f) => n + Buffer.byteLength(f.content, "utf8"), 0);
    lines.push(`part ${field(part.writer)} ${part.writer !== "root" && switching ? 1 : 0} ${bytes}`);
    for (const d of part.dirs) {
      lines.push(
        `d ${[d.path, d.owner, d.group, modeString(d.mode), d.managed ? "1" : "0"].map(field).join(" ")}`,
      );
    }
    for (const f of part.files) {
      const count = String(f.content.split("\n").length - 1);
      const fields = [
        f.path,
        f.owner,
        f.group,
        modeString(f.mode),
        count,
        f.sha256,
        sha256Hex(f.path),
        shown.get(f)!,
      ];
      lines.push(`f ${fields.map(field).join(" ")}`);
    }
  }
  lines.push("end");
  const records = lines.join("\n") + "\n";
  return `virt-pki-plan 1 ${Buffer.byteLength(records, "utf8")}\n${records}`;
}

/** The whole stdin of the host scripts: the plan records, then every file's content. Secret. */
export function renderStdin(plan: InstallPlan, opts: PlanDataOptions): string {
  // The files in the order the scripts read them: root's part, then each user's.
  const parts = partsOf(plan, opts.stateDir ?? DEFAULT_STATE_DIR);
  const contents = parts.flatMap((p) => p.files.map((f) => f.content)).join("");
  return planRecords(plan, opts, parts) + contents;
}

/**
 * What `pulumi preview` shows of an install, and what replaces its command when it changes: its target
 * (`target user@host:port` or `target local:<root>`), then one line per file, `path digest-prefix owner:group
 * mode`, the digest being the sha256, or for a secret file an HMAC under the install's digest key
 * (`digests.ts`). The target is there because `@pulumi/command` 1.2.1 updates a command in place when only
 * its `connection` changes (only `triggers` is replace-on-change: provider/pkg/provider/common/inputs.go): as
 * a trigger, a new host, port or user (or local root) replaces the command, and the old command's delete
 * removes the files from the OLD target with the connection stored with it.
 */
export function triggersOf(plan: InstallPlan, target: string, digestKey?: string): string[] {
  const shown = shownDigests(plan, digestKey);
  return [
    `target ${target}`,
    ...plan.files.map(
      (f, i) => `${f.path} ${shown[i].slice(0, 12)} ${f.owner}:${f.group} ${modeString(f.mode)}`,
    ),
  ];
}

/** Everything of one install, resolved (see `HostCredentialInstallArgs` for the fields). */
export interface InstallCommandArgs extends Omit<PlanDataOptions, "generation" | "reload" | "daemon"> {
  /** `user@host:port` or `local:<root>`: part of the generation. */
  target: string;
  /** The layouts to place. */
  layouts: readonly Layout[];
  /** The ownership convention of the layouts. @default "default" */
  ownership?: Ownership;
  /** Owner, group and/or mode by absolute path, over what the layouts say. @default none */
  overrides?: Record<string, PathOverride>;
  /** Run after any file's content changed, as words (see {@link reloadArgv}). @default none */
  reloadCommand?: string | readonly string[];
  /** Leave the files on the host when the install is deleted: the command gets no `delete`. @default false */
  keepOnDelete?: boolean;
  /**
   * Names and addresses clients use to reach this host, checked against its server certificates.
   * @default none checked
   */
  serverNames?: readonly string[];
  /** Ask `checkTlsCredentials` about the layouts (see `acceptance.ts`). @default true */
  checkCredentials?: boolean;
  /** The daemon settings to manage (see `daemonConfig.ts`). @default none */
  daemonConfig?: boolean | DaemonConfig;
  /**
   * The client DNs of `tls_allowed_dn_list` in the daemon's settings.
   * @default none: no `tls_allowed_dn_list` line (libvirt then admits every certificate of the trusted CAs)
   */
  tlsAllowedDnList?: readonly AllowedDn[];
  /** `"auto"`: reload what each change needs, and prove what is served (see `daemonConfig.ts`). @default "none" */
  reload?: "auto" | "none";
  /**
   * The command that restarts the TLS daemon, used instead of the service manager when given.
   * @default the service manager
   */
  restartCommand?: string | readonly string[];
  /** Where the daemon's TLS listener is checked with `reload: "auto"`. @default none */
  probe?: {
    /** The address the host connects to. */
    address: string;
    /** The TCP port. */
    port: number;
  };
}

/** What an install hands to `@pulumi/command`: the fixed scripts, and this install's data. */
export interface InstallCommand {
  /** The plan, with the daemon's setting blocks as files. */
  plan: InstallPlan;
  /** The install's generation (see {@link generationOf}). */
  generation: string;
  /** Always {@link INSTALL_SCRIPT}. */
  create: string;
  /** {@link REMOVE_SCRIPT}, or none with `keepOnDelete`. @default none with `keepOnDelete` */
  delete?: string;
  /** The plan and the files' contents (secret). */
  stdin: string;
  /** What a preview shows and what replaces the command when it changes (see {@link triggersOf}). */
  triggers: string[];
  /** Each file's shown digest, in the order of `plan.files` (see `digests.ts`). */
  digests: string[];
  /** What libvirt or QEMU would log about these credentials (see `acceptance.ts`). */
  warnings: string[];
  /**
   * The certificate the daemon must serve (with a probe), for the check of the host's report.
   * @default none without a probe
   */
  servedCertPem?: string;
}

/** An absolute folder on the machine running Pulumi or on the host: no `~`, `.` or `..`. */
function checkFolder(property: string, value: unknown): void {
  if (typeof value !== "string" || value.startsWith("~")) {
    throw new PkiError(
      property,
      `${quoteInput(value)} is not an absolute folder path, e.g. "/var/lib/virt-pki"`,
    );
  }
  checkPath(property, value);
}

/**
 * Checks the options of an install that are not layouts (`root`, `stateDir`, `qemuGroup`, `reloadCommand`,
 * `reload`, `restartCommand`): at preview on the component, and again on the resolved values.
 */
export function checkInstallOptions(a: {
  root?: unknown;
  stateDir?: unknown;
  qemuGroup?: unknown;
  reloadCommand?: unknown;
  reload?: unknown;
  restartCommand?: unknown;
}): void {
  if (a.root !== undefined) checkFolder("root", a.root);
  if (a.stateDir !== undefined) checkFolder("stateDir", a.stateDir);
  if (a.qemuGroup !== undefined) {
    checkAccount("qemuGroup", a.qemuGroup as string);
    if ((a.qemuGroup as string).startsWith("@"))
      throw new PkiError("qemuGroup", 'give the group\'s name, e.g. "qemu"');
  }
  if (typeof a.reloadCommand === "string" || Array.isArray(a.reloadCommand)) reloadArgv(a.reloadCommand);
  if (typeof a.restartCommand === "string" || Array.isArray(a.restartCommand)) {
    reloadArgv(a.restartCommand, "restartCommand");
  }
  if (a.reload !== undefined && a.reload !== "auto" && a.reload !== "none") {
    throw new PkiError("reload", `${quoteInput(a.reload)} is not "auto" or "none"`);
  }
  if (a.reload === "auto" && a.reloadCommand !== undefined) {
    throw new PkiError("reloadCommand", 'give reloadCommand or reload: "auto", not both');
  }
  // A local install's reloadCommand would run on the machine running Pulumi, whose daemons are not the
  // ones of the host the staged folder is for (root "/" is refused above: a local install is always a folder).
  if (a.reloadCommand !== undefined && a.reloadCommand !== null && a.root !== undefined) {
    throw new PkiError(
      "reloadCommand",
      `would run on the machine running Pulumi, while the files go to the folder ${quoteInput(a.root)} there, not ` +
        "to a host: remove it and reload the host when the folder is deployed, or install over SSH (connection)",
    );
  }
  if (a.reload === "auto" && a.root !== undefined) {
    throw new PkiError(
      "reload",
      '"auto" reloads a running daemon on a host; a local install has none (give "none")',
    );
  }
}

/** The claims decide what a delete removes: the state directory must lie where only root can change it. */
export function checkStateDir(plan: InstallPlan, stateDir: string): void {
  const mine = plan.dirs.find(
    (d) => d.context !== "root" && (stateDir === d.path || stateDir.startsWith(`${d.path}/`)),
  );
  if (mine !== undefined) {
    throw new PkiError(
      "stateDir",
      `${stateDir} lies in ${mine.path}, which ${mine.owner} can change; keep the claims where only root can ` +
        `change them (the default ${DEFAULT_STATE_DIR})`,
    );
  }
}

/** The command of one install, from resolved values. Throws {@link PkiError} naming the property. */
export function installCommand(a: InstallCommandArgs): InstallCommand {
  checkInstallOptions(a);
  const stateDir = a.stateDir ?? DEFAULT_STATE_DIR;
  const files = planInstall(a.layouts, { ownership: a.ownership, overrides: a.overrides });
  checkStateDir(files, stateDir);
  const { plan, daemon } = planDaemon(files, a.layouts, {
    config: checkDaemonConfig(a.daemonConfig),
    tlsAllowedDnList: a.tlsAllowedDnList,
    reload: a.reload ?? "none",
    restart: a.restartCommand === undefined ? undefined : reloadArgv(a.restartCommand, "restartCommand"),
    probe: a.probe,
    stateDir,
    local: a.root !== undefined,
  });
  // What the consumers would refuse is refused here, before anything reaches the host.
  const acceptance =
    a.checkCredentials === false
      ? { errors: [], warnings: [] }
      : checkLayoutCredentials(a.layouts, {
          ownership: a.ownership,
          overrides: a.overrides,
          serverNames: a.serverNames,
        });
  if (acceptance.errors.length) throw acceptance.errors[0];
  const generation = generationOf(a.name, a.target, plan, a.digestKey);
  const reload = a.reloadCommand === undefined ? undefined : reloadArgv(a.reloadCommand);
  return {
    plan,
    generation,
    create: INSTALL_SCRIPT,
    delete: a.keepOnDelete ? undefined : REMOVE_SCRIPT,
    stdin: renderStdin(plan, { ...a, generation, reload, daemon }),
    triggers: triggersOf(plan, a.target, a.digestKey),
    digests: shownDigests(plan, a.digestKey),
    warnings: acceptance.warnings,
    servedCertPem:
      daemon?.probe === undefined
        ? undefined
        : plan.files.find((f) => f.path === daemon.probe!.certPath)?.content,
  };
}

/**
 * The stdin with a `repair <token>` record after the plan's first line (and the plan's size updated): the
 * install re-runs when the token changes, which a host's drift does (see `provider/handlers/hostProbe.ts`).
 * The scripts ignore the record; the generation does not cover it.
 */
export function withRepairToken(stdin: string, token: string): string {
  if (token === "0") return stdin; // no drift found yet: the stdin of a release without probes
  const nl = stdin.indexOf("\n");
  const head = /^virt-pki-plan 1 (\d+)$/.exec(stdin.slice(0, nl));
  if (head === null) throw new Error("internal: the stdin does not start with a plan");
  const record = `repair ${field(token)}\n`;
  return `virt-pki-plan 1 ${Number(head[1]) + record.length}\n${record}${stdin.slice(nl + 1)}`;
}
