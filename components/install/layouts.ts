/**
 * The file layouts libvirt and QEMU read, as data: which credential goes to which path, with which
 * owner, group and mode, and which directories must exist around them. Pure (no Pulumi import):
 * {@link planInstall} turns layout requests into one {@link InstallPlan} that the script generator
 * renders and the tests check.
 *
 * Paths, owners and modes come from libvirt (`virnettlsconfig.h`, `virt-pki-validate`), QEMU
 * (`crypto/tlscredsx509.c`, `tlscredspsk.c`) and libvirt's `qemu.conf`; see the README's layouts table.
 */
import { createHash } from "crypto";
import { PkiError } from "../../provider/pki/errors";

/** QEMU TLS services that libvirt gives their own credentials directory (`/etc/pki/libvirt-<service>`). */
export const QEMU_SERVICES = ["default", "vnc", "spice", "chardev", "migrate", "backup", "nbd"] as const;
/** A QEMU TLS service; `default` is `default_tls_x509_cert_dir` (`/etc/pki/qemu`). */
export type QemuService = (typeof QEMU_SERVICES)[number];

/**
 * Ownership conventions:
 * - `default`: what `virt-pki-validate` and the real consumers expect (root-owned, world-readable
 *   certificates, the libvirt server key 0600, QEMU keys 0640 root:QEMU-group).
 * - `root-qemu`: the libvirt wiki's convention, group QEMU on the libvirt and QEMU directories (0750 for
 *   key directories) and 0440 on every certificate and key. `virt-pki-validate` warns about it.
 */
export type Ownership = "default" | "root-qemu";

/** Group token resolved on the host: `qemu` (Fedora/RHEL) or `libvirt-qemu` (Debian/Ubuntu), or `qemuGroup`. */
export const QEMU_GROUP = "@qemu";
/** Group token resolved on the host to the primary group of `user`. */
export function primaryGroupOf(user: string): string {
  return `@primary:${user}`;
}

/** libvirt's system-wide credentials (`/etc/pki/CA`, `/etc/pki/libvirt`) for a TLS server. */
export interface LibvirtServerLayout {
  kind: "libvirt-server";
  caCertPem: string;
  certPem: string;
  keyPem: string;
  /** Installed as `/etc/pki/CA/cacrl.pem`, which libvirtd loads when it exists. */
  crlPem?: string;
}

/** libvirt's system-wide client credentials (used by root, and by every local user without their own). */
export interface LibvirtClientLayout {
  kind: "libvirt-client";
  caCertPem: string;
  certPem: string;
  keyPem: string;
  crlPem?: string;
}

/** A user's own libvirt client credentials: `$HOME/.pki/libvirt`, or a `pkipath` folder. */
export interface LibvirtClientUserLayout {
  kind: "libvirt-client-user";
  /** Login name; the files are owned by this user and their primary group. */
  user: string;
  /** Absolute folder, or `~/...` under the user's home. @default "~/.pki/libvirt" */
  dir?: string;
  caCertPem: string;
  certPem: string;
  keyPem: string;
  crlPem?: string;
}

/** QEMU's `tls-creds-x509` directory for a server endpoint, a client endpoint, or both (`qemu`). */
export interface QemuLayout {
  kind: "qemu-server" | "qemu-client" | "qemu";
  /** Which service's directory: `default` is `/etc/pki/qemu`, others `/etc/pki/libvirt-<service>`. */
  service?: QemuService;
  /** Any other absolute directory (wins over `service`). */
  dir?: string;
  caCertPem: string;
  /** `ca-crl.pem`, read by server endpoints. */
  crlPem?: string;
  /** The certificate and key, as `server-*` and/or `client-*` ("save them twice" for `qemu`). */
  certPem: string;
  keyPem: string;
  /** For `qemu` only: a separate client identity instead of saving `certPem` twice. */
  clientCertPem?: string;
  clientKeyPem?: string;
  /** Optional `dh-params.pem` (deprecated in new QEMU, still read when present). */
  dhParamsPem?: string;
}

/** QEMU's `tls-creds-psk` directory: `keys.psk`, lines `username:hexkey`. */
export interface QemuPskLayout {
  kind: "qemu-psk";
  /** @default "/etc/pki/qemu" */
  dir?: string;
  /** The content of `keys.psk` (the `PreSharedKeys` resource's `keysPsk`). */
  keysPsk: string;
}

/** One file of a {@link CustomLayout}. */
export interface CustomFile {
  /** File name inside the layout's `dir`. */
  name: string;
  content: string;
  /** Private key material: sent only on stdin, default mode 0600. @default false */
  secret?: boolean;
  /** @default 0o600 for secrets, else 0o644 */
  mode?: number;
  /** @default "root" */
  owner?: string;
  /** @default "root" */
  group?: string;
}

/** Any directory and file names. */
export interface CustomLayout {
  kind: "custom";
  /** Absolute directory (or `~user/...`). */
  dir: string;
  /** @default 0o755 */
  dirMode?: number;
  /** Owner and group of `dir`. @default "root" */
  dirOwner?: string;
  dirGroup?: string;
  files: CustomFile[];
}

/** One layout request. */
export type Layout =
  | LibvirtServerLayout
  | LibvirtClientLayout
  | LibvirtClientUserLayout
  | QemuLayout
  | QemuPskLayout
  | CustomLayout;

/** The layout kinds, for messages and docs. */
export const LAYOUT_KINDS = [
  "libvirt-server",
  "libvirt-client",
  "libvirt-client-user",
  "qemu-server",
  "qemu-client",
  "qemu",
  "qemu-psk",
  "custom",
] as const;

/** Owner, group and/or mode to force on one path (file or directory), whatever the layout says. */
export interface PathOverride {
  owner?: string;
  group?: string;
  mode?: number;
}

/** Options that apply to every layout of one install. */
export interface PlanOptions {
  /** @default "default" */
  ownership?: Ownership;
  /** Overrides by absolute path (as in the layouts table, `~user/...` for per-user paths). */
  overrides?: Record<string, PathOverride>;
}

/** A directory the install creates if missing and (when `managed`) gives its owner and mode. */
export interface PlannedDir {
  /** Absolute path, or `~user/...`. */
  path: string;
  owner: string;
  group: string;
  mode: number;
  /** false: only created if missing (e.g. `/etc/pki`); true: owner/mode enforced on every run. */
  managed: boolean;
}

/** A file the install writes. */
export interface PlannedFile {
  /** Absolute path, or `~user/...`. */
  path: string;
  /** What it holds, e.g. `server-key` (for messages and outputs). */
  role: string;
  /** The layout kind that asked for it. */
  layout: Layout["kind"];
  /** Exact bytes written (always ends with a newline). */
  content: string;
  /** Hex SHA-256 of `content`. */
  sha256: string;
  /** Private key material. */
  secret: boolean;
  owner: string;
  group: string;
  mode: number;
}

/** Everything one install writes, in order: directories parents first, then files. */
export interface InstallPlan {
  dirs: PlannedDir[];
  files: PlannedFile[];
  /** Users whose home directories paths refer to (`~user/...`). */
  users: string[];
  /** Whether any owner or group is the host's QEMU group. */
  usesQemuGroup: boolean;
}

const SAFE_PATH = /^(~[a-z_][a-z0-9_-]*)?(\/[A-Za-z0-9._@+-]+)+$/;
const SAFE_NAME = /^[A-Za-z0-9._@+-]+$/;
const SAFE_ACCOUNT = /^[a-z_][a-z0-9_-]{0,31}$/;

/** Throws unless `path` is an absolute (or `~user/`) path of safe characters without `.`/`..` parts. */
export function checkPath(property: string, path: string): void {
  if (typeof path !== "string" || !SAFE_PATH.test(path)) {
    throw new PkiError(
      property,
      `${JSON.stringify(path)} is not an absolute path of letters, digits and ._@+- (or ~user/...). Give e.g. "/etc/pki/qemu"`,
    );
  }
  if (path.split("/").some((part) => part === "." || part === "..")) {
    throw new PkiError(
      property,
      `${JSON.stringify(path)} contains "." or ".."; give the plain absolute path`,
    );
  }
}

/** Throws unless `name` is a plausible user or group name (or one of the tokens above, for groups). */
export function checkAccount(property: string, name: string): void {
  if (name === QEMU_GROUP || (typeof name === "string" && name.startsWith("@primary:"))) return;
  if (typeof name !== "string" || !SAFE_ACCOUNT.test(name)) {
    throw new PkiError(
      property,
      `${JSON.stringify(name)} is not a user or group name (lower-case letters, digits, _ and -; e.g. "root")`,
    );
  }
}

/** Throws unless `mode` is an integer 0..0o7777. */
export function checkMode(property: string, mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new PkiError(property, `${String(mode)} is not a file mode; give an octal number such as 0o640`);
  }
}

/** Adds the newline a text file ends with, if missing. */
function asFile(content: string): string {
  return content.endsWith("\n") ? content : `${content}\n`;
}

/** Hex SHA-256 of a UTF-8 string. */
export function sha256Hex(content: string): string {
  return createHash("sha256").update(content, "utf8").digest("hex");
}

function requirePem(property: string, value: unknown, what: "certificate" | "key" | "crl" | "dh"): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw new PkiError(property, `is required: give the PEM ${what === "dh" ? "DH parameters" : what}`);
  }
  const marker = {
    certificate: /-----BEGIN CERTIFICATE-----/,
    key: /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
    crl: /-----BEGIN X509 CRL-----/,
    dh: /-----BEGIN DH PARAMETERS-----/,
  }[what];
  if (!marker.test(value)) {
    // Never echo the value: it may be key material.
    throw new PkiError(property, `does not hold a PEM ${what} (no ${marker.source.replace(/\\/g, "")} line)`);
  }
  return value;
}

/** Expands a `~/...` dir of a user layout to `~user/...`. */
function userPath(user: string, dir: string): string {
  return dir === "~" ? `~${user}` : dir.startsWith("~/") ? `~${user}${dir.slice(1)}` : dir;
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/"));
}

/** Accumulates files and directories, merging identical requests and refusing conflicting ones. */
class PlanBuilder {
  private dirs = new Map<string, PlannedDir & { from: string }>();
  private files = new Map<string, PlannedFile & { from: string }>();
  private users = new Set<string>();

  constructor(private readonly overrides: Record<string, PathOverride>) {}

  dir(from: string, dir: PlannedDir): void {
    const d = { ...dir, ...this.overrides[dir.path], from };
    if (d.path.startsWith("~")) this.users.add(d.path.slice(1).split("/")[0]);
    const seen = this.dirs.get(d.path);
    if (seen === undefined) {
      this.dirs.set(d.path, d);
      return;
    }
    if (!d.managed) return;
    if (!seen.managed) {
      this.dirs.set(d.path, d);
      return;
    }
    if (seen.owner !== d.owner || seen.group !== d.group || seen.mode !== d.mode) {
      throw new PkiError(
        from,
        `directory ${d.path} is asked for as ${describe(d)} here and as ${describe(seen)} by ${seen.from}; ` +
          `give both layouts the same ownership, or set overrides["${d.path}"]`,
      );
    }
  }

  file(from: string, file: Omit<PlannedFile, "sha256">): void {
    const content = asFile(file.content);
    const f = { ...file, ...this.overrides[file.path], content, sha256: sha256Hex(content), from };
    const seen = this.files.get(f.path);
    if (seen === undefined) {
      this.files.set(f.path, f);
      return;
    }
    if (seen.sha256 !== f.sha256) {
      throw new PkiError(
        from,
        `${f.path} would get different content from ${seen.from} and from here; install each credential ` +
          `once per path (one CA file per host, e.g.)`,
      );
    }
    if (seen.owner !== f.owner || seen.group !== f.group || seen.mode !== f.mode) {
      throw new PkiError(
        from,
        `${f.path} is asked for as ${describe(f)} here and as ${describe(seen)} by ${seen.from}; ` +
          `set overrides["${f.path}"]`,
      );
    }
  }

  build(): InstallPlan {
    const dirs = [...this.dirs.values()]
      .map(({ from: _from, ...d }) => d)
      .sort((a, b) => a.path.split("/").length - b.path.split("/").length || a.path.localeCompare(b.path));
    const files = [...this.files.values()].map(({ from: _from, ...f }) => f);
    for (const f of files) {
      if (!this.dirs.has(parentOf(f.path))) throw new Error(`internal: no directory planned for ${f.path}`);
    }
    const accounts = [...dirs, ...files].flatMap((x) => [x.owner, x.group]);
    return {
      dirs,
      files,
      users: [...this.users].sort(),
      usesQemuGroup: accounts.includes(QEMU_GROUP),
    };
  }
}

function describe(x: { owner: string; group: string; mode: number }): string {
  return `${x.owner}:${x.group} ${x.mode.toString(8).padStart(4, "0")}`;
}

const ROOT = "root";

/** `/etc/pki` and `/etc/pki/CA` with the CA certificate (and CRL), as every system layout needs them. */
function systemTrust(
  b: PlanBuilder,
  from: string,
  layout: { kind: Layout["kind"]; caCertPem: string; crlPem?: string },
): void {
  b.dir(from, { path: "/etc/pki", owner: ROOT, group: ROOT, mode: 0o755, managed: false });
  b.dir(from, { path: "/etc/pki/CA", owner: ROOT, group: ROOT, mode: 0o755, managed: true });
  const ca = requirePem(`${from}.caCertPem`, layout.caCertPem, "certificate");
  b.file(from, {
    path: "/etc/pki/CA/cacert.pem",
    role: "ca-cert",
    layout: layout.kind,
    content: ca,
    secret: false,
    owner: ROOT,
    group: ROOT,
    mode: 0o644,
  });
  if (layout.crlPem !== undefined) {
    b.file(from, {
      path: "/etc/pki/CA/cacrl.pem",
      role: "ca-crl",
      layout: layout.kind,
      content: requirePem(`${from}.crlPem`, layout.crlPem, "crl"),
      secret: false,
      owner: ROOT,
      group: ROOT,
      mode: 0o644,
    });
  }
}

function libvirtSystem(
  b: PlanBuilder,
  from: string,
  layout: LibvirtServerLayout | LibvirtClientLayout,
  ownership: Ownership,
): void {
  systemTrust(b, from, layout);
  const role = layout.kind === "libvirt-server" ? "server" : "client";
  const rq = ownership === "root-qemu";
  const group = rq ? QEMU_GROUP : ROOT;
  b.dir(from, { path: "/etc/pki/libvirt", owner: ROOT, group, mode: 0o755, managed: true });
  b.dir(from, {
    path: "/etc/pki/libvirt/private",
    owner: ROOT,
    group,
    mode: rq ? 0o750 : 0o755,
    managed: true,
  });
  const common = { layout: layout.kind, owner: ROOT, group };
  b.file(from, {
    ...common,
    path: `/etc/pki/libvirt/${role}cert.pem`,
    role: `${role}-cert`,
    content: requirePem(`${from}.certPem`, layout.certPem, "certificate"),
    secret: false,
    mode: rq ? 0o440 : 0o644,
  });
  b.file(from, {
    ...common,
    path: `/etc/pki/libvirt/private/${role}key.pem`,
    role: `${role}-key`,
    content: requirePem(`${from}.keyPem`, layout.keyPem, "key"),
    secret: true,
    // libvirt's own virt-pki-validate: the server key is root-only, the *system* client key is
    // world-readable so that every local user's virsh can use it (override it to 0o600 if only root connects).
    mode: rq ? 0o440 : role === "server" ? 0o600 : 0o644,
  });
}

function libvirtUser(b: PlanBuilder, from: string, layout: LibvirtClientUserLayout): void {
  checkAccount(`${from}.user`, layout.user);
  const user = layout.user;
  const group = primaryGroupOf(user);
  const dir = userPath(user, layout.dir ?? "~/.pki/libvirt");
  checkPath(`${from}.dir`, dir);
  if (dir.startsWith(`~${user}/`)) {
    // Every folder between the home and the credentials belongs to the user, 0700.
    const parts = dir.split("/");
    for (let i = 2; i < parts.length; i++) {
      b.dir(from, { path: parts.slice(0, i).join("/"), owner: user, group, mode: 0o700, managed: false });
    }
  }
  b.dir(from, { path: dir, owner: user, group, mode: 0o700, managed: true });
  const files: [string, string, "certificate" | "key" | "crl", string | undefined][] = [
    ["cacert.pem", "ca-cert", "certificate", layout.caCertPem],
    ["clientcert.pem", "client-cert", "certificate", layout.certPem],
    ["clientkey.pem", "client-key", "key", layout.keyPem],
  ];
  if (layout.crlPem !== undefined) files.push(["cacrl.pem", "ca-crl", "crl", layout.crlPem]);
  const props: Record<string, string> = {
    "ca-cert": "caCertPem",
    "client-cert": "certPem",
    "client-key": "keyPem",
    "ca-crl": "crlPem",
  };
  for (const [name, role, what, pem] of files) {
    b.file(from, {
      path: `${dir}/${name}`,
      role,
      layout: layout.kind,
      content: requirePem(`${from}.${props[role]}`, pem, what),
      secret: what === "key",
      owner: user,
      group,
      mode: 0o600,
    });
  }
}

/** The directory of a QEMU layout. */
export function qemuDir(layout: { service?: QemuService; dir?: string }): string {
  if (layout.dir !== undefined) return layout.dir;
  const service = layout.service ?? "default";
  return service === "default" ? "/etc/pki/qemu" : `/etc/pki/libvirt-${service}`;
}

/** A QEMU layout; `service` was checked by {@link checkLayoutShape}. */
function qemu(b: PlanBuilder, from: string, layout: QemuLayout, ownership: Ownership): void {
  const dir = qemuDir(layout);
  checkPath(`${from}.dir`, dir);
  if ((layout.clientCertPem !== undefined || layout.clientKeyPem !== undefined) && layout.kind !== "qemu") {
    throw new PkiError(
      `${from}.clientCertPem`,
      `only the combined "qemu" layout takes a separate client identity; for "${layout.kind}" use certPem/keyPem`,
    );
  }
  const rq = ownership === "root-qemu";
  if (dir.startsWith("/etc/pki/")) {
    b.dir(from, { path: "/etc/pki", owner: ROOT, group: ROOT, mode: 0o755, managed: false });
  }
  b.dir(from, {
    path: dir,
    owner: ROOT,
    group: rq ? QEMU_GROUP : ROOT,
    mode: rq ? 0o750 : 0o755,
    managed: true,
  });
  const put = (name: string, role: string, content: string, secret: boolean): void =>
    b.file(from, {
      path: `${dir}/${name}`,
      role,
      layout: layout.kind,
      content,
      secret,
      owner: ROOT,
      // QEMU runs as the qemu / libvirt-qemu user: its keys must be readable by that group.
      group: rq || secret ? QEMU_GROUP : ROOT,
      mode: rq ? 0o440 : secret ? 0o640 : 0o644,
    });
  put("ca-cert.pem", "ca-cert", requirePem(`${from}.caCertPem`, layout.caCertPem, "certificate"), false);
  const cert = (): string => requirePem(`${from}.certPem`, layout.certPem, "certificate");
  const key = (): string => requirePem(`${from}.keyPem`, layout.keyPem, "key");
  if (layout.kind !== "qemu-client") {
    if (layout.crlPem !== undefined)
      put("ca-crl.pem", "ca-crl", requirePem(`${from}.crlPem`, layout.crlPem, "crl"), false);
    put("server-cert.pem", "server-cert", cert(), false);
    put("server-key.pem", "server-key", key(), true);
    if (layout.dhParamsPem !== undefined) {
      put("dh-params.pem", "dh-params", requirePem(`${from}.dhParamsPem`, layout.dhParamsPem, "dh"), false);
    }
  }
  if (layout.kind !== "qemu-server") {
    const separate = layout.clientCertPem !== undefined || layout.clientKeyPem !== undefined;
    put(
      "client-cert.pem",
      "client-cert",
      separate ? requirePem(`${from}.clientCertPem`, layout.clientCertPem, "certificate") : cert(),
      false,
    );
    put(
      "client-key.pem",
      "client-key",
      separate ? requirePem(`${from}.clientKeyPem`, layout.clientKeyPem, "key") : key(),
      true,
    );
  }
}

function qemuPsk(b: PlanBuilder, from: string, layout: QemuPskLayout): void {
  const dir = layout.dir ?? "/etc/pki/qemu";
  checkPath(`${from}.dir`, dir);
  if (typeof layout.keysPsk !== "string" || !/^([^:\s]+:[0-9a-fA-F]+\n?)+$/.test(layout.keysPsk)) {
    throw new PkiError(`${from}.keysPsk`, "is required: give keys.psk content, lines of username:hexkey");
  }
  if (dir.startsWith("/etc/pki/")) {
    b.dir(from, { path: "/etc/pki", owner: ROOT, group: ROOT, mode: 0o755, managed: false });
  }
  b.dir(from, { path: dir, owner: ROOT, group: ROOT, mode: 0o755, managed: true });
  b.file(from, {
    path: `${dir}/keys.psk`,
    role: "psk-keys",
    layout: layout.kind,
    content: layout.keysPsk,
    secret: true,
    owner: ROOT,
    group: ROOT,
    mode: 0o600,
  });
}

function custom(b: PlanBuilder, from: string, layout: CustomLayout): void {
  checkPath(`${from}.dir`, layout.dir);
  const dirOwner = layout.dirOwner ?? ROOT;
  const dirGroup = layout.dirGroup ?? ROOT;
  checkAccount(`${from}.dirOwner`, dirOwner);
  checkAccount(`${from}.dirGroup`, dirGroup);
  const dirMode = layout.dirMode ?? 0o755;
  checkMode(`${from}.dirMode`, dirMode);
  b.dir(from, { path: layout.dir, owner: dirOwner, group: dirGroup, mode: dirMode, managed: true });
  if (!Array.isArray(layout.files) || layout.files.length === 0) {
    throw new PkiError(`${from}.files`, "is required: give at least one { name, content }");
  }
  layout.files.forEach((f, i) => {
    const at = `${from}.files[${i}]`;
    if (typeof f.name !== "string" || !SAFE_NAME.test(f.name) || f.name === "." || f.name === "..") {
      throw new PkiError(
        `${at}.name`,
        `${JSON.stringify(f.name)} is not a file name (letters, digits, ._@+-)`,
      );
    }
    if (typeof f.content !== "string")
      throw new PkiError(`${at}.content`, "is required: give the file's text");
    const secret = f.secret ?? false;
    const mode = f.mode ?? (secret ? 0o600 : 0o644);
    checkMode(`${at}.mode`, mode);
    const owner = f.owner ?? ROOT;
    const group = f.group ?? ROOT;
    checkAccount(`${at}.owner`, owner);
    checkAccount(`${at}.group`, group);
    b.file(from, {
      path: `${layout.dir}/${f.name}`,
      role: f.name,
      layout: "custom",
      content: f.content,
      secret,
      owner,
      group,
      mode,
    });
  });
}

/** Checks the options that do not depend on credential content (usable at preview time). */
export function checkPlanOptions(options: PlanOptions, property = "overrides"): void {
  if (
    options.ownership !== undefined &&
    options.ownership !== "default" &&
    options.ownership !== "root-qemu"
  ) {
    throw new PkiError("ownership", `"${String(options.ownership)}" is not "default" or "root-qemu"`);
  }
  for (const [path, o] of Object.entries(options.overrides ?? {})) {
    checkPath(`${property}["${path}"]`, path);
    if (o.owner !== undefined) checkAccount(`${property}["${path}"].owner`, o.owner);
    if (o.group !== undefined) checkAccount(`${property}["${path}"].group`, o.group);
    if (o.mode !== undefined) checkMode(`${property}["${path}"].mode`, o.mode);
  }
}

/**
 * Checks a layout's kind and, where they are plain strings, the fields that select paths and owners
 * (`dir`, `user`, `service`), not the PEM content: usable at preview time, before certificates exist.
 */
export function checkLayoutShape(
  layout: { kind?: unknown; dir?: unknown; user?: unknown; service?: unknown },
  from: string,
): void {
  if (layout === null || typeof layout !== "object") {
    throw new PkiError(from, `is not a layout object; give { kind: "${LAYOUT_KINDS[0]}", ... }`);
  }
  if (typeof layout.kind !== "string") return; // not known yet
  if (!(LAYOUT_KINDS as readonly string[]).includes(layout.kind)) {
    throw new PkiError(
      `${from}.kind`,
      `${JSON.stringify(layout.kind)} is not one of ${LAYOUT_KINDS.join(", ")}`,
    );
  }
  if (typeof layout.user === "string") checkAccount(`${from}.user`, layout.user);
  if (layout.kind === "libvirt-client-user" && layout.user === undefined) {
    throw new PkiError(
      `${from}.user`,
      "is required: give the login name whose ~/.pki/libvirt receives the files",
    );
  }
  if (typeof layout.service === "string" && !(QEMU_SERVICES as readonly string[]).includes(layout.service)) {
    throw new PkiError(`${from}.service`, `"${layout.service}" is not one of ${QEMU_SERVICES.join(", ")}`);
  }
  if (typeof layout.dir === "string") {
    const user = typeof layout.user === "string" ? layout.user : "user";
    checkPath(`${from}.dir`, layout.kind === "libvirt-client-user" ? userPath(user, layout.dir) : layout.dir);
  }
  if (layout.kind === "custom" && layout.dir === undefined) {
    throw new PkiError(
      `${from}.dir`,
      'is required for a custom layout: give an absolute directory such as "/etc/pki/myapp"',
    );
  }
}

/**
 * Turns layout requests into the directories and files to install, merging what several layouts share
 * (the CA file of a host that is both libvirt server and client) and refusing conflicts. Throws
 * {@link PkiError} naming `layouts[i].<field>` for bad input.
 */
export function planInstall(layouts: readonly Layout[], options: PlanOptions = {}): InstallPlan {
  checkPlanOptions(options);
  if (!Array.isArray(layouts) || layouts.length === 0) {
    throw new PkiError("layouts", `is required: give at least one layout (${LAYOUT_KINDS.join(", ")})`);
  }
  const ownership = options.ownership ?? "default";
  const b = new PlanBuilder(options.overrides ?? {});
  layouts.forEach((layout, i) => {
    const from = `layouts[${i}]`;
    checkLayoutShape(layout, from);
    switch (layout.kind) {
      case "libvirt-server":
      case "libvirt-client":
        return libvirtSystem(b, from, layout, ownership);
      case "libvirt-client-user":
        return libvirtUser(b, from, layout);
      case "qemu-server":
      case "qemu-client":
      case "qemu":
        return qemu(b, from, layout, ownership);
      case "qemu-psk":
        return qemuPsk(b, from, layout);
      case "custom":
        return custom(b, from, layout);
    }
  });
  return b.build();
}
