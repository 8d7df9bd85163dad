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
import { CheckResult, collectFailures, DiffResult, hasOlds, isKnown, stableJson } from "./common";

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

/** Whether the role list differs between two inputs (an unknown list counts as different). */
function rolesChanged(oldRoles: unknown, newRoles: unknown): boolean {
  return !isKnown(newRoles) || stableJson(oldRoles ?? []) !== stableJson(checkRoles(newRoles));
}

/**
 * Validates the server identity's inputs (the roles' are derived from them), the role list, and that no
 * role's DN equals the server's (a subject whose OU is already a role's). Failures go through
 * `collectFailures`, so none names an input that holds key text. Plans one end (`notAfter`) for all the
 * identities, as the certificate handler plans a leaf's; a change of roles re-issues all, so it plans a
 * fresh end. `now` @default now
 */
export function check(
  olds: Record<string, unknown>,
  news: HostIdentitiesInputs,
  now: Date = new Date(),
): CheckResult {
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
  // The stored inputs as the server leaf's (they carry no profile; their roles are compared here).
  const leafOlds = hasOlds(olds) ? { ...olds, profile: "server" } : olds;
  const leaf = certificate.check(leafOlds, serverLeaf(news), {
    now,
    reissue: hasOlds(olds) && rolesChanged(olds.roles, roles),
  });
  if (leaf.failures) return leaf;
  const { profile, ...inputs } = leaf.inputs!;
  void profile;
  return { inputs: roles.length ? { ...inputs, roles } : inputs };
}

/** Issues the server identity and one more key and certificate per role, all ending at the same time. */
export async function create(
  raw: HostIdentitiesInputs,
): Promise<{ id: string; outs: Record<string, unknown> }> {
  const roles = checkRoles(raw.roles);
  const server = await certificate.create(serverLeaf(raw));
  const outs: Record<string, unknown> = { ...server.outs };
  delete outs.profile;
  if (roles.length) outs.roles = roles;
  // The planned end, or (inputs without one) the server's: one window for all identities.
  const shared = { ...raw, notAfter: server.outs.notAfter as string };
  for (const role of roles) {
    const issued = (await certificate.create(roleLeaf(shared, role))).outs;
    for (const key of ROLE_OUTPUTS) {
      outs[`${role}${key[0].toUpperCase()}${key.slice(1)}`] = issued[key];
    }
  }
  return { id: server.id, outs };
}

/** Replacement when the server identity would be re-issued (all identities are) or the roles changed. */
export function diff(id: string, oldState: Record<string, unknown>, news: HostIdentitiesInputs): DiffResult {
  const leaf = certificate.diff(id, { ...oldState, profile: "server" }, serverLeaf(news));
  let replaces = [...(leaf.replaces ?? [])];
  // New roles re-issue all identities with a new end: the end is their consequence, not a cause.
  if (rolesChanged(oldState.roles, news.roles))
    replaces = [...replaces.filter((r) => r !== "notAfter"), "roles"];
  return { changes: leaf.changes || replaces.length > 0, ...(replaces.length ? { replaces } : {}) };
}

/** Never called by the engine (diff reports replacements only: HostIdentities refuses `revoked`). */
export async function update(
  id: string,
  oldState: Record<string, unknown>,
  news: HostIdentitiesInputs,
): Promise<{ outs: Record<string, unknown> }> {
  return certificate.update(id, oldState, serverLeaf(news));
}

/** Refresh: the state (upgraded) is the truth; no inputs are returned, so the engine keeps the stored ones. */
export async function read(
  id: string,
  state: Record<string, unknown>,
): Promise<{ id: string; props: Record<string, unknown> }> {
  return certificate.read(id, state);
}

/** Nothing outside the state to remove; the version is checked. */
export async function remove(id: string, state: Record<string, unknown>): Promise<void> {
  await certificate.remove(id, state);
}
