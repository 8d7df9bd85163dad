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
import { isKeysPskText } from "../../provider/pki/psk";
import { quoteInput } from "../../provider/pki/quote";

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
/**
 * The group token `@primary:<user>`, which the install script resolves on the host to `user`'s primary
 * group (`id -g`; the install fails when the user does not exist there). Plans give it to what a user
 * owns and writes: a `libvirt-client-user` layout's folder and files, the folders between a home and a
 * planned `~user/...` directory, and a `custom` layout's directory and files owned by a user other than
 * root (unless a group is given). `overrides` and `custom` layouts may name it too. The manifest check
 * accepts any group the host reports for it, and the drift probe does not compare it.
 */
export function primaryGroupOf(user: string): string {
  return `@primary:${user}`;
}

/** libvirt's system-wide credentials (`/etc/pki/CA`, `/etc/pki/libvirt`) for a TLS server. */
export interface LibvirtServerLayout {
  /** Selects this layout. */
  kind: "libvirt-server";
  /** The CA certificate(s) the server trusts (PEM): `/etc/pki/CA/cacert.pem`. */
  caCertPem: string;
  /** The server certificate (PEM): `/etc/pki/libvirt/servercert.pem`. */
  certPem: string;
  /** The server's private key (PEM): `/etc/pki/libvirt/private/serverkey.pem`. Secret. */
  keyPem: string;
  /** Installed as `/etc/pki/CA/cacrl.pem`, which libvirtd loads when it exists. @default none: no CRL file */
  crlPem?: string;
}

/** libvirt's system-wide client credentials (used by root's libvirtd and virsh, and by local users who may). */
export interface LibvirtClientLayout {
  /** Selects this layout. */
  kind: "libvirt-client";
  /** The CA certificate(s) the client trusts (PEM): `/etc/pki/CA/cacert.pem`. */
  caCertPem: string;
  /** The client certificate (PEM): `/etc/pki/libvirt/clientcert.pem`. */
  certPem: string;
  /** The client's private key (PEM): `/etc/pki/libvirt/private/clientkey.pem`. Secret. */
  keyPem: string;
  /** Installed as `/etc/pki/CA/cacrl.pem`. @default none: no CRL file */
  crlPem?: string;
  /**
   * Make `private/clientkey.pem` world-readable (0644), as `virt-pki-validate` advises, so that every local
   * user's virsh connects with this identity: only for a shared workstation whose users are all meant to be
   * this client. Otherwise the key is root's alone (0600) and `virt-pki-validate` prints "The client private
   * key need to be read by client tools" (a hint, not a failure: users get their own `libvirt-client-user`).
   * @default false
   */
  keyReadableByAllUsers?: boolean;
}

/** A user's own libvirt client credentials: `$HOME/.pki/libvirt`, or a `pkipath` folder. */
export interface LibvirtClientUserLayout {
  /** Selects this layout. */
  kind: "libvirt-client-user";
  /** Login name; the files are owned by this user and their primary group. */
  user: string;
  /** Absolute folder, or `~/...` under the user's home. @default "~/.pki/libvirt" */
  dir?: string;
  /** The CA certificate(s) the client trusts (PEM): `cacert.pem` in `dir`. */
  caCertPem: string;
  /** The client certificate (PEM): `clientcert.pem` in `dir`. */
  certPem: string;
  /** The client's private key (PEM): `clientkey.pem` in `dir`, mode 0600. Secret. */
  keyPem: string;
  /** Installed as `cacrl.pem` in `dir`. @default none: no CRL file */
  crlPem?: string;
}

/** QEMU's `tls-creds-x509` directory for a server endpoint, a client endpoint, or both (`qemu`). */
export interface QemuLayout {
  /** `qemu-server` (the `server-*` files), `qemu-client` (the `client-*` files) or `qemu` (both). */
  kind: "qemu-server" | "qemu-client" | "qemu";
  /**
   * Which service's directory: `default` is `/etc/pki/qemu`, others `/etc/pki/libvirt-<service>`.
   * @default "default"
   */
  service?: QemuService;
  /** Any other absolute directory (wins over `service`). @default the directory of `service` */
  dir?: string;
  /** The CA certificate(s) QEMU trusts (PEM): `ca-cert.pem`. */
  caCertPem: string;
  /** `ca-crl.pem`, read by server endpoints. @default none: no CRL file (never one for `qemu-client`) */
  crlPem?: string;
  /** The certificate and key, as `server-*` and/or `client-*` ("save them twice" for `qemu`). */
  certPem: string;
  /**
   * The key of `certPem` (PEM): `server-key.pem` and/or `client-key.pem`, readable by QEMU's group.
   * Secret.
   */
  keyPem: string;
  /**
   * For `qemu` only: a separate client identity instead of saving `certPem` twice.
   * @default none: `certPem` is also `client-cert.pem`
   */
  clientCertPem?: string;
  /**
   * For `qemu` only: the key of `clientCertPem` (give both). Secret.
   * @default none: `keyPem` is also `client-key.pem`
   */
  clientKeyPem?: string;
  /**
   * Optional `dh-params.pem` (deprecated in new QEMU, still read when present).
   * @default none: no `dh-params.pem` (not for `qemu-client`)
   */
  dhParamsPem?: string;
}

/** QEMU's `tls-creds-psk` directory: `keys.psk`, lines `username:hexkey`. */
export interface QemuPskLayout {
  /** Selects this layout. */
  kind: "qemu-psk";
  /** The directory of `keys.psk` (the `dir` of QEMU's `tls-creds-psk`). @default "/etc/pki/qemu" */
  dir?: string;
  /** The content of `keys.psk` (the `PreSharedKeys` resource's `keysPsk`). */
  keysPsk: string;
}

/** One file of a {@link CustomLayout}. */
export interface CustomFile {
  /** File name inside the layout's `dir`. */
  name: string;
  /** The file's text (no NUL bytes; a final newline is added when missing). */
  content: string;
  /** Private key material: sent only on stdin, default mode 0600. @default false */
  secret?: boolean;
  /** The file's mode. @default 0o600 for secrets, else 0o644 */
  mode?: number;
  /** The file's owner. @default the owner of `dir` (`dirOwner`) */
  owner?: string;
  /**
   * The file's group.
   * @default `dirGroup` for a file of `dir`'s owner; else "root" for root, a user's primary group for a user
   */
  group?: string;
}

/** Any directory and file names. */
export interface CustomLayout {
  /** Selects this layout. */
  kind: "custom";
  /** Absolute directory (or `~user/...`). */
  dir: string;
  /** The mode of `dir`. @default 0o755 */
  dirMode?: number;
  /** Owner of `dir`. @default the user of a `~user/...` dir, else "root" */
  dirOwner?: string;
  /** Group of `dir`. @default "root" when `dirOwner` is root, else `dirOwner`'s primary group */
  dirGroup?: string;
  /** The files to place in `dir` (at least one). */
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
  /** The owner to set. @default the layout's */
  owner?: string;
  /** The group to set: a name, or `@qemu` / `@primary:<user>`. @default the layout's */
  group?: string;
  /** The mode to set, e.g. `0o640`. @default the layout's */
  mode?: number;
}

/** The keys a {@link PathOverride} may have. */
const OVERRIDE_KEYS = ["owner", "group", "mode"];

/** Options that apply to every layout of one install. */
export interface PlanOptions {
  /** The ownership convention. @default "default" */
  ownership?: Ownership;
  /** Overrides by absolute path (as in the layouts table, `~user/...` for per-user paths). @default none */
  overrides?: Record<string, PathOverride>;
}

/**
 * Who writes a path on the host:
 * - `root`: the install itself (as root over SSH), only below directories that no other user can change;
 * - `top`: a user's top directory (e.g. a `custom` dir owned by `app`): created and given to the user by
 *   root, in a directory only root can change;
 * - `user`: everything below a user's home (`~user/...`) or inside a `top` directory, written by that
 *   user's own process (`setpriv`), so nothing the user planted can lead root elsewhere.
 */
export type PathContext = "root" | "top" | "user";

/** A directory the install creates if missing and (when `managed`) gives its owner and mode. */
export interface PlannedDir {
  /** Absolute path, or `~user/...`. */
  path: string;
  /** Its owner: a user name. */
  owner: string;
  /** Its group: a group name, or a token resolved on the host (`@qemu`, `@primary:<user>`). */
  group: string;
  /** Its mode, e.g. `0o755`. */
  mode: number;
  /** false: only created if missing (e.g. `/etc/pki`); true: owner/mode enforced on every run. */
  managed: boolean;
  /** Who writes it (see {@link PathContext}). */
  context: PathContext;
}

/** A directory root owns and writes in: root:root, `mode`, `managed` (see {@link PlannedDir}). */
export function rootDir(path: string, mode: number, managed: boolean): PlannedDir {
  return { path, owner: "root", group: "root", mode, managed, context: "root" };
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
  /** Its owner: a user name. */
  owner: string;
  /** Its group: a group name, or a token resolved on the host (`@qemu`, `@primary:<user>`). */
  group: string;
  /** Its mode, e.g. `0o640`. */
  mode: number;
  /** `root` or `user` (see {@link PathContext}). */
  context: PathContext;
}

/** Everything one install writes, in order: directories parents first, then files. */
export interface InstallPlan {
  /** The directories, parents first. */
  dirs: PlannedDir[];
  /** The files. */
  files: PlannedFile[];
  /** Users whose own processes write `user`-context paths (see {@link PathContext}). */
  writers: string[];
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
      `${quoteInput(path)} is not an absolute path of letters, digits and ._@+- (or ~user/...). Give e.g. "/etc/pki/qemu"`,
    );
  }
  if (path.split("/").some((part) => part === "." || part === "..")) {
    throw new PkiError(property, `${quoteInput(path)} contains "." or ".."; give the plain absolute path`);
  }
}

/** Throws unless `name` is a plausible user or group name (or `@qemu` / `@primary:<user>`). */
export function checkAccount(property: string, name: string): void {
  if (name === QEMU_GROUP) return;
  const account = typeof name === "string" && name.startsWith("@primary:") ? name.slice(9) : name;
  if (typeof account !== "string" || !SAFE_ACCOUNT.test(account)) {
    throw new PkiError(
      property,
      `${quoteInput(name)} is not a user or group name (lower-case letters, digits, _ and -; e.g. "root"; ` +
        `or "@qemu", or "@primary:<user>")`,
    );
  }
}

/** Throws unless `mode` is an integer 0..0o777 (no setuid, setgid or sticky bits on credentials). */
export function checkMode(property: string, mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
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

type DirEntry = Omit<PlannedDir, "context"> & { from: string };
type FileEntry = Omit<PlannedFile, "context"> & { from: string };

/** The owner, group and mode an override sets (nothing else: the keys were checked). */
function pick(o: PathOverride | undefined): PathOverride {
  if (o === undefined) return {};
  const { owner, group, mode } = o;
  return Object.fromEntries(
    Object.entries({ owner, group, mode }).filter(([, v]) => v !== undefined),
  ) as PathOverride;
}

/**
 * Accumulates files and directories, merging identical requests and refusing conflicting ones; `build`
 * decides who writes each path (see {@link PathContext}) and refuses what would let a user other than
 * root change a path root writes through.
 */
class PlanBuilder {
  private dirs = new Map<string, DirEntry>();
  private files = new Map<string, FileEntry>();

  constructor(private readonly overrides: Record<string, PathOverride>) {}

  dir(from: string, dir: Omit<PlannedDir, "context">): void {
    const d = { ...dir, ...pick(this.overrides[dir.path]), from };
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

  file(from: string, file: Omit<PlannedFile, "sha256" | "context">): void {
    const content = asFile(file.content);
    const f = { ...file, ...pick(this.overrides[file.path]), content, sha256: sha256Hex(content), from };
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

  /** A PkiError naming the override of `x.path` when there is one, else the layout that asked for it. */
  private refuse(x: { path: string; from: string }, message: string): PkiError {
    return new PkiError(x.path in this.overrides ? `overrides[${JSON.stringify(x.path)}]` : x.from, message);
  }

  build(): InstallPlan {
    // Every folder between a home and a planned ~user directory is planned too (the user creates it, 0700).
    for (const d of [...this.dirs.values()]) {
      if (!d.path.startsWith("~")) continue;
      const parts = d.path.split("/");
      const user = parts[0].slice(1);
      for (let i = 2; i < parts.length; i++) {
        const path = parts.slice(0, i).join("/");
        if (!this.dirs.has(path)) {
          this.dir(d.from, { path, owner: user, group: primaryGroupOf(user), mode: 0o700, managed: false });
        }
      }
    }
    const entries = [...this.dirs.values()].sort(
      (a, b) => a.path.split("/").length - b.path.split("/").length || a.path.localeCompare(b.path),
    );
    const planned = new Map<string, PlannedDir>();
    const writers = new Set<string>();
    for (const d of entries) {
      const { from, ...rest } = d;
      void from;
      if (d.mode & 0o022) {
        throw this.refuse(
          d,
          `directory ${d.path} would be writable by group or others (${describe(d)}), who could then swap ` +
            `the files in it; give a mode without group/other write, such as 0o755 or 0o750`,
        );
      }
      const home = d.path.startsWith("~") ? d.path.slice(1).split("/")[0] : undefined;
      const parent = planned.get(parentOf(d.path));
      let context: PathContext;
      if (home !== undefined && home !== ROOT) {
        if (d.owner !== home || d.group !== primaryGroupOf(home)) {
          throw this.refuse(
            d,
            `${d.path} is written by ${home} (never by root, in a directory ${home} controls), so it belongs to ` +
              `${home} and ${home}'s primary group, not ${d.owner}:${d.group}`,
          );
        }
        context = "user";
      } else if (d.owner === ROOT) {
        if (parent !== undefined && parent.context !== "root") {
          throw this.refuse(
            d,
            `${d.path} belongs to root but lies in ${parent.path}, which ${parent.owner} can change; ` +
              `root writes only below directories no other user can change`,
          );
        }
        context = "root";
      } else if (home === ROOT) {
        throw this.refuse(d, `${d.path} lies in root's home: it must belong to root, not ${d.owner}`);
      } else if (parent !== undefined && parent.context !== "root") {
        if (parent.owner !== d.owner || d.group !== primaryGroupOf(d.owner)) {
          throw this.refuse(
            d,
            `${d.path} lies in ${parent.path}, which ${parent.owner} writes: it must belong to ${parent.owner} ` +
              `and ${parent.owner}'s primary group (${primaryGroupOf(parent.owner)}), not ${d.owner}:${d.group}`,
          );
        }
        context = "user";
      } else {
        context = "top";
      }
      if (context === "user") writers.add(d.owner);
      planned.set(d.path, { ...rest, context });
    }
    const files: PlannedFile[] = [...this.files.values()].map((f) => {
      const { from, ...rest } = f;
      void from;
      const dir = planned.get(parentOf(f.path));
      if (dir === undefined) throw new Error(`internal: no directory planned for ${f.path}`);
      if (dir.context === "root") return { ...rest, context: "root" };
      if (f.owner !== dir.owner || f.group !== primaryGroupOf(dir.owner)) {
        throw this.refuse(
          f,
          `${f.path} is written by ${dir.owner}, who owns ${dir.path}: it belongs to ${dir.owner} and ` +
            `${primaryGroupOf(dir.owner)}, not ${f.owner}:${f.group}`,
        );
      }
      writers.add(dir.owner);
      return { ...rest, context: "user" };
    });
    const dirs = [...planned.values()];
    const accounts = [...dirs, ...files].flatMap((x) => [x.owner, x.group]);
    return {
      dirs,
      files,
      writers: [...writers].sort(),
      usesQemuGroup: accounts.includes(QEMU_GROUP),
    };
  }
}

/** A file mode as octal, 4 digits (`0644`). */
export function modeString(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

function describe(x: { owner: string; group: string; mode: number }): string {
  return `${x.owner}:${x.group} ${modeString(x.mode)}`;
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
  if (rq && layout.kind === "libvirt-client" && layout.keyReadableByAllUsers === true) {
    throw new PkiError(
      `${from}.keyReadableByAllUsers`,
      'has no effect with ownership "root-qemu" (every key is 0440 root:QEMU); remove one of the two',
    );
  }
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
    // Root's alone (0600). virt-pki-validate advises 0644 for the system client key so that every local
    // user's virsh can use it; that is the explicit `keyReadableByAllUsers` (a shared workstation).
    mode: rq
      ? 0o440
      : layout.kind === "libvirt-client" && layout.keyReadableByAllUsers === true
        ? 0o644
        : 0o600,
  });
}

function libvirtUser(b: PlanBuilder, from: string, layout: LibvirtClientUserLayout): void {
  checkAccount(`${from}.user`, layout.user);
  const user = layout.user;
  const group = primaryGroupOf(user);
  const dir = userPath(user, layout.dir ?? "~/.pki/libvirt");
  checkPath(`${from}.dir`, dir);
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
  if (!isKeysPskText(layout.keysPsk)) {
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
  // Under ~user, or in a directory a user owns, the user writes the files: they default to that user.
  const home = layout.dir.startsWith("~") ? layout.dir.slice(1).split("/")[0] : undefined;
  const dirOwner = layout.dirOwner ?? home ?? ROOT;
  const dirGroup = layout.dirGroup ?? (dirOwner === ROOT ? ROOT : primaryGroupOf(dirOwner));
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
      throw new PkiError(`${at}.name`, `${quoteInput(f.name)} is not a file name (letters, digits, ._@+-)`);
    }
    if (typeof f.content !== "string")
      throw new PkiError(`${at}.content`, "is required: give the file's text");
    if (f.content.includes("\0")) {
      throw new PkiError(`${at}.content`, "holds a NUL byte: only text files can be installed");
    }
    const secret = f.secret ?? false;
    const mode = f.mode ?? (secret ? 0o600 : 0o644);
    checkMode(`${at}.mode`, mode);
    const owner = f.owner ?? dirOwner;
    const group = f.group ?? (owner === dirOwner ? dirGroup : owner === ROOT ? ROOT : primaryGroupOf(owner));
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
    throw new PkiError("ownership", `${quoteInput(options.ownership)} is not "default" or "root-qemu"`);
  }
  if (
    options.overrides !== undefined &&
    (options.overrides === null || typeof options.overrides !== "object")
  ) {
    throw new PkiError(property, "give an object of { [path]: { owner?, group?, mode? } }");
  }
  for (const [path, o] of Object.entries(options.overrides ?? {})) {
    checkPath(`${property}[${JSON.stringify(path)}]`, path);
    if (o === null || typeof o !== "object" || Array.isArray(o)) {
      throw new PkiError(`${property}[${JSON.stringify(path)}]`, "give an object { owner?, group?, mode? }");
    }
    const unknown = Object.keys(o).filter((k) => !OVERRIDE_KEYS.includes(k));
    if (unknown.length > 0) {
      throw new PkiError(
        `${property}[${JSON.stringify(path)}]`,
        `${unknown.map((k) => JSON.stringify(k)).join(", ")} ${unknown.length > 1 ? "are not settings" : "is not a setting"} of a path; give only owner, group and mode`,
      );
    }
    const at = `${property}[${JSON.stringify(path)}]`;
    if (o.owner !== undefined) checkAccount(`${at}.owner`, o.owner);
    if (o.group !== undefined) checkAccount(`${at}.group`, o.group);
    if (o.mode !== undefined) checkMode(`${at}.mode`, o.mode);
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
    throw new PkiError(`${from}.kind`, `${quoteInput(layout.kind)} is not one of ${LAYOUT_KINDS.join(", ")}`);
  }
  if (typeof layout.user === "string") checkAccount(`${from}.user`, layout.user);
  if (layout.kind === "libvirt-client-user" && layout.user === undefined) {
    throw new PkiError(
      `${from}.user`,
      "is required: give the login name whose ~/.pki/libvirt receives the files",
    );
  }
  if (typeof layout.service === "string" && !(QEMU_SERVICES as readonly string[]).includes(layout.service)) {
    throw new PkiError(
      `${from}.service`,
      `${quoteInput(layout.service)} is not one of ${QEMU_SERVICES.join(", ")}`,
    );
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

/** A PEM header line only: what a placeholder for a credential field needs to pass {@link requirePem}. */
function pemHeader(label: string): string {
  return `-----BEGIN ${label}-----\n`;
}

/** Placeholders for credential fields, so that a layout's shape can be planned before its content exists. */
const PLACEHOLDER: Record<string, string> = {
  caCertPem: pemHeader("CERTIFICATE"),
  certPem: pemHeader("CERTIFICATE"),
  clientCertPem: pemHeader("CERTIFICATE"),
  keyPem: pemHeader("PRIVATE KEY"),
  clientKeyPem: pemHeader("PRIVATE KEY"),
  crlPem: pemHeader("X509 CRL"),
  dhParamsPem: pemHeader("DH PARAMETERS"),
  keysPsk: "user:00\n",
};

/**
 * Plans the layouts with placeholder credentials when everything but the credentials is already known
 * (plain values, not outputs), so that every check of {@link planInstall} on paths, owners, groups and
 * modes fails at preview time, naming the property. Returns that plan, or nothing when a layout's shape
 * is not known yet.
 */
export function checkPlanShape(
  layouts: readonly unknown[],
  options: PlanOptions,
  isKnown: (value: unknown) => boolean,
): InstallPlan | undefined {
  const skeletons: Layout[] = [];
  for (const l of layouts) {
    if (!isKnown(l) || l === null || typeof l !== "object") return undefined;
    const skeleton: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(l)) {
      if (k in PLACEHOLDER) {
        if (v !== undefined) skeleton[k] = PLACEHOLDER[k];
      } else if (k === "files" && Array.isArray(v)) {
        if (!v.every((f) => isKnown(f) && f !== null && typeof f === "object")) return undefined;
        const files = v.map((f: Record<string, unknown>) => ({ ...f, content: "x" }));
        if (files.some((f) => Object.entries(f).some(([fk, fv]) => fk !== "content" && !isKnown(fv)))) {
          return undefined;
        }
        skeleton.files = files;
      } else if (!isKnown(v)) {
        return undefined;
      } else {
        skeleton[k] = v;
      }
    }
    skeletons.push(skeleton as unknown as Layout);
  }
  return planInstall(skeletons, options);
}
