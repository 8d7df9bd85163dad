/**
 * Check/diff/create/update/read/delete for HostIdentities: one host's libvirt server identity plus, per
 * role, its own key and certificate (libvirt client, QEMU), issued together by one resource so that a
 * fleet pays one resource per host, not one per role. Each identity is a leaf issued by the certificate
 * handler; this module only composes them. Pure; see common.ts.
 */
import { PkiError } from "../pki/errors";
import type { LeafProfile } from "../pki/leaf";
import { distinguishedName, normalizeSubject, Subject } from "../pki/names";
import * as certificate from "./certificate";
import type { CertificateInputs } from "./certificate";
import { CheckResult, collectFailures, DiffResult, isKnown, stableJson } from "./common";

/** The identities a host may have besides its libvirt server identity. */
export const HOST_ROLES = ["client", "qemu"] as const;
/** A host role with its own key: `client` (libvirt client, for migration), `qemu` (QEMU's TLS endpoints). */
export type HostRole = (typeof HOST_ROLES)[number];

/**
 * The organizational unit that tells each role's DN apart from the server identity's
 * (`O=<org>,CN=<fqdn>`): `O=<org>,OU=libvirt-client,CN=<fqdn>` and `O=<org>,OU=qemu,CN=<fqdn>`. Only the
 * client identity's DN goes into `tls_allowed_dn_list`, so a QEMU key cannot manage any libvirtd.
 */
export const ROLE_UNITS: Readonly<Record<HostRole, string>> = { client: "libvirt-client", qemu: "qemu" };

/**
 * Key usages per role: the libvirt client identity is a TLS client only; the QEMU identity is both,
 * since QEMU is the server of an incoming migration or NBD export and the client of an outgoing one.
 */
const ROLE_PROFILES: Readonly<Record<HostRole, LeafProfile>> = { client: "client", qemu: "server+client" };

/** HostIdentities inputs: a leaf's (subject and names, no template or CSR) plus the extra roles. */
export interface HostIdentitiesInputs extends Omit<CertificateInputs, "profile" | "template" | "csrPem"> {
  /** Extra identities, each with its own key. @default [] */
  roles?: HostRole[];
}

/** The outputs each extra role adds to the state, prefixed with the role (`clientCertPem`, ...). */
const ROLE_OUTPUTS = [
  "certPem",
  "keyPem",
  "serialNumber",
  "notAfter",
  "fingerprintSha256",
  "distinguishedName",
] as const;

function checkRoles(roles: unknown): HostRole[] {
  if (roles === undefined) return [];
  if (!Array.isArray(roles) || roles.some((r) => !(HOST_ROLES as readonly unknown[]).includes(r))) {
    throw new PkiError("roles", `give a list of ${HOST_ROLES.map((r) => JSON.stringify(r)).join(", ")}`);
  }
  if (new Set(roles).size !== roles.length) throw new PkiError("roles", "lists a role twice");
  return HOST_ROLES.filter((r) => roles.includes(r));
}

/** The server identity's leaf inputs. */
function serverLeaf(news: HostIdentitiesInputs): CertificateInputs {
  const { roles, ...leaf } = news;
  void roles;
  return { ...leaf, profile: "server" };
}

/** One role's leaf inputs: the host's subject with the role's OU, the host's names unless a pure client. */
function roleLeaf(news: HostIdentitiesInputs, role: HostRole): CertificateInputs {
  const server = serverLeaf(news);
  const subject: Subject = { ...(news.subject ?? {}), organizationalUnit: ROLE_UNITS[role] };
  const profile = ROLE_PROFILES[role];
  return profile === "client"
    ? { ...server, profile, subject, dnsNames: undefined, ipAddresses: undefined }
    : { ...server, profile, subject };
}

/**
 * Validates the server identity's inputs (the roles' are derived from them), the role list, and that no
 * role's DN equals the server's (a subject whose OU is already a role's). Failures go through
 * `collectFailures`, so none names an input that holds key text.
 */
export function check(olds: Record<string, unknown>, news: HostIdentitiesInputs): CheckResult {
  const record = news as unknown as Record<string, unknown>;
  let roles: HostRole[] = [];
  const own = collectFailures(
    [
      ...["template", "csrPem", "profile", "autoRenew", "revoked"].map((refused) => () => {
        if (record[refused] !== undefined) {
          throw new PkiError(refused, `HostIdentities takes subject and names, not ${refused}`);
        }
      }),
      () => {
        roles = isKnown(news.roles) ? checkRoles(news.roles) : (news.roles as HostRole[]);
      },
      () => {
        if (news.subject === undefined || !isKnown(news.subject)) return;
        const server = distinguishedName(normalizeSubject(news.subject));
        for (const role of HOST_ROLES) {
          if (distinguishedName(normalizeSubject(roleLeaf(news, role).subject)) === server) {
            throw new PkiError(
              "subject.organizationalUnit",
              `makes the server identity's DN that of the ${role} role (OU ${ROLE_UNITS[role]}); use another OU or none`,
            );
          }
        }
      },
    ],
    news,
  );
  if (own.length) return { failures: own };
  const leaf = certificate.check(olds, serverLeaf(news));
  if (leaf.failures) return leaf;
  const { profile, ...inputs } = leaf.inputs!;
  void profile;
  return { inputs: roles.length ? { ...inputs, roles } : inputs };
}

/** Issues the server identity and one more key and certificate per role. */
export async function create(
  raw: HostIdentitiesInputs,
): Promise<{ id: string; outs: Record<string, unknown> }> {
  const roles = checkRoles(raw.roles);
  const server = await certificate.create(serverLeaf(raw));
  const outs: Record<string, unknown> = { ...server.outs };
  delete outs.profile;
  if (roles.length) outs.roles = roles;
  for (const role of roles) {
    const issued = (await certificate.create(roleLeaf(raw, role))).outs;
    for (const key of ROLE_OUTPUTS) {
      outs[`${role}${key[0].toUpperCase()}${key.slice(1)}`] = issued[key];
    }
  }
  return { id: server.id, outs };
}

/** Replacement when the server identity would be re-issued (all identities are) or the roles changed. */
export function diff(id: string, oldState: Record<string, unknown>, news: HostIdentitiesInputs): DiffResult {
  const leaf = certificate.diff(id, { ...oldState, profile: "server" }, serverLeaf(news));
  const replaces = [...(leaf.replaces ?? [])];
  if (!isKnown(news.roles) || stableJson(oldState.roles ?? []) !== stableJson(checkRoles(news.roles))) {
    replaces.push("roles");
  }
  return { changes: leaf.changes || replaces.length > 0, ...(replaces.length ? { replaces } : {}) };
}

/** In-place update: only the renewal window changed. */
export async function update(
  id: string,
  oldState: Record<string, unknown>,
  news: HostIdentitiesInputs,
): Promise<{ outs: Record<string, unknown> }> {
  return certificate.update(id, oldState, serverLeaf(news));
}

/** Refresh: the state is the truth; renewAt is recomputed. */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown>; inputs: Record<string, unknown> }> {
  const r = await certificate.read(id, { ...state, profile: "server" });
  const { profile, ...inputs } = r.inputs;
  void profile;
  const { profile: p, ...props } = r.props;
  void p;
  return { id, props, inputs: state.roles ? { ...inputs, roles: state.roles } : inputs };
}

/** Nothing outside the state to remove; the version is checked. */
export async function remove(id: string, state: Record<string, unknown>): Promise<void> {
  await certificate.remove(id, state);
}
