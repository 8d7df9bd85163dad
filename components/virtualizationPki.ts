/**
 * `VirtualizationPki`: the whole TLS PKI of a libvirt/QEMU fleet in one declaration: the CA (or CAs,
 * during a rotation), a server certificate per host, client certificates, the CRL, QEMU pre-shared
 * keys, and the installs on every host.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { CaCredentials, CaLike } from "../provider/caCredentials";
import { CertificateAuthority } from "../provider/certificateAuthority";
import { CertificateRevocationList } from "../provider/certificateRevocationList";
import { ClientCertificate } from "../provider/clientCertificate";
import { PreSharedKeys } from "../provider/preSharedKeys";
import { ServerCertificate } from "../provider/serverCertificate";
import { PkiError } from "../provider/pki/errors";
import { KeySpec } from "../provider/pki/keys";
import { Subject } from "../provider/pki/names";
import { HostCredentialInstall, LayoutArgs } from "./hostCredentialInstall";
import { Ownership, PathOverride, QEMU_SERVICES, QemuService, checkPath } from "./install";
import { quoteInput } from "../provider/pki/quote";

/** A CA the fleet creates. */
export interface NewFleetCa {
  /** Stable name of this CA within the fleet (part of its resource name). @default "ca" */
  id?: string;
  /** @default { organization: <fleet organization>, commonName: <fleet organization> } (the libvirt guide's CA) */
  subject?: pulumi.Input<Subject>;
  /** @default "ecdsa-p256" */
  keySpec?: pulumi.Input<KeySpec>;
  /** @default 87600 (10 years) */
  validityHours?: pulumi.Input<number>;
  renewBeforeHours?: pulumi.Input<number>;
}

/** An existing CA, e.g. exported by another stack (`StackReference`). */
export interface ExistingFleetCa {
  /** Stable name of this CA within the fleet. @default "ca" */
  id?: string;
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
  /** More DNS names (the short name is added unless `addShortName` is false). */
  dnsNames?: string[];
  /** IPv4/IPv6 addresses clients may use. */
  ipAddresses?: string[];
  /** @default true: the short name is also a DNS SAN */
  addShortName?: boolean;
  /** SSH connection (`@pulumi/command` remote ConnectionArgs). Without it: local under `stagingRoot/<name>`. */
  connection?: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /** Serve libvirt TLS (`libvirt-server` layout). @default true */
  libvirtServer?: boolean;
  /** Act as a libvirt client, e.g. for migration to other hosts (`libvirt-client`). @default true */
  libvirtClient?: boolean;
  /** QEMU services with their own credentials (the combined `qemu` layout, both roles). @default ["default"] */
  qemu?: QemuService[];
  /** Install `keys.psk` (when the fleet has PSK users) into this dir. @default "/etc/pki/qemu-psk" */
  qemuPskDir?: string;
  /** Overrides the fleet's `reloadCommand` for this host. */
  reloadCommand?: pulumi.Input<string | string[]>;
}

/** Where an operator client's credentials go. */
export interface FleetClientInstall {
  connection?: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /** Local install under this folder instead of SSH. */
  root?: string;
  /** Per-user install (`~user/.pki/libvirt`); without it, the system-wide `libvirt-client` layout. */
  user?: string;
}

/** An operator or management client (a virt-manager workstation, say). */
export interface FleetClient {
  /** Stable name; part of resource names. */
  name: string;
  /** The client's DN (C, ST, L, O, CN): what `tls_allowed_dn_list` matches. */
  subject: Subject;
  /** Where to install its credentials; none: only the certificate is created (read it from `clients`). */
  install?: FleetClientInstall;
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
  hosts: FleetHost[];
  clients?: FleetClient[];
  /** Names of clients whose certificates are revoked: listed in the CRL installed on every host. */
  revokedClients?: string[];
  /** QEMU TLS-PSK user names; one `keys.psk` shared by all hosts. */
  pskUsers?: string[];
  /** Key type of host and client keys. @default "ecdsa-p256" */
  keySpec?: pulumi.Input<KeySpec>;
  /** Lifetime of host and client certificates. @default 8760 (one year) */
  validityHours?: pulumi.Input<number>;
  /** Re-issue this long before expiry. @default 720 (30 days; the certificate resources' default) */
  renewBeforeHours?: pulumi.Input<number>;
  /** Lifetime of the CRL (re-signed by `pulumi up` before it runs out). @default 720 */
  crlNextUpdateHours?: pulumi.Input<number>;
  ownership?: Ownership;
  overrides?: Record<string, PathOverride>;
  qemuGroup?: string;
  /** Run on a host after its files changed, as words, e.g. `["systemctl", "restart", "libvirtd"]` (see {@link HostCredentialInstallArgs.reloadCommand}). @default none */
  reloadCommand?: pulumi.Input<string | string[]>;
  /** Hosts and clients without a connection install locally under `<stagingRoot>/<name>`. */
  stagingRoot?: string;
}

/** What the fleet reports per host. */
export interface FleetHostOutputs {
  fqdn: string;
  fingerprintSha256: string;
  notAfter: string;
  renewAt: string;
  subjectDn: string;
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
    for (const s of h.qemu ?? []) {
      if (!(QEMU_SERVICES as readonly string[]).includes(s)) {
        throw new PkiError(`hosts[${i}].qemu`, `${quoteInput(s)} is not one of ${QEMU_SERVICES.join(", ")}`);
      }
    }
    if (h.qemuPskDir !== undefined) checkPath(`hosts[${i}].qemuPskDir`, h.qemuPskDir);
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
    if (
      c.install &&
      c.install.connection === undefined &&
      c.install.root === undefined &&
      args.stagingRoot === undefined
    ) {
      throw new PkiError(`clients[${i}].install`, "give connection or root (or a fleet stagingRoot)");
    }
  });
  (args.revokedClients ?? []).forEach((n, i) => {
    if (!clientNames.has(n)) {
      throw new PkiError(
        `revokedClients[${i}]`,
        `${quoteInput(n)} is not in clients; keep a revoked client listed in clients until its certificate has expired`,
      );
    }
  });
  if (args.stagingRoot !== undefined) checkPath("stagingRoot", args.stagingRoot);
  return { cas, issuing };
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
  /** Per host: FQDN, fingerprint, notAfter, renewAt, DN. */
  readonly hosts: pulumi.Output<Record<string, FleetHostOutputs>>;
  /** Per client: DN in libvirt's form, fingerprint, notAfter, revoked. */
  readonly clients: pulumi.Output<
    Record<
      string,
      { distinguishedName: string; fingerprintSha256: string; notAfter: string; revoked: boolean }
    >
  >;
  /** The earliest renewAt across the fleet's certificates and CAs: when the next `pulumi up` changes something. */
  readonly earliestRenewAt: pulumi.Output<string>;
  /** `tls_allowed_dn_list` for libvirtd.conf: the hosts (migration) and the non-revoked clients. */
  readonly tlsAllowedDnList: pulumi.Output<string[]>;
  /** The `libvirtd.conf` lines for the hosts. */
  readonly libvirtdConf: pulumi.Output<string>;
  /** The `qemu.conf` lines, per host. */
  readonly qemuConf: pulumi.Output<Record<string, string>>;
  /** The installs, by host name and by `client:<name>`. */
  readonly installs: Record<string, HostCredentialInstall>;
  /** The certificate resources, for consumers that need more than the outputs above. */
  readonly serverCertificates: Record<string, ServerCertificate>;
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
    for (const c of cas) {
      const id = c.id ?? "ca";
      if (isExisting(c)) {
        trusted.set(id, { certPem: c.certPem, keyPem: pulumi.secret(c.keyPem) });
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
      }
    }
    const issuer = trusted.get(issuing)!;
    const caCertPem = pulumi
      .all([...trusted.values()].map((c) => c.certPem))
      .apply((pems) => pems.map(pemBlock).join(""));
    this.caCertPem = caCertPem;
    this.issuingCaCertPem = pulumi.output(issuer.certPem);

    // Clients first: the CRL revokes some of them, the allowed DN list lists the others.
    const revoked = new Set(args.revokedClients ?? []);
    const leafDefaults = {
      keySpec,
      validityHours: args.validityHours ?? 8760,
      renewBeforeHours: args.renewBeforeHours,
    };
    this.clientCertificates = {};
    for (const c of args.clients ?? []) {
      this.clientCertificates[c.name] = new ClientCertificate(
        `${name}-client-${c.name}`,
        // A revoked client is never re-issued (not by renewal, not by a new CA): its revoked certificate
        // stays as it is, listed in the CRL, until it expires.
        {
          ca: issuer,
          subject: c.subject,
          ...leafDefaults,
          autoRenew: revoked.has(c.name) ? false : undefined,
        },
        revoked.has(c.name) ? { ...parent, ignoreChanges: ["ca"] } : parent,
      );
    }

    // One CRL per trusted CA, concatenated into the one CRL file libvirt and QEMU load.
    const crls = [...trusted.entries()].map(
      ([id, ca]) =>
        new CertificateRevocationList(
          `${name}-${id}-crl`,
          {
            ca,
            // Every CA's CRL lists every revoked client: GnuTLS applies a CRL only to certificates of its
            // own issuer, so the entry counts in the CRL of whichever CA issued the client (during a
            // rotation the revoked client's certificate stays with the old CA).
            revoked: [...revoked].map((n) => ({
              certPem: this.clientCertificates[n].certPem,
              reason: "keyCompromise" as const,
            })),
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

    this.serverCertificates = {};
    for (const h of args.hosts) {
      const dnsNames = [h.fqdn, ...(h.addShortName === false ? [] : [h.name]), ...(h.dnsNames ?? [])];
      this.serverCertificates[h.name] = new ServerCertificate(
        `${name}-${h.name}`,
        {
          ca: issuer,
          subject: { organization, commonName: h.fqdn },
          dnsNames: [...new Set(dnsNames)],
          ipAddresses: h.ipAddresses ?? [],
          // Migration: a host connects to its peers' libvirtd with the same identity.
          alsoClient: h.libvirtClient !== false,
          ...leafDefaults,
        },
        parent,
      );
    }

    const serverDns = args.hosts
      .filter((h) => h.libvirtClient !== false)
      .map((h) => this.serverCertificates[h.name].distinguishedName);
    const clientDns = (args.clients ?? [])
      .filter((c) => !revoked.has(c.name))
      .map((c) => this.clientCertificates[c.name].distinguishedName);
    this.tlsAllowedDnList = pulumi.all([...serverDns, ...clientDns]);

    this.installs = {};
    const common = {
      ownership: args.ownership,
      overrides: args.overrides,
      qemuGroup: args.qemuGroup,
    };
    for (const h of args.hosts) {
      const cert = this.serverCertificates[h.name];
      const key = cert.keyPem as pulumi.Output<string>;
      const layouts: LayoutArgs[] = [];
      if (h.libvirtServer !== false) {
        layouts.push({ kind: "libvirt-server", caCertPem, certPem: cert.certPem, keyPem: key, crlPem });
      }
      if (h.libvirtClient !== false) {
        layouts.push({ kind: "libvirt-client", caCertPem, certPem: cert.certPem, keyPem: key, crlPem });
      }
      for (const service of h.qemu ?? ["default"]) {
        // A host without the client role has a server-only certificate: it cannot be QEMU's client identity.
        const kind = h.libvirtClient === false ? "qemu-server" : "qemu";
        layouts.push({ kind, service, caCertPem, crlPem, certPem: cert.certPem, keyPem: key });
      }
      if (psk)
        layouts.push({ kind: "qemu-psk", dir: h.qemuPskDir ?? "/etc/pki/qemu-psk", keysPsk: psk.keysPsk });
      this.installs[h.name] = new HostCredentialInstall(
        `${name}-${h.name}`,
        {
          ...common,
          ...target(h.connection, undefined, args.stagingRoot, h.name),
          hostLabel: h.name,
          layouts,
          reloadCommand: h.reloadCommand ?? args.reloadCommand,
          tlsAllowedDnList: this.tlsAllowedDnList,
        },
        parent,
      );
    }
    for (const c of args.clients ?? []) {
      if (!c.install) continue;
      const cert = this.clientCertificates[c.name];
      const key = cert.keyPem as pulumi.Output<string>;
      const layout: LayoutArgs = c.install.user
        ? {
            kind: "libvirt-client-user",
            user: c.install.user,
            caCertPem,
            certPem: cert.certPem,
            keyPem: key,
            crlPem,
          }
        : { kind: "libvirt-client", caCertPem, certPem: cert.certPem, keyPem: key, crlPem };
      this.installs[`client:${c.name}`] = new HostCredentialInstall(
        `${name}-client-${c.name}`,
        {
          ...common,
          ...target(c.install.connection, c.install.root, args.stagingRoot, `client-${c.name}`),
          hostLabel: `client ${c.name}`,
          layouts: [layout],
        },
        parent,
      );
    }

    this.hosts = pulumi.all(
      Object.fromEntries(
        args.hosts.map((h) => {
          const s = this.serverCertificates[h.name];
          return [
            h.name,
            pulumi
              .all([s.fingerprintSha256, s.notAfter, s.renewAt, s.distinguishedName])
              .apply(([fingerprintSha256, notAfter, renewAt, subjectDn]) => ({
                fqdn: h.fqdn,
                fingerprintSha256,
                notAfter,
                renewAt,
                subjectDn,
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
      ...Object.values(this.serverCertificates).map((s) => s.renewAt),
      ...Object.values(this.clientCertificates).map((s) => s.renewAt),
      ...caResources.map((c) => c.renewAt),
    ];
    this.earliestRenewAt = pulumi.all(renewAts).apply((t) => [...t].sort()[0]);
    const anyHost = args.hosts.find((h) => h.libvirtServer !== false);
    this.libvirtdConf = anyHost ? this.installs[anyHost.name].libvirtdConf : pulumi.output("");
    this.qemuConf = pulumi.all(
      Object.fromEntries(args.hosts.map((h) => [h.name, this.installs[h.name].qemuConf])),
    );
    this.registerOutputs({
      caCertPem: this.caCertPem,
      crlPem: this.crlPem,
      hosts: this.hosts,
      clients: this.clients,
      earliestRenewAt: this.earliestRenewAt,
      tlsAllowedDnList: this.tlsAllowedDnList,
      libvirtdConf: this.libvirtdConf,
      qemuConf: this.qemuConf,
    });
  }
}

/** The PEM text as one block ending with a newline (for concatenating CA and CRL files). */
function pemBlock(pem: string): string {
  const t = pem.trim();
  return `${t}\n`;
}

function target(
  connection: pulumi.Input<command.types.input.remote.ConnectionArgs> | undefined,
  root: string | undefined,
  stagingRoot: string | undefined,
  name: string,
): { connection?: pulumi.Input<command.types.input.remote.ConnectionArgs>; root?: string } {
  if (connection !== undefined) return { connection };
  return { root: root ?? `${stagingRoot}/${name}` };
}
