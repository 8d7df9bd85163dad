/**
 * A host stack: reads the CA from the CA stack (`pulumi config set caStack org/shared-ca-ca/prod`) and
 * declares its hosts' certificates and installs with it. Several host stacks (one per site, say) can
 * share one CA stack.
 */
import * as pulumi from "@pulumi/pulumi";
import { FleetHost, VirtualizationPki } from "pulumi-virt-pki";

const config = new pulumi.Config();
const caStack = new pulumi.StackReference(config.require("caStack"));
const sshPrivateKey = config.requireSecret("sshPrivateKey");

const hosts: FleetHost[] = config
  .requireObject<{ name: string; fqdn: string; address: string; hostKey: string; port?: number }[]>("hosts")
  .map((h) => ({
    name: h.name,
    fqdn: h.fqdn,
    ipAddresses: [h.address],
    connection: {
      host: h.address,
      port: h.port ?? 22,
      user: config.get("sshUser") ?? "root",
      privateKey: sshPrivateKey,
    },
    // The host's SSH public key: only a host presenting it gets the keys.
    hostKey: h.hostKey,
  }));

const site = new VirtualizationPki("site", {
  ca: {
    id: "shared",
    certPem: caStack.requireOutput("caCertPem") as pulumi.Output<string>,
    keyPem: caStack.requireOutput("caKeyPem") as pulumi.Output<string>,
  },
  hosts,
  // Default: each host's libvirtd.conf/qemu.conf get the TLS settings and changes are reloaded and proven.
  daemonConfig: config.getBoolean("manageDaemons"),
  reload: config.get<"auto" | "none">("reload"),
});

/** Per-host fingerprint and expiry. */
export const siteHosts = site.hosts;
export const tlsAllowedDnList = site.tlsAllowedDnList;
