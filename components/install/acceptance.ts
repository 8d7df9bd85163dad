/**
 * What libvirt and QEMU will say of an install's credentials, asked before anything reaches the host: each
 * TLS layout's files, exactly as they would be written, go through `pki.checkTlsCredentials` for every role
 * the layout installs them for. Pure: no Pulumi import.
 */
import { checkTlsCredentials, TlsConsumer, TlsRole } from "../../provider/pki/acceptance";
import { PkiError } from "../../provider/pki/errors";
import { InstallPlan, Layout, planInstall, PlanOptions } from "./layouts";

/** What the consumers would refuse (`errors`, one per layout) and what they would log (`warnings`). */
export interface LayoutAcceptance {
  /** One per refused layout, naming it (`layouts[i]`) and, in the message, the files. */
  errors: PkiError[];
  /** Each as `layouts[i] (<consumer> <role>): <message>`. */
  warnings: string[];
}

/** Options of {@link checkLayoutCredentials}. */
export interface LayoutAcceptanceOptions extends PlanOptions {
  /** Every name and address clients use to reach this host: checked against its server certificates. @default none checked */
  serverNames?: readonly string[];
  /** The time to check at. @default now */
  now?: Date;
}

/** The (consumer, role) pairs a layout kind installs credentials for; none for PSK and custom files. */
function rolesOf(kind: Layout["kind"]): [TlsConsumer, TlsRole][] {
  switch (kind) {
    case "libvirt-server":
      return [["libvirt", "server"]];
    case "libvirt-client":
    case "libvirt-client-user":
      return [["libvirt", "client"]];
    case "qemu-server":
      return [["qemu", "server"]];
    case "qemu-client":
      return [["qemu", "client"]];
    case "qemu":
      return [
        ["qemu", "server"],
        ["qemu", "client"],
      ];
    default:
      return [];
  }
}

/** The planned file of `role` (`ca-cert`, `server-cert`, ...) in a one-layout plan. */
function fileOf(plan: InstallPlan, role: string): { path: string; content: string } | undefined {
  return plan.files.find((f) => f.role === role);
}

/**
 * Asks `checkTlsCredentials` about every TLS layout of an install, with the contents and paths the plan
 * would write. A layout the plan itself refuses is left to {@link planInstall}'s own error.
 */
export function checkLayoutCredentials(
  layouts: readonly Layout[],
  options: LayoutAcceptanceOptions = {},
): LayoutAcceptance {
  const errors: PkiError[] = [];
  const warnings: string[] = [];
  layouts.forEach((layout, i) => {
    const from = `layouts[${i}]`;
    const roles = rolesOf(layout.kind);
    if (roles.length === 0) return;
    const plan = planInstall([layout], { ownership: options.ownership, overrides: options.overrides });
    const refused: string[] = [];
    for (const [consumer, role] of roles) {
      const ca = fileOf(plan, "ca-cert");
      const cert = fileOf(plan, `${role}-cert`);
      const key = fileOf(plan, `${role}-key`);
      if (!ca || !cert || !key) continue;
      const verdict = checkTlsCredentials({
        consumer,
        role,
        caCertPem: ca.content,
        certPem: cert.content,
        keyPem: key.content,
        serverNames: role === "server" && options.serverNames?.length ? options.serverNames : undefined,
        now: options.now,
        files: { caCert: ca.path, cert: cert.path, key: key.path },
      });
      for (const p of verdict.problems) {
        if (p.severity === "error") refused.push(`${consumer} ${role}: ${p.message}`);
        else warnings.push(`${from} (${consumer} ${role}): ${p.message}`);
      }
    }
    if (refused.length) {
      errors.push(new PkiError(from, `would be refused: ${refused.join("; ")}`));
    }
  });
  return { errors, warnings };
}
