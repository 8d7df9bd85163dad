/**
 * A fleet whose hosts come from stack config and whose credentials are installed over SSH:
 *
 *   pulumi config set --path 'hosts[0].name' compute1
 *   pulumi config set --path 'hosts[0].fqdn' compute1.example.org
 *   pulumi config set --path 'hosts[0].address' 192.0.2.11
 *   pulumi config set --path 'hosts[0].hostKey' 'ssh-ed25519 AAAA...'  # the host's key, from a channel you trust
 *   pulumi config set --secret sshPrivateKey -- "$(cat ~/.ssh/id_ed25519)"
 *   pulumi up
 *
 * Every config key is read here; see README.md for the list.
 */
import * as pulumi from "@pulumi/pulumi";
import {
  FleetCa,
  FleetClient,
  FleetHost,
  FleetRetiredHost,
  QemuService,
  VirtualizationPki,
  pki,
} from "pulumi-virt-pki";

/** A host as written in stack config. */
interface HostConfig {
  name: string;
  fqdn: string;
  /** Where SSH connects, and an IP SAN of the certificate. */
  address: string;
  /** The host's SSH public key (`ssh-ed25519 AAAA...`): commands talk only to a host presenting it. */
  hostKey?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  port?: number;
  qemu?: QemuService[];
}

/** An operator client as written in stack config; `install` names the workstation to install it on. */
interface ClientConfig {
  name: string;
  subject: pki.Subject;
  install?: { address: string; hostKey?: string; port?: number; user?: string };
}

const config = new pulumi.Config();
const sshUser = config.get("sshUser") ?? "root";
const sshPrivateKey = config.requireSecret("sshPrivateKey");
const connection = (address: string, port?: number, user = sshUser) => ({
  host: address,
  port: port ?? 22,
  user,
  privateKey: sshPrivateKey,
});

const hosts: FleetHost[] = config.requireObject<HostConfig[]>("hosts").map((h) => ({
  name: h.name,
  fqdn: h.fqdn,
  dnsNames: h.dnsNames,
  ipAddresses: [h.address, ...(h.ipAddresses ?? [])],
  qemu: h.qemu,
  connection: connection(h.address, h.port),
  hostKey: h.hostKey,
}));

const clients: FleetClient[] = (config.getObject<ClientConfig[]>("clients") ?? []).map((c) => ({
  name: c.name,
  subject: c.subject,
  install: c.install && {
    connection: connection(c.install.address, c.install.port),
    hostKey: c.install.hostKey,
    // With a user: that user's ~/.pki/libvirt; without: the system-wide client credentials.
    user: c.install.user,
  },
}));

// One CA, or during a rotation several (README: CA rotation): [{ id, commonName }].
const cas: FleetCa[] = (
  config.getObject<{ id: string; commonName: string }[]>("cas") ?? [{ id: "ca", commonName: "" }]
).map((c) => ({
  id: c.id,
  subject: {
    organization: config.get("organization") ?? "Virtualization",
    commonName: c.commonName || (config.get("organization") ?? "Virtualization"),
  },
}));

const fleet = new VirtualizationPki("fleet", {
  organization: config.get("organization"),
  ca: cas,
  issuingCa: config.get("issuingCa"),
  hosts,
  clients,
  revokedClients: config.getObject<string[]>("revokedClients"),
  pskUsers: config.getObject<string[]>("pskUsers"),
  validityHours: config.getNumber("validityHours"),
  renewBeforeHours: config.getNumber("renewBeforeHours"),
  reloadCommand: config.get("reloadCommand"),
  // By default each host's libvirtd.conf (or virtproxyd.conf) and qemu.conf get the TLS settings, and a
  // change is reloaded and proven ("auto"); `manageDaemons: false` leaves the files and daemons alone.
  daemonConfig: config.getBoolean("manageDaemons"),
  reload: config.get<"auto" | "none">("reload"),
  // `false`, or `{ "port": 16600 }`: where each host checks the certificate its daemon serves after a reload.
  verifyServed: config.getObject<boolean | { port?: number }>("verifyServed"),
  peerDnList: config.get<"prefix" | "exact">("peerDnList"),
  // Hosts removed from `hosts`, by the records of the `retirements` output: the CRLs list their certificates.
  retiredHosts: config.getObject<FleetRetiredHost[]>("retiredHosts"),
  checkDrift: config.getBoolean("checkDrift"),
  // A throwaway lab only: connect without checking host keys (README: host keys).
  skipHostKeyVerification: config.getBoolean("skipHostKeyVerification"),
});

/** The CA file every host trusts. */
export const caCertPem = fleet.caCertPem;
/** Per-host fingerprint, notAfter and renewAt. */
export const fleetHosts = fleet.hosts;
/** Client DNs and whether they are revoked. */
export const fleetClients = fleet.clients;
/** When the next `pulumi up` will renew something. */
export const earliestRenewAt = fleet.earliestRenewAt;
/** Paste into libvirtd.conf (or virtproxyd.conf). */
export const libvirtdConf = fleet.libvirtdConf;
/** Paste into qemu.conf, per host. */
export const qemuConf = fleet.qemuConf;
export const tlsAllowedDnList = fleet.tlsAllowedDnList;
/** Per host, the record to copy into `retiredHosts` before removing it from `hosts`. */
export const retirements = fleet.retirements;
/** Per host, the fingerprint of the certificate its daemon serves after the up (with reload "auto"). */
export const servedFingerprints = pulumi.all(
  Object.fromEntries(hosts.map((h) => [h.name, fleet.installs[h.name].servedFingerprint])),
);
