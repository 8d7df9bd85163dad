/**
 * The configuration lines an operator needs next to the installed files: `libvirtd.conf` (or
 * `virtproxyd.conf`) TLS settings and `qemu.conf` certificate directories. Pure.
 */
import { InstallPlan, Layout, QemuLayout, qemuDir } from "./layouts";

/** Services with a `<service>_tls_x509_verify` setting in libvirt's qemu.conf (none for spice and nbd). */
const VERIFY_SETTING = new Set(["default", "vnc", "chardev", "migrate", "backup"]);

/** Quotes a value for libvirt's config files (double-quoted string). */
export function confString(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * `libvirtd.conf` lines for a host with the `libvirt-server` layout: `ca_file`, `cert_file`, `key_file`,
 * `crl_file` (when a CRL is installed) and `tls_allowed_dn_list` (when given). The paths are libvirt's
 * defaults; stating them keeps the file honest about what the daemon loads. Empty without a server layout.
 */
export function libvirtdConfSnippet(plan: InstallPlan, tlsAllowedDnList?: readonly string[]): string {
  const has = (p: string): boolean => plan.files.some((f) => f.path === p);
  if (!has("/etc/pki/libvirt/servercert.pem")) return "";
  const lines = [
    "# TLS credentials installed by pulumi-virt-pki (libvirt's default paths)",
    `ca_file = ${confString("/etc/pki/CA/cacert.pem")}`,
    `cert_file = ${confString("/etc/pki/libvirt/servercert.pem")}`,
    `key_file = ${confString("/etc/pki/libvirt/private/serverkey.pem")}`,
  ];
  if (has("/etc/pki/CA/cacrl.pem")) lines.push(`crl_file = ${confString("/etc/pki/CA/cacrl.pem")}`);
  if (tlsAllowedDnList !== undefined && tlsAllowedDnList.length > 0) {
    lines.push(`tls_allowed_dn_list = [${tlsAllowedDnList.map(confString).join(", ")}]`);
  }
  return lines.join("\n") + "\n";
}

/**
 * `qemu.conf` lines for the QEMU layouts: `default_tls_x509_cert_dir` and `<service>_tls_x509_cert_dir`
 * for every directory, with `<service>_tls_x509_verify = 1` where a server endpoint is installed and libvirt has that
 * setting (the server then requires client certificates). Empty without QEMU layouts.
 */
export function qemuConfSnippet(layouts: readonly Layout[]): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const layout of layouts) {
    if (layout.kind !== "qemu" && layout.kind !== "qemu-server" && layout.kind !== "qemu-client") continue;
    const q = layout as QemuLayout;
    const service = q.service ?? "default";
    if (seen.has(service)) continue;
    seen.add(service);
    lines.push(`${service}_tls_x509_cert_dir = ${confString(qemuDir(q))}`);
    if (q.kind !== "qemu-client" && VERIFY_SETTING.has(service)) lines.push(`${service}_tls_x509_verify = 1`);
  }
  if (lines.length === 0) return "";
  return ["# QEMU TLS directories installed by pulumi-virt-pki", ...lines].join("\n") + "\n";
}
