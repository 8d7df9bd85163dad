/**
 * The host side beyond the files: the TLS settings of libvirt's daemon (`libvirtd.conf`, or
 * `virtproxyd.conf` with the modular daemons) and of `qemu.conf`, kept in one marked block per file, and
 * how the host reloads after a change (`reload: "auto"`) and proves what it serves. Pure: it adds the
 * blocks to the plan as files under the state directory, and says what the plan records (`planData.ts`)
 * carry; the host scripts set each block in its file (`sh/prologue.sh`, `confmerge`).
 */
import { X509Certificate } from "crypto";
import { PkiError } from "../../provider/pki/errors";
import { quoteInput } from "../../provider/pki/quote";
import {
  InstallPlan,
  Layout,
  PlannedDir,
  PlannedFile,
  QemuLayout,
  qemuDir,
  rootDir,
  sha256Hex,
} from "./layouts";
import { AllowedDn, libvirtdConfSnippet, qemuConfSnippet } from "./snippets";

/** libvirt's daemon that serves TLS: the monolithic `libvirtd`, or `virtproxyd` of the modular daemons. */
export type LibvirtDaemon = "libvirtd" | "virtproxyd";

/** QEMU services whose TLS `qemu.conf` turns on with `<service>_tls = 1` (libvirt 9.0's keys). */
export const QEMU_TLS_SERVICES = ["vnc", "spice", "chardev", "nbd"] as const;
/** One of {@link QEMU_TLS_SERVICES}. */
export type QemuTlsService = (typeof QEMU_TLS_SERVICES)[number];

/** Which settings of libvirt's files an install manages on its host. */
export interface DaemonConfig {
  /**
   * The daemon whose file (`/etc/libvirt/<daemon>.conf`) gets the TLS settings and which `reload: "auto"`
   * reloads. `"auto"` detects it on the host: virtproxyd where its systemd units are enabled or it runs,
   * else libvirtd. @default "auto"
   */
  daemon?: "auto" | LibvirtDaemon;
  /**
   * Set `ca_file`, `cert_file`, `key_file`, `crl_file` (with a CRL) and `tls_allowed_dn_list` (when the
   * install has one) in the daemon's file, for a `libvirt-server` layout. @default true
   */
  daemonSettings?: boolean;
  /** Set `<service>_tls_x509_cert_dir` and `<service>_tls_x509_verify` in `qemu.conf` for each QEMU layout. @default true */
  qemuSettings?: boolean;
  /** QEMU services to turn TLS on for, `<service>_tls = 1` in `qemu.conf`. @default [] */
  qemuTls?: QemuTlsService[];
  /**
   * Turn on libvirt's TLS listener: `listen_tls = 1` in the daemon's file, and under systemd
   * `systemctl enable --now <daemon>-tls.socket`. Without systemd the daemon must also run with
   * `--listen` (e.g. `LIBVIRTD_ARGS` in its service's defaults). @default true where the block sets the
   * server's TLS files (a `libvirt-server` layout with `daemonSettings`), else false
   */
  listenTls?: boolean;
}

/** Where the host keeps the blocks, under the state directory. */
const CONF_DIR = "conf";
/** The file libvirt's QEMU driver reads. */
export const QEMU_CONF = "/etc/libvirt/qemu.conf";
/** libvirt's TLS port (`tls_port`). */
export const LIBVIRT_TLS_PORT = 16514;

/** What the plan records carry of the daemon configuration and the reload (see `planData.ts`). */
export interface DaemonPlan {
  /** The daemon, or "auto" (detected on the host). */
  daemon: "auto" | LibvirtDaemon;
  /** Enable the systemd TLS socket where there is one. */
  listen: boolean;
  /** Each block: the file it goes in (`@daemon`: the daemon's own) and the planned file holding it. */
  confs: {
    /** The file the block goes in: `@daemon` (the daemon's own file) or `qemu.conf`'s path. */
    target: string;
    /** The planned file (under the state directory) that holds the block. */
    blockPath: string;
  }[];
  /** `reload: "auto"`. */
  auto: boolean;
  /**
   * The restart command's words (for hosts without a service manager the script knows).
   * @default none: the host's service manager restarts the daemon
   */
  restart?: string[];
  /** Files whose change asks for a reload of that class: `tls` (the daemon), `vnc` (running guests). */
  watch: {
    /** `tls`: the daemon reloads its TLS files; `vnc`: running guests reload their VNC credentials. */
    cls: "tls" | "vnc";
    /** The planned file. */
    path: string;
  }[];
  /**
   * Check that the daemon serves `certPath` at address:port after the run.
   * @default none: no check (no `reload: "auto"`, no probe asked, or no libvirt server certificate)
   */
  probe?: {
    /** The address the host connects to. */
    address: string;
    /** The TCP port. */
    port: number;
    /** The installed certificate it must serve. */
    certPath: string;
  };
}

/** Options of {@link planDaemon}. */
export interface DaemonPlanOptions {
  /** The settings to manage; none manages no file. @default none: no file is managed */
  config?: DaemonConfig;
  /** The client DNs for `tls_allowed_dn_list`. @default none: no `tls_allowed_dn_list` line */
  tlsAllowedDnList?: readonly AllowedDn[];
  /** `"auto"` or `"none"` (a reload command is handled by the plan's `reload` records). */
  reload: "auto" | "none";
  /** Words of the restart command. @default none: the host's service manager restarts the daemon */
  restart?: string[];
  /** Where to check the served certificate (with `reload: "auto"`). @default none: no check */
  probe?: {
    /** The address the host connects to. */
    address: string;
    /** The TCP port. */
    port: number;
  };
  /** The install's state directory: the blocks are planned under `<stateDir>/conf`. */
  stateDir: string;
  /** Local mode: the daemon cannot be detected or reloaded there. */
  local: boolean;
}

/** Checks the shape of a `daemonConfig` value (at preview, before any certificate exists). */
export function checkDaemonConfig(value: unknown, property = "daemonConfig"): DaemonConfig | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new PkiError(property, `${quoteInput(value)} is not true, false or { daemon?, listenTls?, ... }`);
  }
  const v = value as Record<string, unknown>;
  const known = ["daemon", "daemonSettings", "qemuSettings", "qemuTls", "listenTls"];
  for (const k of Object.keys(v)) {
    if (!known.includes(k))
      throw new PkiError(`${property}.${k}`, `is not a setting; give ${known.join(", ")}`);
  }
  if (v.daemon !== undefined && !["auto", "libvirtd", "virtproxyd"].includes(v.daemon as string)) {
    throw new PkiError(
      `${property}.daemon`,
      `${quoteInput(v.daemon)} is not "auto", "libvirtd" or "virtproxyd"`,
    );
  }
  for (const k of ["daemonSettings", "qemuSettings", "listenTls"]) {
    if (v[k] !== undefined && typeof v[k] !== "boolean") {
      throw new PkiError(`${property}.${k}`, `${quoteInput(v[k])} is not true or false`);
    }
  }
  if (v.qemuTls !== undefined) {
    if (!Array.isArray(v.qemuTls)) throw new PkiError(`${property}.qemuTls`, 'give a list, e.g. ["vnc"]');
    v.qemuTls.forEach((s, i) => {
      if (!(QEMU_TLS_SERVICES as readonly unknown[]).includes(s)) {
        throw new PkiError(
          `${property}.qemuTls[${i}]`,
          `${quoteInput(s)} is not one of ${QEMU_TLS_SERVICES.map((x) => `"${x}"`).join(", ")}`,
        );
      }
    });
  }
  return v as DaemonConfig;
}

/** Whether the block turns on the TLS listener: `listenTls`, by default wherever it sets the server's TLS files. */
function listens(config: DaemonConfig, setsServerFiles: boolean): boolean {
  return config.listenTls ?? setsServerFiles;
}

/** The body of the daemon's block: the TLS settings of the installed server credentials, and the listener. */
export function daemonSettingsBlock(
  plan: InstallPlan,
  config: DaemonConfig,
  tlsAllowedDnList?: readonly AllowedDn[],
): string {
  const lines =
    config.daemonSettings === false
      ? []
      : libvirtdConfSnippet(plan, tlsAllowedDnList)
          .split("\n")
          .filter((l) => l !== "" && !l.startsWith("#"));
  // A stale `tls_no_verify_certificate = 1` would turn every certificate and DN check into a log line
  // (virnettlscontext.c): the block says 0 wherever it sets the TLS files.
  if (lines.length) lines.push("tls_no_verify_certificate = 0");
  if (listens(config, lines.length > 0)) lines.push("listen_tls = 1");
  return lines.length ? lines.join("\n") + "\n" : "";
}

/** The body of the `qemu.conf` block: each QEMU layout's directory settings, and the services turned on. */
export function qemuSettingsBlock(layouts: readonly Layout[], config: DaemonConfig): string {
  const lines =
    config.qemuSettings === false
      ? []
      : qemuConfSnippet(layouts)
          .split("\n")
          .filter((l) => l !== "" && !l.startsWith("#"));
  for (const s of new Set(config.qemuTls ?? [])) lines.push(`${s}_tls = 1`);
  return lines.length ? lines.join("\n") + "\n" : "";
}

/** The paths of the `libvirt-server` TLS files a daemon reads (a change asks for `server-update-tls`). */
const DAEMON_TLS_FILES = new Set([
  "/etc/pki/CA/cacert.pem",
  "/etc/pki/CA/cacrl.pem",
  "/etc/pki/libvirt/servercert.pem",
  "/etc/pki/libvirt/private/serverkey.pem",
]);
/** The server certificate libvirt serves. */
const SERVER_CERT = "/etc/pki/libvirt/servercert.pem";

/**
 * Adds the blocks to the plan (as root-owned files under `<stateDir>/conf`, so they travel, are checked and
 * claimed like any file, and show in the triggers) and says what the plan records carry. Throws
 * {@link PkiError} naming the property.
 */
export function planDaemon(
  plan: InstallPlan,
  layouts: readonly Layout[],
  o: DaemonPlanOptions,
): {
  /** The plan with the blocks added as files. */
  plan: InstallPlan;
  /**
   * What the plan records carry.
   * @default none when there are no settings to manage and no `reload: "auto"`
   */
  daemon?: DaemonPlan;
} {
  const config = o.config;
  // `reload` was checked with the other options (checkInstallOptions): "auto" is never local here.
  if (config === undefined && o.reload === "none") return { plan };
  const kind = config?.daemon ?? "auto";
  if (o.local && kind === "auto") {
    throw new PkiError(
      "daemonConfig.daemon",
      'cannot be detected in a local install; declare "libvirtd" or "virtproxyd"',
    );
  }
  const files: PlannedFile[] = [];
  const confs: DaemonPlan["confs"] = [];
  const block = (name: string, target: string, body: string): void => {
    if (body === "") return;
    const path = `${o.stateDir}/${CONF_DIR}/${name}`;
    files.push({
      path,
      role: `${name.replace(/\.conf$/, "")}-settings`,
      layout: "custom",
      content: body,
      sha256: sha256Hex(body),
      secret: false,
      owner: "root",
      group: "root",
      mode: 0o644,
      context: "root",
    });
    confs.push({ target, blockPath: path });
  };
  if (config !== undefined) {
    block("daemon.conf", "@daemon", daemonSettingsBlock(plan, config, o.tlsAllowedDnList));
    block("qemu.conf", QEMU_CONF, qemuSettingsBlock(layouts, config));
  }
  const dirs: PlannedDir[] = [...plan.dirs];
  if (files.length) {
    dirs.push(rootDir("/etc/libvirt", 0o755, false), rootDir(`${o.stateDir}/${CONF_DIR}`, 0o755, true));
  }
  const watch: DaemonPlan["watch"] = [];
  if (o.reload === "auto") {
    for (const f of plan.files) {
      if (DAEMON_TLS_FILES.has(f.path)) watch.push({ cls: "tls", path: f.path });
    }
    const vncDirs = new Set(
      layouts
        .filter((l) => l.kind === "qemu" || l.kind === "qemu-server")
        .map((l) => qemuDir(l as QemuLayout)),
    );
    for (const f of plan.files) {
      if (vncDirs.has(f.path.slice(0, f.path.lastIndexOf("/")))) watch.push({ cls: "vnc", path: f.path });
    }
  }
  const hasServer = plan.files.some((f) => f.path === SERVER_CERT);
  const probe =
    o.reload === "auto" && o.probe !== undefined && hasServer
      ? { ...o.probe, certPath: SERVER_CERT }
      : undefined;
  return {
    plan: { ...plan, dirs, files: [...plan.files, ...files] },
    daemon: {
      daemon: kind,
      listen: config !== undefined && listens(config, hasServer && config.daemonSettings !== false),
      confs,
      auto: o.reload === "auto",
      restart: o.restart,
      watch,
      probe,
    },
  };
}

/** The plan records of a {@link DaemonPlan} (before the parts; see `planData.ts`). */
export function daemonRecords(d: DaemonPlan, field: (v: string) => string): string[] {
  const lines = [`daemon ${field(d.daemon)} ${d.listen ? 1 : 0}`];
  if (d.auto) lines.push("rmode auto");
  for (const w of d.restart ?? []) lines.push(`restart ${w}`);
  for (const c of d.confs) lines.push(`c ${field(c.target)} ${field(c.blockPath)}`);
  for (const w of d.watch) lines.push(`w ${w.cls} ${field(w.path)}`);
  if (d.probe !== undefined) {
    lines.push(`probe ${field(d.probe.address)} ${d.probe.port} ${field(d.probe.certPath)}`);
  }
  return lines;
}

/** What a host did after an install, from its stdout (`virt-pki-reload`, `virt-pki-conf`, `virt-pki-served`). */
export interface HostActions {
  /** Each file whose block changed. */
  confsChanged: string[];
  /** What was reloaded, e.g. `libvirtd update-tls`, `guest vm1 display-reload`. */
  reloads: string[];
  /** Guests whose credentials could not be reloaded live (migrate or restart them). */
  guestsNotReloaded: string[];
  /**
   * The probe's address and the SHA-256 fingerprint it saw (`-` for none), when there was a probe.
   * @default none when the host reported no probe
   */
  served?: {
    /** The address the host connected to. */
    address: string;
    /** The SHA-256 fingerprint of the certificate served there, or `-` when none was. */
    fingerprint: string;
  };
}

/** Parses what {@link HostActions} holds from an install script's stdout. */
export function parseHostActions(stdout: string): HostActions {
  const a: HostActions = { confsChanged: [], reloads: [], guestsNotReloaded: [] };
  for (const line of stdout.split("\n")) {
    const p = line.split(" ");
    if (p[0] === "virt-pki-conf" && p.length === 3 && p[2] === "changed=1") a.confsChanged.push(p[1]);
    else if (p[0] === "virt-pki-reload" && p[1] === "guest" && p.length >= 4 && p[3] !== "display-reload")
      a.guestsNotReloaded.push(`${p[2]}: ${p.slice(3).join(" ")}`);
    else if (p[0] === "virt-pki-reload" && p.length >= 3) a.reloads.push(p.slice(1).join(" "));
    else if (p[0] === "virt-pki-served" && p.length === 3) a.served = { address: p[1], fingerprint: p[2] };
  }
  return a;
}

/** The SHA-256 fingerprint of a PEM certificate as `openssl x509 -fingerprint -sha256` prints it. */
export function fingerprintOf(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

/**
 * Checks that the host served the certificate just installed (`virt-pki-served`), and returns its
 * fingerprint. Throws naming the host otherwise.
 */
export function verifyServed(actions: HostActions, certPem: string, hostLabel: string): string {
  const want = fingerprintOf(certPem);
  const s = actions.served;
  if (s === undefined) throw new Error(`${hostLabel}: the host did not report which certificate it serves`);
  if (s.fingerprint !== want) {
    throw new Error(
      `${hostLabel}: libvirt at ${s.address} serves ${s.fingerprint === "-" ? "no certificate (nothing answered with TLS)" : `the certificate ${s.fingerprint}`}, ` +
        `not the one installed (${want}); is the daemon running with TLS on that address and port (listenTls, verifyServed)?`,
    );
  }
  return s.fingerprint;
}
