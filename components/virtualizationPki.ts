/**
 * `VirtualizationPki`: the whole TLS PKI of a libvirt/QEMU fleet in one declaration: the CA (or CAs,
 * during a rotation), a server certificate per host, client certificates, the CRL, QEMU pre-shared
 * keys, and the installs on every host.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { CaCredentials, CaLike } from "../provider/caCredentials";
import { CertificateAuthority } from "../provider/certificateAuthority";
import { CertificateRevocationList, RevokedCertificateArgs } from "../provider/certificateRevocationList";
import { ClientCertificate } from "../provider/clientCertificate";
import { PreSharedKeys } from "../provider/preSharedKeys";
import { HostIdentities, HostRole } from "../provider/hostIdentities";
import { checkRevocationReason, RevocationReason } from "../provider/pki/crl";
import { PkiError } from "../provider/pki/errors";
import { KeySpec } from "../provider/pki/keys";
import { Subject, distinguishedName, normalizeSubject } from "../provider/pki/names";
import { ROLE_UNITS } from "../provider/handlers/hostIdentities";
import { isoSecond } from "../provider/pki/revocations";
import { inspectCertificate } from "../provider/pki/inspect";
import { normalizeSerial } from "../provider/pki/serial";
import { HostCredentialInstall, LayoutArgs, checkHostKey } from "./hostCredentialInstall";
import { hostVerifyServed, probeOf } from "./verifyServed";
import {
  Ownership,
  PathOverride,
  QEMU_SERVICES,
  QemuService,
  DaemonConfig,
  checkPath,
  tlsAllowedDnListLine,
  NO_CLIENT,
  AllowedDn,
} from "./install";
import { RetainedInstall } from "./retainedInstall";
import { quoteInput } from "../provider/pki/quote";
import { isIP } from "node:net";
import { normalizeDnsName, normalizeIpAddress } from "../provider/pki/altnames";
import { checkTlsCaFile } from "../provider/pki/acceptance";
import { DEFAULT_LEAF_RENEW_BEFORE_HOURS } from "../provider/handlers/certificate";

/** A CA the fleet creates. */
export interface NewFleetCa {
  /** Stable name of this CA within the fleet (part of its resource name). @default "ca" */
  id?: string;
  /**
   * The CA's subject.
   * @default `organization` and `commonName` both the fleet's `organization` (as the libvirt guide's CA)
   */
  subject?: pulumi.Input<Subject>;
  /** Key type of a new CA (P-256, as the fleet's leaves; see `VirtualizationPkiArgs.keySpec`). @default "ecdsa-p256" */
  keySpec?: pulumi.Input<KeySpec>;
  /** Lifetime of the CA in hours. @default 87600 (10 years) */
  validityHours?: pulumi.Input<number>;
  /**
   * Re-issue (replace) the CA this many hours before it expires; the certificates it issued follow.
   * @default 720 (30 days, the CertificateAuthority's default)
   */
  renewBeforeHours?: pulumi.Input<number>;
}

/** An existing CA, e.g. exported by another stack (`StackReference`). */
export interface ExistingFleetCa {
  /** Stable name of this CA within the fleet. @default "ca" */
  id?: string;
  /** The CA certificate (PEM); it must be one libvirt and QEMU accept in their CA file. */
  certPem: pulumi.Input<string>;
  /** Secret. */
  keyPem: pulumi.Input<string>;
}

/** One CA of the fleet: created here, or given. */
export type FleetCa = NewFleetCa | ExistingFleetCa;

/** A host of the fleet. */
export interface FleetHost {
  /** Short name; part of resource names, so keep it stable. */
  name: string;
  /** The certificate's CN and first DNS name: the name clients use in `qemu+tls://FQDN/system`. */
  fqdn: string;
  /**
   * More DNS names (the short name is added unless `addShortName` is false).
   * @default none besides `fqdn` and `name`
   */
  dnsNames?: string[];
  /** IPv4/IPv6 addresses clients may use. @default none (IP `migrationAddresses` are added) */
  ipAddresses?: string[];
  /**
   * Add the short `name` to the host's certificates as a DNS name.
   * @default true: the short name is also a DNS SAN
   */
  addShortName?: boolean;
  /**
   * Names or addresses peers migrate guests to this host through (`migration_host` in its qemu.conf, `virsh migrate
   * --migrateuri tcp://ADDR` or `--listen-address`). With TLS, the source QEMU checks this host's QEMU certificate
   * against that name (libvirt sets `tls-hostname` to the destination's host, qemu_migration.c:4798-4808), so each
   * is added to the host's certificates (an IP address as an IP SAN). A host with migration addresses needs a QEMU
   * identity for migration: `qemu` must hold "migrate" or "default" (libvirt falls back to
   * `default_tls_x509_cert_dir` for migration, qemu_conf.c:1262-1276). @default none
   */
  migrationAddresses?: string[];
  /**
   * SSH connection (`@pulumi/command` remote ConnectionArgs). Without it: local under `stagingRoot/<name>`.
   * @default none: installed locally under `<stagingRoot>/<name>` (the fleet needs a `stagingRoot`)
   */
  connection?: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /**
   * The host's SSH public key (`ssh-ed25519 AAAA...`, from `/etc/ssh/ssh_host_ed25519_key.pub`): every
   * command for this host (install and delete) talks only to a host presenting it. Required with a
   * `connection` (unless it has `hostKey` itself, or the fleet sets `skipHostKeyVerification`).
   * @default none: the `connection`'s own `hostKey`
   */
  hostKey?: pulumi.Input<string>;
  /** Serve libvirt TLS with the host's server identity (`libvirt-server` layout, key 0600 root). @default true */
  libvirtServer?: boolean;
  /**
   * Connect to peers' libvirtd, e.g. for migration, with the host's own client identity (`libvirt-client`
   * layout, its own key, 0600 root; every host's `tls_allowed_dn_list` admits it, see `peerDnList`). @default true
   */
  libvirtClient?: boolean;
  /**
   * QEMU services given the host's QEMU identity (the combined `qemu` layout: its own key, readable by the
   * QEMU group; a DN no `tls_allowed_dn_list` holds; the host's names as SANs). `[]`: no QEMU identity.
   * @default ["default"]
   */
  qemu?: QemuService[];
  /** Install `keys.psk` (when the fleet has PSK users) into this dir. @default "/etc/pki/qemu-psk" */
  qemuPskDir?: string;
  /** Overrides the fleet's `reloadCommand` for this host; only with a `connection`. @default the fleet's `reloadCommand` */
  reloadCommand?: pulumi.Input<string | string[]>;
  /**
   * This host's check of the certificate its daemon serves, over the fleet's `verifyServed`: `false` turns it
   * off, `true` on; an object is merged over the fleet's. `address` is where the host reaches its own daemon,
   * for a host whose connection goes to a name or address it cannot reach itself at (NAT, a load balancer).
   * Only with a `connection`.
   * @default the fleet's `verifyServed`
   */
  verifyServed?:
    | boolean
    | {
        /** The address the host connects to. @default the connection's `host` */
        address?: string;
        /** The TCP port. @default the fleet's `verifyServed.port`, else 16514 */
        port?: number;
      };
}

/** Where an operator client's credentials go. */
export interface FleetClientInstall {
  /**
   * Names this machine among the client's installs (a-z, 0-9, -): the install is then
   * `<fleet>-client-<client>-<id>` (staged under `client-<client>-<id>`). Needed to install one client on
   * several machines; at most one of a client's installs may leave it out.
   * @default none: the install is `<fleet>-client-<client>`
   */
  id?: string;
  /**
   * SSH connection to the client machine (`@pulumi/command` remote ConnectionArgs).
   * @default none: a local install under `root`, else under `<stagingRoot>/client-<name>`
   */
  connection?: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /**
   * The machine's SSH public key: as {@link FleetHost.hostKey}.
   * @default none: the `connection`'s own `hostKey`
   */
  hostKey?: pulumi.Input<string>;
  /**
   * System-wide install only: make `clientkey.pem` world-readable (0644) for a shared workstation whose
   * local users all act as this client (see `LibvirtClientLayout.keyReadableByAllUsers`). @default false
   */
  keyReadableByAllUsers?: boolean;
  /**
   * Local install under this folder instead of SSH.
   * @default `<stagingRoot>/client-<name>` without a `connection`
   */
  root?: string;
  /**
   * Per-user install (`~user/.pki/libvirt`); without it, the system-wide `libvirt-client` layout.
   * @default none: the system-wide `libvirt-client` layout
   */
  user?: string;
  /**
   * The machine is gone or can no longer be reached (lost, stolen, scrapped): the fleet never contacts it
   * again. Its install stays in the state exactly as it is (every command input ignored, `retainOnDelete`),
   * so revoking the client in the same `up` does not touch it, and removing `install` (or the client) later
   * only forgets it. Its files stay on that machine: revoke the client. @default false
   */
  unreachable?: boolean;
}

/** An operator or management client (a virt-manager workstation, say). */
export interface FleetClient {
  /** Stable name; part of resource names. */
  name: string;
  /** The client's DN (C, ST, L, O, CN): what `tls_allowed_dn_list` matches. May be another resource's output. */
  subject: pulumi.Input<Subject>;
  /**
   * Where to install its credentials: one machine, or several (each with its own `id`). Every install gets
   * the same certificate and key. @default none: only the certificate is created (read it from `clients`)
   */
  install?: FleetClientInstall | FleetClientInstall[];
}

/** A client's installs, each with its property path, resource-name suffix and staging folder. */
function clientInstalls(
  c: FleetClient,
  i: number,
): { install: FleetClientInstall; path: string; suffix: string; label: string }[] {
  if (c.install === undefined) return [];
  const list = Array.isArray(c.install) ? c.install : [c.install];
  return list.map((install, j) => ({
    install,
    path: Array.isArray(c.install) ? `clients[${i}].install[${j}]` : `clients[${i}].install`,
    suffix: install?.id === undefined ? "" : `-${install.id}`,
    label: install?.id === undefined ? `client ${c.name}` : `client ${c.name} (${install.id})`,
  }));
}

/**
 * A revoked client with the reason its CRL entries give. For a client that is no longer in `clients`
 * (its certificate resource is gone), also its certificate's record, copied from the fleet's
 * `revocations` output: then every CRL, also one of a CA added later, keeps listing it until notAfter.
 */
export interface FleetRevokedClient {
  /** The client's name. */
  name: string;
  /** The RFC 5280 reason the CRLs list, e.g. "keyCompromise", "affiliationChanged", "cessationOfOperation". @default "keyCompromise" */
  reason?: RevocationReason;
  /**
   * Only for a client no longer in `clients`: its certificate's serial (hex).
   * @default none: read from the client's certificate (required for a client no longer in `clients`)
   */
  serialNumber?: string;
  /**
   * When it was revoked, ISO 8601: the date a CRL gives when it first lists the serial. Required for a
   * client no longer in `clients`. @default the certificate's `revokedAt` (set when it was marked revoked)
   */
  revokedAt?: string;
  /**
   * Only for a client no longer in `clients`: its certificate's notAfter; it is listed until then.
   * @default none: read from the client's certificate (required for a client no longer in `clients`)
   */
  notAfter?: string;
}

/**
 * A host that left the fleet, and the certificates of its identities that every CRL lists until they
 * expire (copy its entry of the fleet's `retirements` output before removing it from `hosts`). With
 * `peerDnList: "prefix"` this is what cuts it off: its libvirt client identity still matches the hosts' DN
 * prefix, so peers refuse it by the CRL, which `reload: "auto"` re-reads without a restart.
 */
export interface FleetRetiredHost {
  /** The host's name (no longer in `hosts`). */
  name: string;
  /** The RFC 5280 reason the CRLs list. @default "cessationOfOperation" */
  reason?: RevocationReason;
  /** When it was retired, ISO 8601: the date the CRLs give. @default the time each CRL first lists it */
  revokedAt?: string;
  /** Its certificates (server, libvirt client, QEMU): serial (hex) and notAfter (ISO 8601) of each. */
  certificates: {
    /** The certificate's serial number, hex. */
    serialNumber: string;
    /** The certificate's notAfter, ISO 8601: the CRLs list it until then. */
    notAfter: string;
  }[];
}

/** Arguments of {@link VirtualizationPki}. */
export interface VirtualizationPkiArgs {
  /**
   * The trusted CA, or several during a rotation (all go into every host's CA file). Rotation: add the
   * new CA at the end; then set `issuingCa` to it; then remove the old one (README: CA rotation).
   */
  ca: FleetCa | FleetCa[];
  /** The id of the CA that issues certificates. @default the first of `ca` */
  issuingCa?: string;
  /** Organization in default subjects. @default "Virtualization" */
  organization?: string;
  /** The hosts: each gets its identities (one `HostIdentities`) and an install. */
  hosts: FleetHost[];
  /**
   * Operator and management clients: each gets a client certificate, installed where it says.
   * @default none
   */
  clients?: FleetClient[];
  /**
   * Revoked clients: names (reason `keyCompromise`) or `{ name, reason }`, listed in every CRL installed on
   * every host and left out of `tlsAllowedDnList`. A revoked certificate is never re-issued. A client
   * removed from `clients` needs its record `{ name, reason, serialNumber, revokedAt, notAfter }` (from
   * `revocations`) to stay listed in new CRLs. @default none
   */
  revokedClients?: (string | FleetRevokedClient)[];
  /**
   * How each host's `tls_allowed_dn_list` admits its peers (their libvirt client identities):
   * - `"exact"`: every host's DN. Removing a host cuts it off (every daemon restarts to read the list); each
   *   host's block holds the whole list, so with `daemonConfig` the state grows with hosts² and adding a
   *   host restarts every host's daemon.
   * - `"prefix"`: one entry, `"O=<organization>,OU=libvirt-client,CN=*"`: adding or removing a host changes no
   *   other host (no restart, state linear in hosts). It admits EVERY certificate of the trusted CAs with that
   *   DN prefix: earlier certificates of hosts removed before (until they expire), and other fleets' hosts
   *   on a shared CA with the same organization. A removed host must be retired through the CRL
   *   (`retiredHosts`); certificates its host had before a re-issue are not in its record.
   * Server and QEMU identities match neither. Operator clients are always listed by their exact DNs.
   * @default "exact"
   */
  peerDnList?: "prefix" | "exact";
  /** Hosts that left `hosts`: their certificates stay listed in every CRL until they expire. @default none */
  retiredHosts?: FleetRetiredHost[];
  /** QEMU TLS-PSK user names; one `keys.psk` shared by all hosts. @default none: no `keys.psk` */
  pskUsers?: string[];
  /**
   * Key type of host and client keys. Unlike the resources (`"rsa-3072"`), the fleet defaults to P-256: it
   * makes three keys per host, and an RSA-3072 key takes about 0.5 s against 0.1 ms (`npm run bench`: 1000
   * hosts are some 10 minutes of key generation with RSA, under a second with P-256). libvirt logs a
   * harmless `usage does not permit key encipherment` warning for EC leaves. @default "ecdsa-p256"
   */
  keySpec?: pulumi.Input<KeySpec>;
  /** Lifetime of host and client certificates. @default 8760 (one year) */
  validityHours?: pulumi.Input<number>;
  /** Re-issue this long before expiry. @default 720 (30 days; the certificate resources' default) */
  renewBeforeHours?: pulumi.Input<number>;
  /** Lifetime of the CRL (re-signed by `pulumi up` before it runs out). @default 720 */
  crlNextUpdateHours?: pulumi.Input<number>;
  /**
   * Every install's ownership convention (see {@link HostCredentialInstallArgs.ownership}).
   * @default "default"
   */
  ownership?: Ownership;
  /** Owner, group and/or mode by absolute path, on every host and client install. @default none */
  overrides?: Record<string, PathOverride>;
  /**
   * The group QEMU runs as, on every host and client.
   * @default detected on each host: `qemu`, else `libvirt-qemu`
   */
  qemuGroup?: string;
  /**
   * Run on a host after its files changed, as words, e.g. `["systemctl", "restart", "libvirtd"]` (see
   * {@link HostCredentialInstallArgs.reloadCommand}). Only on hosts with a `connection`: a staged host's files
   * are a folder on the machine running Pulumi. @default none
   */
  reloadCommand?: pulumi.Input<string | string[]>;
  /**
   * Hosts and clients without a connection install locally under `<stagingRoot>/<name>`.
   * @default none: every host needs a `connection`, every installed client a `connection` or `root`
   */
  stagingRoot?: string;
  /**
   * Manage libvirt's TLS settings on every host (see {@link HostCredentialInstallArgs.daemonConfig}): the
   * TLS files, the fleet's `tlsAllowedDnList` and the TLS listener, in a block of the daemon's file; the
   * QEMU certificate directories in `qemu.conf`. `false` leaves the files alone (paste `libvirtdConf`).
   * Hosts installed under `stagingRoot` get it only when it is given (declare `daemon` there).
   * @default true for hosts with a `connection`
   */
  daemonConfig?: boolean | DaemonConfig;
  /**
   * After a change on a host (see {@link HostCredentialInstallArgs.reload}): `"auto"` restarts or
   * `server-update-tls`es the daemon, reloads VNC guests and proves the served certificate.
   * @default "auto" for hosts with a `connection`, no `reloadCommand` and `daemonConfig` not false, else "none"
   */
  reload?: "auto" | "none";
  /**
   * How host installs restart the TLS daemon (see {@link HostCredentialInstallArgs.restartCommand}): when given,
   * instead of the service manager. @default the service manager
   */
  restartCommand?: pulumi.Input<string | string[]>;
  /**
   * With `reload: "auto"`: after a reload each host connects to its own libvirt TLS port and checks that the
   * daemon serves the certificate just installed (see {@link HostCredentialInstallArgs.verifyServed}).
   * `false` turns the check off on every host, `{ port }` sets the port. Each host connects to its
   * connection's host, or to its own `hosts[i].verifyServed.address`.
   * @default `{ port: 16514 }`, on every host reloaded with `"auto"`
   */
  verifyServed?:
    | boolean
    | {
        /** The TCP port every host connects to. @default 16514 (libvirt's TLS port) */
        port?: number;
      };
  /**
   * Probe every host over SSH at preview for drift (see {@link HostCredentialInstallArgs.checkDrift}): one
   * `HostProbe` resource per host. @default false
   */
  checkDrift?: boolean;
  /**
   * Connect to hosts and clients without checking their SSH host keys: whoever answers at an address
   * receives its private keys. Only for a throwaway lab. @default false (every connection needs a hostKey)
   */
  skipHostKeyVerification?: boolean;
}

/** What the fleet reports per host. */
export interface FleetHostOutputs {
  /** The host's FQDN: its server certificate's CN. */
  fqdn: string;
  /** SHA-256 fingerprint of the server certificate, `AB:CD:...`. */
  fingerprintSha256: string;
  /** End of validity of the host's identities, ISO 8601. */
  notAfter: string;
  /** When the next `pulumi up` re-issues them, ISO 8601. */
  renewAt: string;
  /** The libvirt server identity's DN. */
  subjectDn: string;
  /**
   * The libvirt client identity's DN (in `tls_allowed_dn_list`); absent with `libvirtClient: false`.
   * @default none with `libvirtClient: false`
   */
  clientDn?: string;
  /**
   * The QEMU identity's DN (in no `tls_allowed_dn_list`); absent with `qemu: []`.
   * @default none with `qemu: []`
   */
  qemuDn?: string;
}

function isExisting(ca: FleetCa): ca is ExistingFleetCa {
  return (ca as ExistingFleetCa).certPem !== undefined;
}

const ID = /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/;

function checkFleetArgs(args: VirtualizationPkiArgs): { cas: FleetCa[]; issuing: string } {
  const cas = Array.isArray(args.ca) ? args.ca : [args.ca];
  if (cas.length === 0)
    throw new PkiError("ca", "is required: give { subject } for a new CA or { certPem, keyPem }");
  const ids = cas.map((c) => c.id ?? "ca");
  ids.forEach((id, i) => {
    if (!ID.test(id))
      throw new PkiError(`ca[${i}].id`, `${quoteInput(id)} is not a short name (a-z, 0-9, -)`);
    if (ids.indexOf(id) !== i)
      throw new PkiError(`ca[${i}].id`, `${quoteInput(id)} is used twice; give each CA its own id`);
  });
  const issuing = args.issuingCa ?? ids[0];
  if (!ids.includes(issuing)) {
    throw new PkiError("issuingCa", `${quoteInput(issuing)} is not the id of a CA in ca (${ids.join(", ")})`);
  }
  if (typeof args.verifyServed === "object" && args.verifyServed !== null) {
    if ("address" in args.verifyServed) {
      throw new PkiError(
        "verifyServed.address",
        "is each host's own: give it as hosts[i].verifyServed.address (the default is the host's connection host)",
      );
    }
    probeOf(args.verifyServed, "localhost");
  }
  if (!Array.isArray(args.hosts) || args.hosts.length === 0) {
    throw new PkiError("hosts", "is required: give at least one { name, fqdn }");
  }
  const names = new Set<string>();
  args.hosts.forEach((h, i) => {
    if (!ID.test(h.name ?? ""))
      throw new PkiError(`hosts[${i}].name`, `${quoteInput(h.name)} is not a short name (a-z, 0-9, -)`);
    if (names.has(h.name)) throw new PkiError(`hosts[${i}].name`, `${quoteInput(h.name)} is used twice`);
    names.add(h.name);
    if (typeof h.fqdn !== "string" || h.fqdn === "")
      throw new PkiError(`hosts[${i}].fqdn`, "is required, e.g. compute1.example.org");
    if (h.verifyServed !== undefined) {
      if (h.connection === undefined) {
        throw new PkiError(
          `hosts[${i}].verifyServed`,
          "a staged host (no connection) has no daemon to check: remove it, or give the host a connection",
        );
      }
      probeOf(h.verifyServed, "localhost", `hosts[${i}].verifyServed`);
    }
    if (h.reloadCommand !== undefined && h.connection === undefined) {
      throw new PkiError(
        `hosts[${i}].reloadCommand`,
        "a staged host (no connection) has its files in a folder on the machine running Pulumi, where the " +
          "command would run: remove it, or give the host a connection",
      );
    }
    for (const s of h.qemu ?? []) {
      if (!(QEMU_SERVICES as readonly string[]).includes(s)) {
        throw new PkiError(`hosts[${i}].qemu`, `${quoteInput(s)} is not one of ${QEMU_SERVICES.join(", ")}`);
      }
    }
    if (h.migrationAddresses !== undefined) {
      if (
        !Array.isArray(h.migrationAddresses) ||
        h.migrationAddresses.some((a) => typeof a !== "string" || a === "")
      ) {
        throw new PkiError(
          `hosts[${i}].migrationAddresses`,
          'must be a list of names or addresses, e.g. ["10.1.0.74"]',
        );
      }
      h.migrationAddresses.forEach((a, j) => migrationAddress(a, `hosts[${i}].migrationAddresses[${j}]`));
      const services = h.qemu ?? ["default"];
      if (h.migrationAddresses.length > 0 && !services.includes("migrate") && !services.includes("default")) {
        throw new PkiError(
          `hosts[${i}].qemu`,
          `has no QEMU identity for migration, but migrationAddresses are given: libvirt reads migrate_tls_x509_cert_dir, ` +
            `else /etc/pki/libvirt-migrate, else default_tls_x509_cert_dir (/etc/pki/qemu), and none would be installed; ` +
            `add "migrate" or "default" to qemu`,
        );
      }
    }
    if (h.qemuPskDir !== undefined) checkPath(`hosts[${i}].qemuPskDir`, h.qemuPskDir);
    if (h.connection !== undefined) {
      checkPinned(h.connection, h.hostKey, args.skipHostKeyVerification, `hosts[${i}].hostKey`);
    } else if (h.hostKey !== undefined) {
      throw new PkiError(
        `hosts[${i}].hostKey`,
        "is only used with a connection; give connection or remove it",
      );
    }
    if (h.connection === undefined && args.stagingRoot === undefined) {
      throw new PkiError(
        `hosts[${i}].connection`,
        "is required unless the fleet has a stagingRoot for local installs",
      );
    }
  });
  const clientNames = new Set<string>();
  (args.clients ?? []).forEach((c, i) => {
    if (!ID.test(c.name ?? ""))
      throw new PkiError(`clients[${i}].name`, `${quoteInput(c.name)} is not a short name (a-z, 0-9, -)`);
    if (clientNames.has(c.name))
      throw new PkiError(`clients[${i}].name`, `${quoteInput(c.name)} is used twice`);
    clientNames.add(c.name);
    const installs = clientInstalls(c, i);
    const ids = new Set<string>();
    for (const { install, path } of installs) {
      if (install === null || typeof install !== "object") {
        throw new PkiError(path, "must be an object ({ connection } or { root })");
      }
      if (install.id !== undefined && !ID.test(install.id)) {
        throw new PkiError(`${path}.id`, `${quoteInput(install.id)} is not a short name (a-z, 0-9, -)`);
      }
      const key = install.id ?? "";
      if (ids.has(key)) {
        throw new PkiError(
          install.id === undefined ? path : `${path}.id`,
          install.id === undefined
            ? "a second install without an id: give each of a client's installs its own id (one may have none)"
            : `${quoteInput(install.id)} is used twice among the client's installs`,
        );
      }
      ids.add(key);
      if (install.connection === undefined && install.root === undefined && args.stagingRoot === undefined) {
        throw new PkiError(path, "give connection or root (or a fleet stagingRoot)");
      }
      // An unreachable install is never contacted again (RetainedInstall): no host key needed.
      if (install.connection !== undefined && install.unreachable !== true) {
        checkPinned(install.connection, install.hostKey, args.skipHostKeyVerification, `${path}.hostKey`);
      }
      if (install.connection === undefined && install.hostKey !== undefined) {
        throw new PkiError(`${path}.hostKey`, "is only used with a connection; give connection or remove it");
      }
      if (install.keyReadableByAllUsers && install.user !== undefined) {
        throw new PkiError(
          `${path}.keyReadableByAllUsers`,
          "applies to the system-wide client key only; a user's own key stays 0600 (remove user or this option)",
        );
      }
    }
  });
  checkRevokedClients(args.revokedClients, clientNames);
  checkRetiredHosts(args.retiredHosts, new Set(args.hosts.map((h) => h.name)));
  if (args.peerDnList !== undefined && !["prefix", "exact"].includes(args.peerDnList)) {
    throw new PkiError("peerDnList", `${quoteInput(args.peerDnList)} is not "prefix" or "exact"`);
  }
  if (args.peerDnList === "prefix") {
    // A client admitted by the hosts' prefix could not be left out of the list when revoked.
    const prefix = peerDnPrefix(args.organization ?? "Virtualization");
    (args.clients ?? []).forEach((c, i) => {
      // An output subject is checked once known, in the DN list every host's install takes (see clientDns).
      if (c.subject === undefined || typeof c.subject !== "object" || pulumi.Output.isInstance(c.subject))
        return;
      if (c.subject instanceof Promise) return;
      checkClientOutsidePrefix(c.subject, prefix, i);
    });
  }
  if (args.stagingRoot !== undefined) checkPath("stagingRoot", args.stagingRoot);
  return { cas, issuing };
}

/** With `peerDnList: "prefix"`: a client whose DN the hosts' entry would admit is refused. */
function checkClientOutsidePrefix(subject: Subject, prefix: string, i: number): void {
  const dn = distinguishedName(normalizeSubject(subject, `clients[${i}].subject`));
  if (dn.startsWith(`${prefix},CN=`)) {
    throw new PkiError(
      `clients[${i}].subject`,
      `its DN ${quoteInput(dn)} is one the hosts' entry "${prefix},CN=*" admits (peerDnList "prefix"); ` +
        "give the client another organizationalUnit",
    );
  }
}

/**
 * The DN prefix of the hosts' libvirt client identities (`O=<organization>,OU=libvirt-client`), as
 * `virt-pki-query-dn` prints it: with `peerDnList: "prefix"`, `"<prefix>,CN=*"` is their one entry.
 */
export function peerDnPrefix(organization: string): string {
  return distinguishedName(
    normalizeSubject({ organization, organizationalUnit: ROLE_UNITS.client }, "organization"),
  );
}

/** Reasons a retired host's certificates may be listed with: final ones. */
const RETIREMENT_REASONS: readonly RevocationReason[] = [
  "cessationOfOperation",
  "keyCompromise",
  "superseded",
  "affiliationChanged",
];

/** `retiredHosts`: names not in `hosts`, listed once, each with certificates, a valid reason and dates. */
function checkRetiredHosts(list: FleetRetiredHost[] | undefined, hostNames: Set<string>): void {
  if (list === undefined) return;
  if (!Array.isArray(list))
    throw new PkiError("retiredHosts", "give a list of the fleet's retirements records");
  const seen = new Set<string>();
  list.forEach((r, i) => {
    const at = `retiredHosts[${i}]`;
    if (!r || typeof r !== "object" || typeof r.name !== "string" || !ID.test(r.name)) {
      throw new PkiError(
        at,
        "give the host's record { name, certificates } from the fleet's retirements output",
      );
    }
    if (hostNames.has(r.name)) {
      throw new PkiError(
        `${at}.name`,
        `"${r.name}" is still in hosts; remove it from hosts when you retire it`,
      );
    }
    if (seen.has(r.name)) throw new PkiError(at, `"${r.name}" is listed twice`);
    seen.add(r.name);
    if (r.reason !== undefined) {
      checkRevocationReason(r.reason, `${at}.reason`);
      // certificateHold and removeFromCRL are lifted when the record goes: a retirement is for good.
      if (!RETIREMENT_REASONS.includes(r.reason)) {
        throw new PkiError(
          `${at}.reason`,
          `give one of ${RETIREMENT_REASONS.join(", ")} (a retirement is final)`,
        );
      }
    }
    if (r.revokedAt !== undefined) isoSecond(r.revokedAt, `${at}.revokedAt`);
    if (!Array.isArray(r.certificates) || r.certificates.length === 0 || r.certificates.length > 8) {
      throw new PkiError(
        `${at}.certificates`,
        "give the host's certificates [{ serialNumber, notAfter }, ...]",
      );
    }
    r.certificates.forEach((c, j) => {
      normalizeSerial(c?.serialNumber, `${at}.certificates[${j}].serialNumber`);
      isoSecond(c?.notAfter, `${at}.certificates[${j}].notAfter`);
    });
  });
}

/** The reason a revoked client given by name alone gets (what the fleet always used before reasons). */
const DEFAULT_REVOCATION_REASON: RevocationReason = "keyCompromise";

/** `revokedClients` as records: names become `{ name, reason: "keyCompromise" }`. */
function revokedRecords(list: VirtualizationPkiArgs["revokedClients"]): FleetRevokedClient[] {
  return (list ?? []).map((r) =>
    typeof r === "string"
      ? { name: r, reason: DEFAULT_REVOCATION_REASON }
      : { ...r, reason: r.reason ?? DEFAULT_REVOCATION_REASON },
  );
}

/** `revokedClients`: known names, or full records for clients that left `clients`; valid reasons and dates. */
function checkRevokedClients(list: VirtualizationPkiArgs["revokedClients"], clientNames: Set<string>): void {
  const seen = new Set<string>();
  (list ?? []).forEach((r, i) => {
    const at = `revokedClients[${i}]`;
    const rec = typeof r === "string" ? { name: r } : r;
    if (!rec || typeof rec !== "object" || typeof rec.name !== "string" || !ID.test(rec.name)) {
      throw new PkiError(
        at,
        'give a client name, or { name, reason }, e.g. { name: "laptop", reason: "keyCompromise" }',
      );
    }
    if (seen.has(rec.name)) throw new PkiError(at, `"${rec.name}" is listed twice`);
    seen.add(rec.name);
    const full = rec as FleetRevokedClient;
    if (full.reason !== undefined) checkRevocationReason(full.reason, `${at}.reason`);
    if (full.revokedAt !== undefined) isoSecond(full.revokedAt, `${at}.revokedAt`);
    if (clientNames.has(rec.name)) {
      for (const k of ["serialNumber", "notAfter"] as const) {
        if (full[k] !== undefined) {
          throw new PkiError(
            `${at}.${k}`,
            `"${rec.name}" is in clients: its certificate gives the ${k}; remove ${k}`,
          );
        }
      }
      return;
    }
    if (full.serialNumber === undefined || full.revokedAt === undefined || full.notAfter === undefined) {
      throw new PkiError(
        at,
        `"${rec.name}" is not in clients; keep a revoked client listed in clients until its certificate has expired, ` +
          "or give its record { name, reason, serialNumber, revokedAt, notAfter } from the fleet's revocations output",
      );
    }
    normalizeSerial(full.serialNumber, `${at}.serialNumber`);
    isoSecond(full.notAfter, `${at}.notAfter`);
  });
}

/**
 * A libvirt/QEMU fleet's PKI: CA(s), per-host server certificates (CN = FQDN, SANs = every name and
 * address; also client certificates for migration), operator clients, a CRL of revoked clients
 * installed everywhere, QEMU PSKs, and one {@link HostCredentialInstall} per host and per installed
 * client. Child names derive from the component name, so URNs are stable across `pulumi up`s.
 */
export class VirtualizationPki extends pulumi.ComponentResource {
  /** The CA file every host trusts (all CAs during a rotation). */
  readonly caCertPem: pulumi.Output<string>;
  /** The issuing CA's certificate. */
  readonly issuingCaCertPem: pulumi.Output<string>;
  /** The CRL file installed on every host (one CRL per trusted CA). */
  readonly crlPem: pulumi.Output<string>;
  /** Per host: FQDN, the server identity's fingerprint, notAfter, renewAt, DN, and the roles' DNs. */
  readonly hosts: pulumi.Output<Record<string, FleetHostOutputs>>;
  /**
   * Per revoked client: what its CRL entries carry (`serialNumber`, `revokedAt`, `reason`, `notAfter`). Copy
   * an entry into `revokedClients` before removing that client from `clients`.
   */
  readonly revocations: pulumi.Output<Record<string, Required<Omit<FleetRevokedClient, "name">>>>;
  /** Per client: DN in libvirt's form, fingerprint, notAfter, revoked. */
  readonly clients: pulumi.Output<
    Record<
      string,
      {
        /** The client's DN as `tls_allowed_dn_list` takes it. */
        distinguishedName: string;
        /** SHA-256 fingerprint of its certificate. */
        fingerprintSha256: string;
        /** End of validity, ISO 8601. */
        notAfter: string;
        /** Whether it is in `revokedClients`. */
        revoked: boolean;
      }
    >
  >;
  /**
   * The earliest `renewAt` across the fleet's certificates, CAs and CRLs (a CRL's is its `nextUpdate` minus
   * its re-sign window, often the soonest): when the next `pulumi up` changes something. Schedule `up` by then.
   */
  readonly earliestRenewAt: pulumi.Output<string>;
  /**
   * `tls_allowed_dn_list` for libvirtd.conf, each entry as libvirt reads it: the hosts' libvirt client
   * identities (one `"...,OU=libvirt-client,CN=*"` entry with `peerDnList: "prefix"`, else each DN) and the
   * clients in good standing.
   */
  readonly tlsAllowedDnList: pulumi.Output<string[]>;
  /**
   * Per host, the record to copy into `retiredHosts` before removing it from `hosts`: the serial and
   * notAfter of each of its certificates.
   */
  readonly retirements: pulumi.Output<Record<string, FleetRetiredHost>>;
  /** The `libvirtd.conf` lines for the hosts. */
  readonly libvirtdConf: pulumi.Output<string>;
  /** The `qemu.conf` lines, per host. */
  readonly qemuConf: pulumi.Output<Record<string, string>>;
  /** The installs, by host name and by `client:<name>` (`client:<name>-<id>` for a client install with an `id`). */
  readonly installs: Record<string, HostCredentialInstall>;
  /** Each host's identities (server, libvirt client, QEMU) in one resource, by host name. */
  readonly hostIdentities: Record<string, HostIdentities>;
  /** The operator clients' certificate resources, by client name. */
  readonly clientCertificates: Record<string, ClientCertificate>;

  constructor(name: string, args: VirtualizationPkiArgs, opts?: pulumi.ComponentResourceOptions) {
    super("virt-pki:index:VirtualizationPki", name, {}, opts);
    const { cas, issuing } = checkFleetArgs(args);
    const parent = { parent: this };
    const organization = args.organization ?? "Virtualization";
    const keySpec = args.keySpec ?? "ecdsa-p256";

    // CAs: created here (a resource per id) or given as PEM.
    const trusted = new Map<string, CaLike | CaCredentials>();
    const caResources: CertificateAuthority[] = [];
    // Each CA's certificate as the trust bundle holds it, checked once (see acceptedCa).
    const acceptedPems: pulumi.Output<string>[] = [];
    cas.forEach((c, i) => {
      const id = c.id ?? "ca";
      if (isExisting(c)) {
        // Checked before anything uses it (its CRL, the leaves it issues, every host's CA file).
        const certPem = pulumi.output(c.certPem).apply((pem) => acceptedCa(args.ca, i, id, pem));
        trusted.set(id, { certPem, keyPem: pulumi.secret(c.keyPem) });
        acceptedPems.push(certPem);
      } else {
        const ca = new CertificateAuthority(
          `${name}-${id}`,
          {
            // CN = organization, as the libvirt guide's CA: virt-pki-validate compares the CA's CN with
            // the organization (O) of the host and client certificates.
            subject: c.subject ?? { organization, commonName: organization },
            keySpec: c.keySpec ?? "ecdsa-p256",
            validityHours: c.validityHours ?? 87600,
            renewBeforeHours: c.renewBeforeHours,
          },
          parent,
        );
        caResources.push(ca);
        trusted.set(id, ca);
        acceptedPems.push(ca.certPem.apply((pem) => acceptedCa(args.ca, i, id, pem)));
      }
    });
    const issuer = trusted.get(issuing)!;
    // The trust bundle every host installs. A CA in it that libvirt or QEMU would refuse (expired, not yet
    // active, not a CA) stops libvirtd from starting on every host: it fails here, naming the CA, and so does
    // everything installed with this file.
    const caIds = [...trusted.keys()];
    const caPems = pulumi.all(acceptedPems);
    const caCertPem = caPems.apply((pems) => pems.map(pemBlock).join(""));
    this.caCertPem = caCertPem;
    this.issuingCaCertPem = pulumi.output(issuer.certPem);

    // Clients first: the CRL revokes some of them, the allowed DN list lists the others.
    const revokedList = revokedRecords(args.revokedClients);
    const revoked = new Set(revokedList.map((r) => r.name));
    const leafDefaults = {
      keySpec,
      validityHours: args.validityHours ?? 8760,
      renewBeforeHours: args.renewBeforeHours,
      // In the issuing CA's last validityHours, hosts and clients are still issued and renewed, ending with
      // the CA (the fleet warns: see warnAboutEndingCas); without it every new host and renewal would fail
      // at check from then until the CA is rotated or renewed.
      truncateToIssuer: true,
    };
    this.clientCertificates = {};
    for (const c of args.clients ?? []) {
      this.clientCertificates[c.name] = new ClientCertificate(
        `${name}-client-${c.name}`,
        // A revoked client is never re-issued (not by renewal, a new CA, keySpec or validityHours): its
        // revoked certificate stays as it is, listed in the CRLs, until it expires.
        {
          ca: issuer,
          subject: c.subject,
          ...leafDefaults,
          autoRenew: revoked.has(c.name) ? false : undefined,
          revoked: revoked.has(c.name) ? true : undefined,
        },
        revoked.has(c.name) ? { ...parent, ignoreChanges: ["ca"] } : parent,
      );
    }

    // What every CRL lists: a client still in `clients` by its certificate (serial and notAfter) and the
    // date it was marked revoked; a client that left `clients` by its record.
    const revokedEntries = revokedList.map((r): RevokedCertificateArgs => {
      const cert = this.clientCertificates[r.name];
      return cert
        ? {
            certPem: cert.certPem,
            reason: r.reason,
            revocationDate: r.revokedAt ?? (cert.revokedAt as pulumi.Output<string>),
          }
        : {
            serialNumber: r.serialNumber,
            reason: r.reason,
            revocationDate: r.revokedAt,
            notAfter: r.notAfter,
          };
    });
    // A retired host's certificates, by their records: listed by every CRL until they expire.
    for (const r of args.retiredHosts ?? []) {
      for (const c of r.certificates) {
        revokedEntries.push({
          serialNumber: c.serialNumber,
          reason: r.reason ?? "cessationOfOperation",
          revocationDate: r.revokedAt,
          notAfter: c.notAfter,
        });
      }
    }
    this.revocations = pulumi.all(
      Object.fromEntries(
        revokedList.map((r) => {
          const cert = this.clientCertificates[r.name];
          const record = cert
            ? pulumi
                .all([cert.serialNumber, cert.revokedAt, cert.notAfter])
                .apply(([serialNumber, revokedAt, notAfter]) => ({
                  serialNumber,
                  revokedAt: r.revokedAt ?? revokedAt ?? "",
                  reason: r.reason!,
                  notAfter,
                }))
            : pulumi.output({
                serialNumber: r.serialNumber!,
                revokedAt: r.revokedAt!,
                reason: r.reason!,
                notAfter: r.notAfter!,
              });
          return [r.name, record];
        }),
      ),
    );

    // One CRL per trusted CA, concatenated into the one CRL file libvirt and QEMU load.
    const crls = [...trusted.entries()].map(
      ([id, ca]) =>
        new CertificateRevocationList(
          `${name}-${id}-crl`,
          {
            ca,
            // Every CA's CRL lists every revoked client: GnuTLS applies a CRL only to certificates of its
            // own issuer, so the entry counts in the CRL of whichever CA issued the client (during a
            // rotation the revoked client's certificate stays with the old CA). Each CRL also keeps what it
            // has listed until the certificate expires, so a client removed from `clients` stays listed.
            revoked: revokedEntries,
            nextUpdateHours: args.crlNextUpdateHours ?? 720,
          },
          parent,
        ),
    );
    const crlPem = pulumi.all(crls.map((c) => c.crlPem)).apply((pems) => pems.map(pemBlock).join(""));
    this.crlPem = crlPem;

    const psk = args.pskUsers?.length
      ? new PreSharedKeys(`${name}-psk`, { usernames: args.pskUsers }, parent)
      : undefined;

    // One resource per host, one key per role: server (O=<org>,CN=<fqdn>), libvirt client
    // (OU=libvirt-client) and QEMU (OU=qemu). See HostIdentities.
    this.hostIdentities = {};
    const reachedAs = new Map<string, string[]>(); // every name and address each host is reached through
    for (const h of args.hosts) {
      const migration = (h.migrationAddresses ?? []).map((a, j) =>
        migrationAddress(a, `hosts[${args.hosts.indexOf(h)}].migrationAddresses[${j}]`),
      );
      const dnsNames = [
        h.fqdn,
        ...(h.addShortName === false ? [] : [h.name]),
        ...(h.dnsNames ?? []),
        ...migration.filter((a) => !a.ip).map((a) => a.name),
      ];
      const ipAddresses = [...(h.ipAddresses ?? []), ...migration.filter((a) => a.ip).map((a) => a.name)];
      // As clients pass them to GnuTLS: names trimmed, addresses without brackets (virURIParse strips them).
      const reached = [
        ...dnsNames.map((n) => (typeof n === "string" ? n.trim() : n)),
        ...ipAddresses.map((a) => ipOrAsIs(a)),
      ];
      reachedAs.set(h.name, [...new Set(reached)]);
      const roles: HostRole[] = [
        ...(h.libvirtClient !== false ? ["client" as const] : []),
        ...((h.qemu ?? ["default"]).length > 0 ? ["qemu" as const] : []),
      ];
      this.hostIdentities[h.name] = new HostIdentities(
        `${name}-${h.name}`,
        {
          ca: issuer,
          subject: { organization, commonName: h.fqdn },
          dnsNames: [...new Set(dnsNames)],
          ipAddresses: [...new Set(ipAddresses)],
          roles,
          keySpec: leafDefaults.keySpec,
          validityHours: leafDefaults.validityHours,
          renewBeforeHours: leafDefaults.renewBeforeHours,
          truncateToIssuer: leafDefaults.truncateToIssuer,
        },
        parent,
      );
    }

    // Peers' libvirt client identities and the clients in good standing. Never a server or QEMU identity.
    const serverDns = args.hosts
      .filter((h) => h.libvirtClient !== false)
      .map((h) => this.hostIdentities[h.name].clientDistinguishedName as pulumi.Output<string>);
    const prefixMode = args.peerDnList === "prefix";
    const clientDns = (args.clients ?? []).flatMap((c, i) => {
      if (revoked.has(c.name)) return [];
      const dn = this.clientCertificates[c.name].distinguishedName;
      if (!prefixMode || !(pulumi.Output.isInstance(c.subject) || c.subject instanceof Promise)) return [dn];
      // An output subject, checked against the prefix once known (at preview when it is known then).
      return [
        pulumi.all([pulumi.output(c.subject), dn]).apply(([subject, d]) => {
          checkClientOutsidePrefix(subject as Subject, peerDnPrefix(organization), i);
          return d;
        }),
      ];
    });
    const peerEntries: pulumi.Input<AllowedDn>[] = prefixMode
      ? serverDns.length > 0
        ? [{ dnPrefix: peerDnPrefix(organization) }]
        : []
      : serverDns;
    const allowed = pulumi.all([...peerEntries, ...clientDns]);
    this.tlsAllowedDnList = allowed.apply((list) =>
      list.map((e) => (typeof e === "string" ? e : `${e.dnPrefix},CN=*`)),
    );
    this.retirements = pulumi.all(
      Object.fromEntries(
        args.hosts.map((h) => {
          const ids = this.hostIdentities[h.name];
          return [
            h.name,
            pulumi
              .all([
                ids.serialNumber,
                ids.notAfter,
                ids.clientSerialNumber,
                ids.clientNotAfter,
                ids.qemuSerialNumber,
                ids.qemuNotAfter,
              ])
              .apply(([s, n, cs, cn, qs, qn]): FleetRetiredHost => ({
                name: h.name,
                reason: "cessationOfOperation",
                certificates: [
                  { serialNumber: s, notAfter: n },
                  ...(cs && cn ? [{ serialNumber: cs, notAfter: cn }] : []),
                  ...(qs && qn ? [{ serialNumber: qs, notAfter: qn }] : []),
                ],
              })),
          ];
        }),
      ),
    );

    this.installs = {};
    const common = {
      ownership: args.ownership,
      overrides: args.overrides,
      qemuGroup: args.qemuGroup,
      skipHostKeyVerification: args.skipHostKeyVerification,
      // A probe per host is one more resource per host (about 1.1 ms and 190 KB each in the SDK): opt-in.
      checkDrift: args.checkDrift === true,
    };
    for (const h of args.hosts) {
      const ids = this.hostIdentities[h.name];
      // Hosts reached over SSH get managed daemon settings and "auto" reloads unless told otherwise;
      // staged hosts (no daemon to reach) only what is given.
      // The fleet's reloadCommand is for hosts it reaches: on a staged host it would run on this machine.
      const reloadCommand = h.reloadCommand ?? (h.connection !== undefined ? args.reloadCommand : undefined);
      const daemonConfig = args.daemonConfig ?? (h.connection !== undefined ? true : undefined);
      const reload =
        args.reload ??
        (h.connection !== undefined && reloadCommand === undefined && args.daemonConfig !== false
          ? "auto"
          : undefined);
      const layouts: LayoutArgs[] = [];
      if (h.libvirtServer !== false) {
        layouts.push({ kind: "libvirt-server", caCertPem, certPem: ids.certPem, keyPem: ids.keyPem, crlPem });
      }
      if (h.libvirtClient !== false) {
        layouts.push({
          kind: "libvirt-client",
          caCertPem,
          certPem: ids.clientCertPem,
          keyPem: ids.clientKeyPem,
          crlPem,
        });
      }
      for (const service of h.qemu ?? ["default"]) {
        // QEMU is the server of incoming migrations and NBD exports and the client of outgoing ones.
        layouts.push({
          kind: "qemu",
          service,
          caCertPem,
          crlPem,
          certPem: ids.qemuCertPem,
          keyPem: ids.qemuKeyPem,
        });
      }
      if (psk)
        layouts.push({ kind: "qemu-psk", dir: h.qemuPskDir ?? "/etc/pki/qemu-psk", keysPsk: psk.keysPsk });
      this.installs[h.name] = new HostCredentialInstall(
        `${name}-${h.name}`,
        {
          ...common,
          ...target(h.connection, h.hostKey, undefined, args.stagingRoot, h.name),
          hostLabel: h.name,
          layouts,
          // Each of the host's certificates must match every name it is reached through, as GnuTLS matches.
          serverNames: reachedAs.get(h.name),
          reloadCommand,
          // With daemon settings, each host's block holds the DN list: with peerDnList "prefix" one entry for
          // all hosts and the clients' DNs; with "exact" every host's DN (hosts x DNs in the state).
          tlsAllowedDnList: daemonConfig ? allowed : undefined,
          // The hosts' daemons only: a client's libvirt serves nothing.
          daemonConfig,
          reload,
          restartCommand: args.restartCommand,
          verifyServed: hostVerifyServed(args.verifyServed, h.verifyServed),
          logCredentialWarnings: false, // gathered below: one warning per message for the fleet
          // Without daemonConfig no tlsAllowedDnList here: the fleet's libvirtdConf carries it.
        },
        parent,
      );
    }
    (args.clients ?? []).forEach((c, i) => {
      for (const { install, suffix, label } of clientInstalls(c, i)) {
        const resourceName = `${name}-client-${c.name}${suffix}`;
        const where = target(
          install.connection,
          install.hostKey,
          install.root,
          args.stagingRoot,
          `client-${c.name}${suffix}`,
        );
        if (install.unreachable) {
          // Never contacted again: the install stays in the state as it is, and is only forgotten when removed.
          new RetainedInstall(resourceName, where, parent);
          continue;
        }
        const cert = this.clientCertificates[c.name];
        const layout: LayoutArgs = install.user
          ? {
              kind: "libvirt-client-user",
              user: install.user,
              caCertPem,
              certPem: cert.certPem,
              keyPem: cert.keyPem,
              crlPem,
            }
          : {
              kind: "libvirt-client",
              caCertPem,
              certPem: cert.certPem,
              keyPem: cert.keyPem,
              crlPem,
              keyReadableByAllUsers: install.keyReadableByAllUsers,
            };
        this.installs[`client:${c.name}${suffix}`] = new HostCredentialInstall(
          resourceName,
          {
            ...common,
            ...where,
            hostLabel: label,
            layouts: [layout],
            // A revoked client's frozen certificate is meant to be refused; after a CA rotation its issuer
            // is not even in the CA file any more. It is installed as it is, not judged.
            checkCredentials: !revoked.has(c.name),
          },
          parent,
        );
      }
    });

    this.hosts = pulumi.all(
      Object.fromEntries(
        args.hosts.map((h) => {
          const s = this.hostIdentities[h.name];
          return [
            h.name,
            pulumi
              .all([
                s.fingerprintSha256,
                s.notAfter,
                s.renewAt,
                s.distinguishedName,
                s.clientDistinguishedName,
                s.qemuDistinguishedName,
              ])
              .apply(([fingerprintSha256, notAfter, renewAt, subjectDn, clientDn, qemuDn]) => ({
                fqdn: h.fqdn,
                fingerprintSha256,
                notAfter,
                renewAt,
                subjectDn,
                ...(clientDn ? { clientDn } : {}),
                ...(qemuDn ? { qemuDn } : {}),
              })),
          ];
        }),
      ),
    );
    this.clients = pulumi.all(
      Object.fromEntries(
        (args.clients ?? []).map((c) => {
          const s = this.clientCertificates[c.name];
          return [
            c.name,
            pulumi
              .all([s.distinguishedName, s.fingerprintSha256, s.notAfter])
              .apply(([distinguishedName, fingerprintSha256, notAfter]) => ({
                distinguishedName,
                fingerprintSha256,
                notAfter,
                revoked: revoked.has(c.name),
              })),
          ];
        }),
      ),
    );
    const renewAts = [
      ...Object.values(this.hostIdentities).map((s) => s.renewAt),
      // A revoked client's certificate is kept as it is until it expires, never renewed: no date of its.
      ...Object.entries(this.clientCertificates)
        .filter(([n]) => !revoked.has(n))
        .map(([, s]) => s.renewAt),
      ...caResources.map((c) => c.renewAt),
      // A CRL's re-sign is often the soonest: its nextUpdate comes every crlNextUpdateHours.
      ...crls.map((c) => c.renewAt),
    ];
    this.earliestRenewAt = pulumi.all(renewAts).apply((t) => [...t].sort()[0]);
    warnOncePerMessage(
      this,
      args.hosts.map((h) => [h.name, this.installs[h.name].credentialWarnings] as const),
    );
    warnAboutEndingCas(
      this,
      args,
      caIds,
      caPems,
      pulumi.output(leafDefaults.renewBeforeHours),
      this.earliestRenewAt,
    );
    warnAboutShortIssuer(
      this,
      caProperty(
        args.ca,
        cas.findIndex((c) => (c.id ?? "ca") === issuing),
      ),
      issuing,
      this.issuingCaCertPem,
      leafDefaults.validityHours,
    );
    const anyHost = args.hosts.find((h) => h.libvirtServer !== false);
    // The install's lines, then the DN list, as HostCredentialInstall would write them (libvirtdConfSnippet).
    this.libvirtdConf = anyHost
      ? pulumi.all([this.installs[anyHost.name].libvirtdConf, allowed]).apply(([conf, dns]) =>
          // An empty list is written as the one entry no DN equals: without the line libvirt checks no DN
          // and admits every certificate of the CA (as libvirtdConfSnippet does for an install).
          conf !== "" && !conf.includes("tls_allowed_dn_list")
            ? `${conf}${tlsAllowedDnListLine(dns.length > 0 ? dns : [NO_CLIENT])}\n`
            : conf,
        )
      : pulumi.output("");
    this.qemuConf = pulumi.all(
      Object.fromEntries(args.hosts.map((h) => [h.name, this.installs[h.name].qemuConf])),
    );
    this.registerOutputs({
      caCertPem: this.caCertPem,
      crlPem: this.crlPem,
      hosts: this.hosts,
      clients: this.clients,
      revocations: this.revocations,
      retirements: this.retirements,
      earliestRenewAt: this.earliestRenewAt,
      tlsAllowedDnList: this.tlsAllowedDnList,
      libvirtdConf: this.libvirtdConf,
      qemuConf: this.qemuConf,
    });
  }
}

/**
 * Warns (on the fleet) about every CA in the trust bundle that ends before the coming renewal window
 * (renewBeforeHours from now) or before the fleet's next planned renewal (`earliestRenewAt`): from its end on,
 * libvirtd and QEMU refuse to start with the CA file, on every host, until an `up` removes it. The first is
 * known in any preview; the second once every certificate's end is known.
 */
function warnAboutEndingCas(
  fleet: pulumi.Resource,
  args: VirtualizationPkiArgs,
  caIds: string[],
  caPems: pulumi.Output<string[]>,
  renewBeforeHours: pulumi.Output<number | undefined>,
  earliestRenewAt: pulumi.Output<string>,
): void {
  const say = (pems: string[], until: Date, reason: string, skipUntil?: Date) => {
    const now = new Date();
    pems.forEach((pem, i) => {
      const ask = (validUntil: Date, validUntilReason: string) =>
        checkTlsCaFile({ caCertPem: pemBlock(pem), now, validUntil, validUntilReason }).problems.filter(
          (x) => x.severity === "warning", // errors fail the trust bundle itself (caCertPem)
        );
      if (skipUntil !== undefined && ask(skipUntil, "").length > 0) return; // warned about already
      for (const p of ask(until, reason)) {
        void pulumi.log.warn(`${caProperty(args.ca, i)} (${caIds[i]}): ${p.message}`, fleet);
      }
    });
  };
  const windowEnd = (hours: number | undefined) =>
    new Date(Date.now() + (hours ?? DEFAULT_LEAF_RENEW_BEFORE_HOURS) * 3_600_000);
  pulumi.all([caPems, renewBeforeHours]).apply(([pems, hours]) => {
    say(pems, windowEnd(hours), `the coming renewal window (renewBeforeHours from now)`);
  });
  pulumi.all([caPems, renewBeforeHours, earliestRenewAt]).apply(([pems, hours, next]) => {
    const at = new Date(next);
    if (Number.isNaN(at.getTime())) return;
    say(pems, at, "the fleet's next planned renewal (earliestRenewAt)", windowEnd(hours));
  });
}

/**
 * A warning on the fleet once the issuing CA ends sooner than a certificate issued now would: from then on
 * new and renewed host and client certificates end with the CA (`truncateToIssuer`), and it must be rotated
 * before its end. Quiet under mocks (no certificate to read).
 */
function warnAboutShortIssuer(
  fleet: pulumi.Resource,
  property: string,
  id: string,
  certPem: pulumi.Output<string>,
  validityHours: pulumi.Input<number>,
): void {
  pulumi.all([certPem, validityHours]).apply(([pem, hours]) => {
    if (typeof pem !== "string" || typeof hours !== "number") return;
    let end: number;
    try {
      end = Date.parse(inspectCertificate(pem).notAfter);
    } catch {
      return; // not a certificate: acceptedCa names the problem
    }
    if (end >= Date.now() + hours * 3_600_000) return;
    void pulumi.log.warn(
      `${property} (${id}): the issuing CA ends ${new Date(end).toISOString()}, before certificates issued now ` +
        `would (validityHours ${hours}): new and renewed host and client certificates end with it. Rotate it ` +
        "before then (README: Renewals and CA rotation)",
      fleet,
    );
  });
}

/**
 * `pem` when libvirt and QEMU accept it in their CA file now (`pki.checkTlsCaFile`); otherwise a PkiError
 * naming the CA (`ca[i]`), which fails the deployment before anything that uses it is registered.
 */
function acceptedCa(ca: VirtualizationPkiArgs["ca"], i: number, id: string, pem: string): string {
  // Under the SDK's mocks (a user's unit tests) an output may be any value; only a text is a CA file.
  if (typeof pem !== "string") return pem;
  const error = checkTlsCaFile({ caCertPem: pemBlock(pem) }).problems.find((x) => x.severity === "error");
  if (error === undefined) return pem;
  throw new PkiError(
    caProperty(ca, i),
    `(${id}) would be refused in every host's CA file: ${error.message}; ` +
      "rotate it out (README: Renewals and CA rotation) or give a valid CA",
  );
}

/** A migration address: an IP address (normalised, brackets and spaces removed) or a DNS name (trimmed). */
function migrationAddress(value: string, property: string): { name: string; ip: boolean } {
  const bare = value.trim().replace(/^\[(.*)\]$/, "$1");
  if (isIP(bare) !== 0 || bare.includes("%")) return { name: normalizeIpAddress(value, property), ip: true };
  return { name: normalizeDnsName(value, property), ip: false };
}

/** An IP address as GnuTLS compares it (normalised); a value that is none is left to HostIdentities' check. */
function ipOrAsIs(value: string): string {
  try {
    return normalizeIpAddress(value);
  } catch {
    return value;
  }
}

/**
 * The hosts' credential warnings, one per distinct message with the hosts it concerns (the first few named):
 * this library's own EC leaves make libvirt 9.0 warn on every host alike, and a thousand copies of one
 * warning would bury any other.
 */
function warnOncePerMessage(
  fleet: pulumi.Resource,
  byHost: readonly (readonly [string, pulumi.Output<string[]>])[],
): void {
  pulumi.all(byHost.map(([, w]) => w)).apply((lists) => {
    const hostsOf = new Map<string, string[]>();
    lists.forEach((list, i) => {
      for (const message of list) hostsOf.set(message, [...(hostsOf.get(message) ?? []), byHost[i][0]]);
    });
    for (const [message, hosts] of hostsOf) {
      const named = hosts.slice(0, 5).join(", ") + (hosts.length > 5 ? ` and ${hosts.length - 5} more` : "");
      void pulumi.log.warn(`${hosts.length} host(s) (${named}): ${message}`, fleet);
    }
  });
}

/** The property a CA of `ca` is given at: `ca` for a single CA, `ca[i]` in a list. */
function caProperty(ca: VirtualizationPkiArgs["ca"], i: number): string {
  return Array.isArray(ca) ? `ca[${i}]` : "ca";
}

/** The PEM text as one block ending with a newline (for concatenating CA and CRL files). */
function pemBlock(pem: string): string {
  if (typeof pem !== "string") return ""; // under mocks, see acceptedCa
  const t = pem.trim();
  return `${t}\n`;
}

type Connection = pulumi.Input<command.types.input.remote.ConnectionArgs>;

/** A connection with the host key pinned (the fleet's `hostKey` wins over one inside the connection). */
function target(
  connection: Connection | undefined,
  hostKey: pulumi.Input<string> | undefined,
  root: string | undefined,
  stagingRoot: string | undefined,
  name: string,
): { connection?: Connection; root?: string } {
  if (connection === undefined) return { root: root ?? `${stagingRoot}/${name}` };
  if (hostKey === undefined) return { connection };
  return { connection: pulumi.all([connection, hostKey]).apply(([c, k]) => ({ ...c, hostKey: k })) };
}

/** Preview-time: a fleet connection needs a host key unless the fleet opted out (known values only). */
function checkPinned(
  connection: Connection,
  hostKey: pulumi.Input<string> | undefined,
  skip: boolean | undefined,
  property: string,
): void {
  // An output connection is checked by HostCredentialInstall once known.
  const known = !pulumi.Output.isInstance(connection) && !(connection instanceof Promise);
  const inner = known ? (connection as { hostKey?: unknown; proxy?: unknown }) : undefined;
  if (hostKey !== undefined) {
    if (
      typeof inner?.hostKey === "string" &&
      typeof hostKey === "string" &&
      inner.hostKey.trim() !== hostKey.trim()
    ) {
      throw new PkiError(property, "differs from connection.hostKey; give the host's key once");
    }
    checkHostKey({ hostKey, proxy: inner?.proxy }, skip, property);
    return;
  }
  if (inner !== undefined) checkHostKey(inner, skip, property);
}
