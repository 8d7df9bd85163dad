/**
 * `HostCredentialInstall`: places credentials on one host, in the layouts libvirt and QEMU read, with
 * one `@pulumi/command` command (remote over SSH, or local under a `root` folder). Thin glue: the plan,
 * the plan data, the fixed host scripts and the manifest check live in `./install` (pure, unit-tested).
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { withoutStackTraces } from "../provider/sdkStacks";
import { HostProbe } from "../provider/hostProbe";
import { PkiError } from "../provider/pki/errors";
import { probeOf } from "./verifyServed";
import {
  CustomLayout,
  DEFAULT_STATE_DIR,
  DaemonConfig,
  INSTALL_SCRIPT,
  InstalledFile,
  Layout,
  LibvirtClientLayout,
  LibvirtClientUserLayout,
  LibvirtServerLayout,
  Ownership,
  PathOverride,
  QemuLayout,
  QemuPskLayout,
  AllowedDn,
  REMOVE_SCRIPT,
  checkDigestKey,
  checkInstallOptions,
  checkLayoutShape,
  checkPlanShape,
  checkStateDir,
  checkPlanOptions,
  digestKeyOf,
  installCommand,
  libvirtdConfSnippet,
  checkDaemonConfig,
  modeString,
  parseHostActions,
  qemuConfSnippet,
  verifyManifest,
  verifyServed,
  withRepairToken,
  QEMU_GROUP,
} from "./install";
import { ANY_ACCOUNT, ProbeConnection } from "../provider/drift";

/**
 * A value any part of which may be a Pulumi input, at any depth: the value itself, an array's items, an
 * object's properties (e.g. a `custom` layout's `files[i].content` given a certificate's `certPem`).
 */
export type DeepInput<T> = T extends readonly (infer U)[]
  ? pulumi.Input<DeepInput<U>[]>
  : T extends object
    ? pulumi.Input<Inputs<T>>
    : pulumi.Input<T>;

/** Each property of T may be a Pulumi input, at any depth (see {@link DeepInput}). */
export type Inputs<T> = { [K in keyof T]: DeepInput<T[K]> };

/** One layout request with Pulumi inputs: see the `install/layouts` types for the fields. */
export type LayoutArgs =
  | Inputs<LibvirtServerLayout>
  | Inputs<LibvirtClientLayout>
  | Inputs<LibvirtClientUserLayout>
  | Inputs<QemuLayout>
  | Inputs<QemuPskLayout>
  | Inputs<CustomLayout>;

/** Arguments of {@link HostCredentialInstall}. Give exactly one of `connection` and `root`. */
export interface HostCredentialInstallArgs {
  /**
   * How to reach the host: `@pulumi/command`'s remote `ConnectionArgs` as they are (host, port, user,
   * privateKey, password, agentSocketPath, hostKey, proxy, ...). Give `hostKey` (the host's public key,
   * `ssh-ed25519 AAAA...`): `@pulumi/command` accepts ANY host key without it, and would hand the keys on
   * stdin to whatever answers at the address, on create and again on delete.
   * @default none: give `root` instead
   */
  connection?: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /**
   * Connect without checking the host's key (`connection.hostKey` absent): anyone who can answer at the
   * address (DNS, ARP, a reused IP) receives the private keys. Only for a throwaway lab. @default false
   */
  skipHostKeyVerification?: boolean;
  /**
   * Install on the machine running Pulumi, under this absolute folder (a staging tree for an image
   * build, say): `/etc/pki/...` becomes `<root>/etc/pki/...`, homes are `<root>/home/<user>`.
   * @default none: give `connection` instead
   */
  root?: string;
  /** What to call the host in messages. @default the resource name */
  hostLabel?: string;
  /** The layouts to place (several may share files, e.g. the CA certificate). */
  layouts: LayoutArgs[];
  /**
   * The owners, groups and modes the layouts give their files and directories.
   * @default "default" (see {@link Ownership})
   */
  ownership?: Ownership;
  /** Owner, group and/or mode by absolute path, over what the layouts say. @default none */
  overrides?: Record<string, PathOverride>;
  /**
   * The group QEMU runs as; detected on the host (`qemu`, else `libvirt-qemu`) when absent.
   * @default detected on the host when a file has the QEMU group and owners are set
   */
  qemuGroup?: string;
  /** chown to the planned owners. @default true over SSH, false locally (a staging tree) */
  setOwners?: boolean;
  /** Label with SELinux `cert_t` when the host has SELinux enabled. @default true over SSH, false locally */
  selinux?: boolean;
  /**
   * Run after any file's content changed (never on a no-op run), as words without a shell, e.g.
   * `["systemctl", "reload", "libvirtd"]`. A string of plain words is split at spaces; shell syntax is
   * refused (write `["sh", "-c", "..."]` to run a shell on the host). With `root` it would run on the
   * machine running Pulumi, not on a host, so it is refused there. @default none
   */
  reloadCommand?: pulumi.Input<string | string[]>;
  /** Leave the files on the host when this install is deleted. @default false */
  keepOnDelete?: boolean;
  /**
   * Where the host keeps the claims that make delete remove only this install's files.
   * @default "/var/lib/virt-pki"
   */
  stateDir?: string;
  /**
   * The clients the server accepts: `tls_allowed_dn_list` in the daemon's settings and the `libvirtdConf`
   * snippet. Each entry is a client's exact DN, or `{ dnPrefix }` for every DN of that prefix (see
   * `AllowedDnPrefix` in `install`). @default none (libvirt then admits every certificate of the trusted CAs)
   */
  tlsAllowedDnList?: pulumi.Input<pulumi.Input<AllowedDn>[]>;
  /**
   * Manage libvirt's TLS settings on the host: a marked block in the daemon's file (`libvirtd.conf` or
   * `virtproxyd.conf`) and in `qemu.conf`, every other line kept byte for byte (see {@link DaemonConfig}).
   * `true` is `{}`. @default false
   */
  daemonConfig?: boolean | DaemonConfig;
  /**
   * After a change, `"auto"` does what each change needs once the daemon runs: new TLS files
   * `virt-admin server-update-tls` (no connection drops), new daemon settings a restart, new VNC files
   * `display-reload` in each running guest; then it checks which certificate the daemon serves
   * (`verifyServed`). `"none"` does nothing (see `reloadCommand`). @default "none"
   */
  reload?: "auto" | "none";
  /**
   * How `reload: "auto"` restarts the TLS daemon (libvirtd or virtproxyd) when it must, as words without a
   * shell. When given it is used instead of the service manager; without it the script uses the one it knows
   * (systemd, OpenRC, `/etc/init.d/<daemon>`) and fails where there is none. virtqemud is always restarted by
   * the service manager. @default the service manager
   */
  restartCommand?: pulumi.Input<string | string[]>;
  /**
   * With `reload: "auto"`: after the run the host connects to its own libvirt TLS port and reports the
   * certificate it serves; anything but the one installed fails the `up`, naming the host. `false` turns
   * it off. @default `{ address: connection.host, port: 16514 }`
   */
  verifyServed?:
    | boolean
    | {
        /** The address the host connects to. @default the connection's `host` */
        address?: string;
        /** The TCP port. @default 16514 (libvirt's TLS port) */
        port?: number;
      };
  /**
   * Over SSH, read the host's installed files at every preview and up (a `HostProbe` resource, `<name>-probe`):
   * a file deleted, replaced, or with another mode or owner shows in the preview as that probe's input
   * `drift`, and the `up` installs again. An unreachable host is a reason there, not a failed preview.
   * @default true over SSH (no probe locally)
   */
  checkDrift?: boolean;
  /**
   * Every name and address clients (peers, migration, virsh) use to reach this host: each server
   * certificate the layouts install must match every one, as GnuTLS matches them, or the install is
   * refused at preview. @default none checked
   */
  serverNames?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * Ask `pki.checkTlsCredentials` about every TLS layout before installing (see `serverNames`): a credential
   * libvirt or QEMU would refuse fails the preview, one they would warn about is a warning. Turn it off only
   * for credentials meant to be refused (a revoked client's). @default true
   */
  checkCredentials?: boolean;
  /**
   * Log what libvirt or QEMU would warn about as a warning on this install. `false` leaves them to the caller
   * (`credentialWarnings`): VirtualizationPki logs one warning per message for all its hosts. @default true
   */
  logCredentialWarnings?: boolean;
  /**
   * A secret of at least 32 characters (e.g. a `PreSharedKeys` resource's `keysPsk`) that keys the digests
   * triggers, state and the host's manifest show of secret files, instead of their plain sha256, which a
   * dictionary attack reverses for a short secret. Needed when the only secret files are `custom` ones;
   * it also keeps their digests unchanged when a key is re-issued.
   * @default derived from the private keys and `keys.psk` this install places
   */
  digestKey?: pulumi.Input<string>;
}

/**
 * Installs TLS credentials on a host in libvirt's and QEMU's layouts (`libvirt-server`,
 * `libvirt-client`, `libvirt-client-user`, `qemu-server`, `qemu-client`, `qemu`, `qemu-psk`, `custom`).
 *
 * Key material goes only on the command's stdin (a secret); the script is visible in previews and
 * holds paths, hashes, owners and modes. The command's triggers are the content hashes (HMACs for secret
 * files, which a dictionary of guesses cannot match; see `install/digests.ts`), so a re-issued
 * certificate re-installs and an unchanged one runs nothing. Each file is replaced atomically, the host
 * reports a manifest that is checked against what was sent, and delete removes only this install's files.
 */
export class HostCredentialInstall extends pulumi.ComponentResource {
  /** Every installed file: planned path, path on the host, role, sha256, mode, owner, group (as verified). */
  readonly files: pulumi.Output<InstalledFile[]>;
  /** `libvirtd.conf` lines for the installed server credentials ("" without a libvirt-server layout). */
  readonly libvirtdConf: pulumi.Output<string>;
  /** `qemu.conf` lines for the QEMU directories ("" without QEMU layouts). */
  readonly qemuConf: pulumi.Output<string>;
  /** The generation digest the host's claims carry. */
  readonly generation: pulumi.Output<string>;
  /** What libvirt or QEMU would log about these credentials, each as `layouts[i] (<consumer> <role>): <message>` (not stored in the state). */
  readonly credentialWarnings: pulumi.Output<string[]>;
  /** The command that runs the install script. */
  readonly command: command.remote.Command | command.local.Command;
  /** With `verifyServed`: the SHA-256 fingerprint of the certificate libvirt serves after the run (undefined in a preview). */
  readonly servedFingerprint: pulumi.Output<string | undefined>;
  /** What the host reloaded on the last run that changed something, e.g. `libvirtd update-tls`. */
  readonly reloads: pulumi.Output<string[]>;
  /** Running guests whose TLS credentials could not be reloaded live, `<guest>: <why>`: migrate or restart them. */
  readonly guestsNotReloaded: pulumi.Output<string[]>;
  /** With `checkDrift`: how the host differed from what was installed when this run began (empty: it did not). */
  readonly drift: pulumi.Output<string[]>;

  constructor(name: string, args: HostCredentialInstallArgs, opts?: pulumi.ComponentResourceOptions) {
    super("virt-pki:index:HostCredentialInstall", name, {}, opts);
    checkArgs(args);
    const local = args.connection === undefined;
    const setOwners = args.setOwners ?? !local;
    const selinux = args.selinux ?? !local;
    const hostLabel = args.hostLabel ?? name;
    const stateDir = args.stateDir ?? DEFAULT_STATE_DIR;

    const layouts = pulumi.output(args.layouts) as unknown as pulumi.Output<Layout[]>;
    const target = local
      ? pulumi.output(`local:${args.root}`)
      : pulumi.output(args.connection!).apply((c) => {
          // A connection only known now (an output of another resource) is checked now.
          checkHostKey(c, args.skipHostKeyVerification, "connection.hostKey");
          return `${c.user ?? "root"}@${c.host}:${c.port ?? 22}`;
        });
    // The host scripts are fixed texts; everything of this host and plan is data on stdin (secret: it
    // carries the keys). A preview shows the triggers: each file's path, hash prefix, owner and mode.
    const digestKey = pulumi.secret(pulumi.output(args.digestKey));
    // Every TLS layout is asked of `pki.checkTlsCredentials` as it would be written: what libvirt or QEMU
    // would refuse fails here (a throw in this apply fails the deployment before the command exists), and
    // what they would log is a warning on this resource.
    const serverNames = pulumi.output(args.serverNames ?? []);
    const probe = local
      ? pulumi.output(undefined)
      : pulumi
          .output(args.connection!)
          .apply((c) => (args.reload === "auto" ? probeOf(args.verifyServed, c.host) : undefined));
    const extra = pulumi.all([args.tlsAllowedDnList, args.restartCommand, probe]);
    const cmd = pulumi
      .all([layouts, target, args.reloadCommand, digestKey, serverNames, extra])
      .apply(([l, t, reload, dk, sn, [dns, restart, pr]]) =>
        installCommand({
          name,
          hostLabel,
          target: t,
          layouts: l,
          ownership: args.ownership,
          overrides: args.overrides,
          root: args.root,
          setOwners,
          selinux,
          qemuGroup: args.qemuGroup,
          reloadCommand: reload,
          stateDir,
          keepOnDelete: args.keepOnDelete,
          digestKey: dk,
          serverNames: sn,
          checkCredentials: args.checkCredentials,
          daemonConfig: args.daemonConfig,
          tlsAllowedDnList: dns,
          reload: args.reload,
          restartCommand: restart,
          probe: args.reload === "auto" ? pr : undefined,
        }),
      );
    this.credentialWarnings = cmd.apply((c) => c.warnings);
    if (args.logCredentialWarnings !== false) {
      this.credentialWarnings.apply((w) => {
        if (w.length) void pulumi.log.warn(`${hostLabel}: ${w.join("\n")}`, this);
      });
    }
    const plan = cmd.plan;
    const prober =
      local || args.checkDrift === false
        ? undefined
        : new HostProbe(
            `${name}-probe`,
            {
              label: hostLabel,
              connection: pulumi.output(args.connection!).apply(probeConnection),
              // Root's files only: a user's files are written by that user, and root must not follow
              // the user's links to read them. Owners as the install sets them (none without setOwners).
              files: plan.apply((p) =>
                p.files
                  .filter((f) => !f.path.startsWith("~"))
                  .map((f) => ({
                    path: f.path,
                    sha256: f.sha256,
                    mode: modeString(f.mode),
                    owner: setOwners ? f.owner : ANY_ACCOUNT,
                    group: !setOwners
                      ? ANY_ACCOUNT
                      : f.group === QEMU_GROUP && args.qemuGroup
                        ? args.qemuGroup
                        : f.group,
                  })),
              ),
            },
            { parent: this },
          );
    this.drift = prober === undefined ? pulumi.output([]) : prober.drift.apply((d) => d ?? []);
    const stdin =
      prober === undefined
        ? cmd.stdin
        : pulumi.all([cmd.stdin, prober.token]).apply(([s, t]) => withRepairToken(s, t ?? "0"));
    const commandArgs = {
      create: INSTALL_SCRIPT,
      delete: args.keepOnDelete ? undefined : REMOVE_SCRIPT,
      stdin: pulumi.secret(stdin),
      // Paths, digest prefixes (HMACs for secret files), owners and modes: no secret, shown by previews.
      triggers: pulumi.unsecret(cmd.triggers),
      logging: "stdout" as const,
      addPreviousOutputInEnv: false,
    };
    const commandOpts = { parent: this, additionalSecretOutputs: ["stdin"] };
    // The SDK's per-property stack traces are this registration's largest cost (see provider/sdkStacks.ts).
    this.command = withoutStackTraces(() =>
      local
        ? new command.local.Command(
            `${name}-files`,
            { ...commandArgs, interpreter: ["/bin/sh", "-c"] },
            commandOpts,
          )
        : new command.remote.Command(
            `${name}-files`,
            { ...commandArgs, connection: args.connection! },
            commandOpts,
          ),
    );

    this.generation = pulumi.unsecret(cmd.generation);
    this.files = pulumi.unsecret(
      pulumi.all([this.command.stdout, plan, cmd.digests, digestKey]).apply(([stdout, p, digests, dk]) =>
        // No stdout yet (preview): report the plan; after the command ran: what the host says, checked.
        typeof stdout === "string"
          ? verifyManifest(stdout, p, {
              hostLabel,
              setOwners,
              qemuGroup: args.qemuGroup,
              root: args.root,
              digestKey: dk,
            })
          : p.files.map((f, i) => ({
              path: f.path,
              hostPath: f.path,
              role: f.role,
              sha256: digests[i],
              mode: modeString(f.mode),
              owner: f.owner,
              group: f.group,
            })),
      ),
    );
    const actions = this.command.stdout.apply((o) =>
      typeof o === "string" ? parseHostActions(o) : undefined,
    );
    this.servedFingerprint = pulumi.unsecret(
      pulumi
        .all([actions, cmd.servedCertPem])
        .apply(([a, pem]) =>
          a === undefined || pem === undefined ? undefined : verifyServed(a, pem, hostLabel),
        ),
    );
    this.reloads = pulumi.unsecret(actions.apply((a) => a?.reloads ?? []));
    this.guestsNotReloaded = pulumi.unsecret(actions.apply((a) => a?.guestsNotReloaded ?? []));
    this.libvirtdConf = pulumi.unsecret(
      pulumi.all([plan, args.tlsAllowedDnList]).apply(([p, dns]) => libvirtdConfSnippet(p, dns)),
    );
    this.qemuConf = pulumi.unsecret(layouts.apply(qemuConfSnippet));
    this.registerOutputs({
      files: this.files,
      libvirtdConf: this.libvirtdConf,
      qemuConf: this.qemuConf,
      generation: this.generation,
      servedFingerprint: this.servedFingerprint,
      reloads: this.reloads,
      guestsNotReloaded: this.guestsNotReloaded,
      drift: this.drift,
    });
  }
}

/** Preview-time checks of everything that does not depend on certificate content. */
function checkArgs(args: HostCredentialInstallArgs): void {
  if ((args.connection === undefined) === (args.root === undefined)) {
    throw new PkiError(
      "connection",
      args.root === undefined
        ? "give connection (install over SSH) or root (install locally under a folder)"
        : "give connection or root, not both",
    );
  }
  if (
    args.connection !== undefined &&
    !pulumi.Output.isInstance(args.connection) &&
    !(args.connection instanceof Promise)
  ) {
    checkHostKey(
      args.connection as { hostKey?: unknown },
      args.skipHostKeyVerification,
      "connection.hostKey",
    );
  }
  checkInstallOptions(args);
  checkPlanOptions({ ownership: args.ownership, overrides: args.overrides });
  if (!Array.isArray(args.layouts) || args.layouts.length === 0) {
    throw new PkiError(
      "layouts",
      'is required: give at least one layout, e.g. { kind: "libvirt-server", ... }',
    );
  }
  args.layouts.forEach((l, i) => {
    if (!pulumi.Output.isInstance(l)) checkLayoutShape(l as Record<string, unknown>, `layouts[${i}]`);
  });
  // Paths, owners and modes known now are planned now (with placeholder credentials): their errors show
  // in the preview instead of failing the deployment later.
  const plan = checkPlanShape(
    args.layouts,
    { ownership: args.ownership, overrides: args.overrides },
    (v) => !pulumi.Output.isInstance(v) && !(v instanceof Promise),
  );
  if (plan !== undefined) checkStateDir(plan, args.stateDir ?? DEFAULT_STATE_DIR);
  checkDaemonConfig(args.daemonConfig);
  if (typeof args.verifyServed === "object" && args.verifyServed !== null) {
    probeOf(args.verifyServed, "localhost");
  }
  // Secret files need a digest key: a given digestKey, or the install's own keys (see install/digests.ts).
  if (typeof args.digestKey === "string") checkDigestKey(args.digestKey);
  else if (plan !== undefined && args.digestKey === undefined) digestKeyOf(plan);
}

/** An OpenSSH public key line, as `ssh.ParseAuthorizedKey` reads it: type, base64 blob, optional comment. */
const PUBLIC_KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,2}( [^\n]*)?$/;

/**
 * Throws unless the connection pins the host's key, or the caller opted out. A key only known later (an
 * output) passes here; `@pulumi/command` then refuses a line it cannot parse.
 */
export function checkHostKey(
  connection: { hostKey?: unknown; proxy?: unknown },
  skipHostKeyVerification: boolean | undefined,
  property: string,
): void {
  const proxy = connection.proxy;
  // A bastion hop is dialled with its own hostKey (remote/connection.go: the proxy's SSHConfig): unpinned,
  // a man in the middle there gets the bastion credentials.
  if (
    proxy !== undefined &&
    proxy !== null &&
    typeof proxy === "object" &&
    !pulumi.Output.isInstance(proxy)
  ) {
    checkHostKey(
      proxy as { hostKey?: unknown },
      skipHostKeyVerification,
      // connection.hostKey -> connection.proxy.hostKey; a fleet's hosts[0].hostKey -> hosts[0].connection.proxy.hostKey
      property.replace(/(connection\.)?hostKey$/, "connection.proxy.hostKey"),
    );
  }
  const key = connection.hostKey;
  if (key === undefined || key === null || key === "") {
    if (skipHostKeyVerification === true) return;
    throw new PkiError(
      property,
      "is required: without it @pulumi/command accepts any host key and would send the private keys to " +
        "whoever answers at that address. Give the host's public key line (/etc/ssh/ssh_host_ed25519_key.pub, " +
        "or `ssh-keyscan -t ed25519 HOST | cut -d' ' -f2-` checked against the host's console), e.g. " +
        '"ssh-ed25519 AAAAC3Nza...", or set skipHostKeyVerification: true',
    );
  }
  if (pulumi.Output.isInstance(key) || key instanceof Promise) return; // checked by @pulumi/command
  if (typeof key !== "string" || !PUBLIC_KEY.test(key.trim())) {
    throw new PkiError(
      property,
      'is not an OpenSSH public key line; give e.g. "ssh-ed25519 AAAAC3Nza..." from /etc/ssh/ssh_host_ed25519_key.pub',
    );
  }
}

/** The probe's connection: the fields of `@pulumi/command`'s it uses, a bastion (`proxy`) included. */
function probeConnection(c: Omit<ProbeConnection, "proxy"> & { proxy?: unknown }): ProbeConnection {
  const p = c.proxy as Parameters<typeof probeConnection>[0] | undefined;
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    privateKey: c.privateKey,
    privateKeyPassword: c.privateKeyPassword,
    password: c.password,
    hostKey: c.hostKey,
    agentSocketPath: c.agentSocketPath,
    ...(p ? { proxy: probeConnection(p) } : {}),
  };
}
