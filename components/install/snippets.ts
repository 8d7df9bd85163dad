/**
 * The configuration lines an operator needs next to the installed files: `libvirtd.conf` (or
 * `virtproxyd.conf`) TLS settings and `qemu.conf` certificate directories. Pure.
 */
import { PkiError } from "../../provider/pki/errors";
import { InstallPlan, Layout, QemuLayout, qemuDir } from "./layouts";

/** Services with a `<service>_tls_x509_verify` setting in libvirt's qemu.conf (none for spice and nbd). */
const VERIFY_SETTING = new Set(["default", "vnc", "chardev", "migrate", "backup"]);

/** The first C0 control character (line breaks included) or DEL in `value`, if any. */
function controlCharacter(value: string): string | undefined {
  for (const c of value) if (c.charCodeAt(0) < 0x20 || c === "\u007f") return c;
  return undefined;
}

/**
 * Writes a value as a double-quoted string of libvirt's config files, byte for byte. libvirt 9.0's parser
 * (src/util/virconf.c, `virConfParseString`) has no escapes: a `"..."` string is everything up to the next
 * `"`, and a line end inside it is an error. So a backslash is written as is (doubling it would change the
 * value), and a value holding `"` or a control character is refused: it cannot be written. `property` names
 * the input in the error. @default "value"
 */
export function confString(value: string, property = "value"): string {
  const bad = value.includes('"') ? '"' : controlCharacter(value);
  if (bad !== undefined) {
    throw new PkiError(
      property,
      `${JSON.stringify(value)} contains ${JSON.stringify(bad)}, which libvirt's config parser cannot read ` +
        "inside a string (it has no escapes)",
    );
  }
  return `"${value}"`;
}

/**
 * A `tls_allowed_dn_list` entry that admits every certificate of the trusted CAs whose DN starts with
 * `dnPrefix` followed by its CN: written as `"<dnPrefix>,CN=*"`. The prefix itself is exact text, as
 * `virt-pki-query-dn` prints it (e.g. `O=Virtualization,OU=libvirt-client`), with no `*` or `?`. The fleet
 * admits its hosts' libvirt client identities this way, so that adding or removing a host changes no host's
 * settings (a host leaves by revocation: its certificates go into the CRL, which `server-update-tls` re-reads).
 */
export interface AllowedDnPrefix {
  /** The DN up to (not including) the CN, exactly as `virt-pki-query-dn` prints it. */
  dnPrefix: string;
}

/** An entry of `tls_allowed_dn_list`: a client's exact DN, or every DN of a prefix (see {@link AllowedDnPrefix}). */
export type AllowedDn = string | AllowedDnPrefix;

/**
 * The `tls_allowed_dn_list = [...]` line: each entry exactly as `virt-pki-query-dn` prints the DN (GnuTLS's
 * own backslashes kept single). libvirt matches entries with `g_pattern_match_simple`
 * (src/rpc/virnettlscontext.c), where `*` and `?` are wildcards that cannot be escaped, so an entry holding
 * either is refused: it would admit clients other than the one named. The one wildcard written is the CN of
 * an {@link AllowedDnPrefix} (`"<prefix>,CN=*"`). Entries with `"` or control characters are refused by
 * {@link confString}.
 */
export function tlsAllowedDnListLine(dns: readonly AllowedDn[]): string {
  const entries = dns.map((entry, i) => {
    const prefix = typeof entry === "object" && entry !== null;
    const property = prefix ? `tlsAllowedDnList[${i}].dnPrefix` : `tlsAllowedDnList[${i}]`;
    const dn: unknown = prefix ? (entry as AllowedDnPrefix).dnPrefix : entry;
    if (typeof dn !== "string" || dn === "") {
      throw new PkiError(
        property,
        prefix ? "must be a non-empty DN prefix string" : "must be a non-empty DN string",
      );
    }
    if (prefix && (!dn.includes("=") || dn.endsWith(",") || /(^|,)CN=/.test(dn))) {
      throw new PkiError(
        property,
        `${JSON.stringify(dn)} is not a DN prefix before the CN, e.g. "O=Virtualization,OU=libvirt-client"`,
      );
    }
    const glob = /[*?]/.exec(dn)?.[0];
    if (glob !== undefined) {
      throw new PkiError(
        property,
        `${JSON.stringify(dn)} contains ${JSON.stringify(glob)}, which libvirt matches as a wildcard; ` +
          (prefix ? "give the prefix as exact text" : "list exact DNs (a certificate's distinguishedName)"),
      );
    }
    return confString(prefix ? `${dn},CN=*` : dn, property);
  });
  return `tls_allowed_dn_list = [${entries.join(", ")}]`;
}

/**
 * The one entry of an empty `tls_allowed_dn_list`: text with no `=`, which no certificate's DN (GnuTLS prints
 * `TYPE=value` pairs) can equal, and no wildcard.
 */
export const NO_CLIENT = "no client is admitted";

/**
 * `libvirtd.conf` lines for a host with the `libvirt-server` layout: `ca_file`, `cert_file`, `key_file`,
 * `crl_file` (when a CRL is installed) and `tls_allowed_dn_list` (when given; see {@link tlsAllowedDnListLine},
 * which throws on an entry libvirt would misread). The paths are libvirt's
 * defaults; stating them keeps the file honest about what the daemon loads. Empty without a server layout.
 */
export function libvirtdConfSnippet(plan: InstallPlan, tlsAllowedDnList?: readonly AllowedDn[]): string {
  const has = (p: string): boolean => plan.files.some((f) => f.path === p);
  if (!has("/etc/pki/libvirt/servercert.pem")) return "";
  const lines = [
    "# TLS credentials installed by pulumi-virt-pki (libvirt's default paths)",
    `ca_file = ${confString("/etc/pki/CA/cacert.pem")}`,
    `cert_file = ${confString("/etc/pki/libvirt/servercert.pem")}`,
    `key_file = ${confString("/etc/pki/libvirt/private/serverkey.pem")}`,
  ];
  if (has("/etc/pki/CA/cacrl.pem")) lines.push(`crl_file = ${confString("/etc/pki/CA/cacrl.pem")}`);
  if (tlsAllowedDnList !== undefined) {
    // An empty list admits nobody. Without the line libvirt would check no DN at all and admit every
    // certificate of the trusted CAs (virnettlscontext.c checks the list only when it has one).
    lines.push(tlsAllowedDnListLine(tlsAllowedDnList.length > 0 ? tlsAllowedDnList : [NO_CLIENT]));
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
