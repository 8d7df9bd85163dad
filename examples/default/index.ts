/** `pulumi up` in a fresh clone runs this (see the root Pulumi.yaml). */
import { declareFleet } from "./fleet";

const fleet = declareFleet();
/** The CA certificate, for hosts and for other stacks (StackReference). */
export const caCertPem = fleet.caCertPem;
/** The CRL every host installs. */
export const crlPem = fleet.crlPem;
/** Entries for libvirtd.conf's tls_allowed_dn_list. */
export const tlsAllowedDnList = fleet.tlsAllowedDnList;
/** Per-host certificate fingerprint, expiry and renewal time. */
export const hosts = fleet.hosts;
/** The next time a `pulumi up` will renew something. */
export const earliestRenewAt = fleet.earliestRenewAt;
/** The libvirtd.conf and qemu.conf lines for the installed files. */
export const libvirtdConf = fleet.libvirtdConf;
export const qemuConf = fleet.qemuConf;
