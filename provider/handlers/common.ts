/**
 * What every resource handler shares: the engine's unknown placeholder, state versioning, turning
 * `PkiError`s into check failures, and comparing normalised inputs. Pure: no Pulumi import, so the
 * serialized providers only `require()` this package and the logic lives in versioned code.
 */
import { pemBlocks } from "../pki/asn1";
import { digestKey, Memo } from "../pki/memo";
import { PkiError } from "../pki/errors";
import { inspectCertificate, renewal } from "../pki/inspect";
import { looksLikeKeyMaterial } from "../pki/quote";

/** The placeholder the engine sends for values not known during preview. Never parse it. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/**
 * The state shape version written by this release. Older shapes are upgraded by `upgradeState`.
 * Version 2: the outputs no longer hold renewal policy (`renewBeforeHours`, `autoRenew`, `renewAt`), so a
 * policy edit is a "same" step; the planned end (`notAfter`, a CRL's `nextUpdate`) is an input.
 */
export const STATE_VERSION = 2;

/** Outputs of version-1 states that were renewal policy, not facts; `upgradeState` drops them. */
const V1_POLICY_OUTPUTS: readonly string[] = ["renewBeforeHours", "autoRenew", "renewAt"];

/** A check failure as the dynamic provider interface reports it. */
export interface CheckFailure {
  readonly property: string;
  readonly reason: string;
}

/** The result of a handler's check. */
export interface CheckResult {
  readonly inputs?: Record<string, unknown>;
  readonly failures?: CheckFailure[];
}

/** The result of a handler's diff. */
export interface DiffResult {
  readonly changes: boolean;
  readonly replaces?: string[];
  readonly deleteBeforeReplace?: boolean;
}

/** Whether a value is, or contains, the engine's unknown placeholder. */
export function isUnknown(value: unknown): boolean {
  if (value === UNKNOWN) return true;
  if (Array.isArray(value)) return value.some(isUnknown);
  if (value && typeof value === "object") return Object.values(value).some(isUnknown);
  return false;
}

/** Whether a value is known (not the placeholder and containing none). */
export function isKnown(value: unknown): boolean {
  return !isUnknown(value);
}

/**
 * The inputs that carry a private key: an issuing CA (`ca`, `parent`: `{ certPem, keyPem }`), an imported
 * CA (`import`) and any `keyPem`. A check failure never names them as its property, because the engine
 * prints the value of a named property in clear text: pulumi/pulumi v3.248.0
 * `pkg/resource/deploy/step_generator.go` `issueCheckFailures` formats a failure with a property as
 * `diag.GetResourcePropertyInvalidValueError` ("%v resource '%v': property %v value %v has a problem: %v")
 * with `inputs[failure.Property]`, a `resource.PropertyValue` whose `String()` prints `{%v}` of the
 * underlying value; a secret is a `*resource.Secret` without a `String` method, so its element is printed
 * unmasked (`RedactSecrets` is not used there). A failure without a property is printed with
 * `diag.GetResourceInvalidError` ("%v resource '%v' has a problem: %v"): the reason alone.
 */
const SECRET_INPUTS: readonly string[] = ["ca", "parent", "import", "keyPem"];

/**
 * Runs validations, collecting each `PkiError` as a failure on its top-level property (the rest of the
 * path stays in the message). A failure gets an empty property instead (its reason still starts with the
 * property's name), so that the engine does not print that input's value, when the input carries a
 * private key ({@link SECRET_INPUTS}) or its value looks like key material (a key given in the wrong
 * field, say `keySpec`). Any other error is a bug and is rethrown.
 */
export function collectFailures(checks: Array<() => void>, inputs: object): CheckFailure[] {
  const values = inputs as Record<string, unknown>;
  const failures: CheckFailure[] = [];
  for (const check of checks) {
    try {
      check();
    } catch (e) {
      if (!(e instanceof PkiError)) throw e;
      const top = e.property.split(/[.[:]/)[0];
      const hidden = SECRET_INPUTS.includes(top) || looksLikeKeyMaterial(JSON.stringify(values[top]) ?? "");
      failures.push({ property: hidden ? "" : top, reason: e.message });
    }
  }
  return failures;
}

/** Stable JSON: object keys sorted, `undefined` dropped, so equal inputs compare equal. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v as object)
            .sort()
            .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
            .map((k) => [k, (v as Record<string, unknown>)[k]]),
        )
      : v,
  );
}

/** The names of `keys` whose values differ between olds and news (unknown news count as different). */
export function changedKeys(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
  keys: readonly string[],
): string[] {
  return keys.filter((k) => isUnknown(news[k]) || stableJson(olds[k]) !== stableJson(news[k]));
}

/** Drops keys whose value is undefined or null (Pulumi sends absent optional inputs as missing or null). */
export function compact<T extends Record<string, unknown>>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined && v !== null)) as T;
}

/**
 * Upgrades a stored state to the current shape. Version 1 held renewal policy among its outputs
 * ({@link V1_POLICY_OUTPUTS}); they are dropped (the certificate, key and dates are kept as they are, so
 * nothing is re-issued by an upgrade). States without a version were never written by a release, so they
 * are refused with a clear message instead of being guessed at.
 */
export function upgradeState(state: Record<string, unknown>, kind: string): Record<string, unknown> {
  const version = state.__stateVersion;
  if (version === STATE_VERSION) return state;
  if (version === 1) {
    const upgraded = Object.fromEntries(
      Object.entries(state).filter(([k]) => !V1_POLICY_OUTPUTS.includes(k)),
    );
    return { ...upgraded, __stateVersion: STATE_VERSION };
  }
  if (typeof version === "number" && version > STATE_VERSION) {
    throw new Error(
      `${kind} state version ${version} is newer than this pulumi-virt-pki (${STATE_VERSION}); upgrade the package`,
    );
  }
  throw new Error(`${kind} state has no known version (${JSON.stringify(version)}); re-create the resource`);
}

/** Renewal window check: `renewBeforeHours` must be smaller than the validity it applies to. */
export function checkRenewWindow(validityHours: unknown, renewBeforeHours: unknown): void {
  if (
    typeof validityHours === "number" &&
    typeof renewBeforeHours === "number" &&
    renewBeforeHours >= validityHours
  ) {
    throw new PkiError(
      "renewBeforeHours",
      `${renewBeforeHours} hours is not shorter than validityHours (${validityHours}); the certificate would be due for renewal as soon as it is issued. Lower renewBeforeHours`,
    );
  }
}

/**
 * Whether a stored validity window (`notBefore`/`notAfter`, or a CRL's `thisUpdate`/`nextUpdate`) is
 * due for renewal now: the core's `renewal` decision. Used for states whose inputs hold no planned end
 * (written by version 1), where the diff still decides renewal from the state.
 */
export function renewalDue(notBefore: unknown, notAfter: unknown, renewBeforeHours: number): boolean {
  if (typeof notBefore !== "string" || typeof notAfter !== "string") return false;
  return renewal({ notBefore, notAfter }, new Date(), renewBeforeHours).due;
}

/** Whether olds are a stored resource's inputs (not the empty olds of a create or of a replacement's re-check). */
export function hasOlds(olds: Record<string, unknown> | undefined): boolean {
  return olds !== undefined && Object.keys(olds).some((k) => k !== "__provider");
}

/** How `planEnd` plans a validity end (a certificate's notAfter, a CRL's nextUpdate). */
export interface EndPlan {
  /** The old inputs (empty on create and on the engine's re-check of a replacement). */
  readonly olds: Record<string, unknown>;
  /** The input that holds the planned end, e.g. `notAfter`. */
  readonly key: string;
  /** Renewal window, hours (may be the unknown placeholder in a preview). */
  readonly renewBeforeHours: unknown;
  /** Keep the old end whatever happens: a frozen (revoked) or `autoRenew: false` certificate. */
  readonly frozen: boolean;
  /** The certificate or CRL is re-issued anyway (an input that shapes it, or its CA, changed). */
  readonly reissue: boolean;
  /** The current time. */
  readonly now: Date;
  /** A fresh end, ISO 8601, as create would compute it now; undefined while its inputs are unknown. */
  readonly fresh: () => string | undefined;
}

/**
 * Plans a validity end in check, so that renewal shows as a changed input (`~ notAfter: old => new`):
 * the old end is kept when the resource is frozen, or when it is neither re-issued anyway nor due for
 * renewal (`now >= end - renewBeforeHours`); otherwise a fresh end is planned (the unknown placeholder
 * while it cannot be computed). Old inputs without a planned end (a version-1 state) give undefined: the
 * diff then decides renewal from the stored end, so an upgrade re-issues nothing. Deterministic in
 * (olds, news, now).
 */
export function planEnd(plan: EndPlan): string | undefined {
  const old = plan.olds[plan.key];
  if (hasOlds(plan.olds) && (old === undefined || old === null)) return undefined;
  if (typeof old === "string" && isKnown(old) && !Number.isNaN(Date.parse(old))) {
    if (plan.frozen) return old;
    if (!plan.reissue) {
      const renewBefore = plan.renewBeforeHours;
      if (typeof renewBefore !== "number") return UNKNOWN;
      if (plan.now.getTime() < Date.parse(old) - renewBefore * 3_600_000) return old;
    }
  }
  return plan.fresh() ?? UNKNOWN;
}

/**
 * Whether a planned end differs from the stored one (compared as instants; an unknown plan differs).
 * Undefined when there is no planned end (inputs checked from a version-1 state).
 */
export function endChanged(planned: unknown, stored: unknown): boolean | undefined {
  if (planned === undefined || planned === null) return undefined;
  if (isUnknown(planned) || typeof planned !== "string" || typeof stored !== "string") return true;
  return Date.parse(planned) !== Date.parse(stored);
}

/** The first PEM certificate of a text, whitespace removed, so a CA given with or without its chain compares equal. */
function firstCertificate(pem: unknown): unknown {
  if (typeof pem !== "string") return pem;
  // The linear PEM scanner: a regex here rescans the rest of the text from every BEGIN line.
  const first = pemBlocks(pem).find((b) => b.label === "CERTIFICATE");
  return first ? first.der.toString("base64") : pem;
}

/**
 * Whether another CA's certificate (an issuer, a parent, an imported CA) differs from the one recorded in
 * the state. Only its certificate counts (a still-unknown key does not make it change); an unknown
 * certificate does, since the CA may be being replaced in this same preview.
 */
export function issuerChanged(storedCertPem: unknown, credentials: unknown): boolean {
  if (credentials === undefined || credentials === null) return storedCertPem !== undefined;
  const certPem =
    typeof credentials === "object" ? (credentials as { certPem?: unknown }).certPem : credentials;
  if (isUnknown(certPem)) return true;
  return firstCertificate(storedCertPem) !== firstCertificate(certPem);
}

/**
 * Who signs: the issuing CA's subject and the start of its certificate's SHA-256 fingerprint, e.g.
 * `CN=Libvirt Project (sha256 3F:2A:91:0C:5D:7E:11:B4)`. Check puts it into the inputs of every resource
 * signed by another CA (`issuer`), because the CLI shows a change only as a change of inputs and the CA's
 * own input is one secret: so a renewed or rotated CA reads `~ issuer: "CN=A (sha256 ..)" => "CN=B (..)"`
 * in `pulumi preview --diff`. Unknown while the CA's certificate is (a CA replaced in the same preview);
 * undefined without a readable certificate (its own check reports that).
 */
export function issuerOf(credentials: unknown): string | undefined {
  if (credentials === undefined || credentials === null) return undefined;
  if (isUnknown(credentials)) return UNKNOWN;
  const certPem =
    typeof credentials === "object" ? (credentials as { certPem?: unknown }).certPem : credentials;
  if (isUnknown(certPem)) return UNKNOWN;
  if (typeof certPem !== "string") return undefined;
  // Every check and diff of every certificate asks this of the same few CAs: remembered by the text's digest.
  return issuerMemo.get(digestKey(certPem), () => describeIssuer(certPem));
}

const issuerMemo = new Memo<string | undefined>(32);

function describeIssuer(certPem: string): string | undefined {
  const first = pemBlocks(certPem).find((b) => b.label === "CERTIFICATE");
  if (!first) return undefined;
  try {
    const c = inspectCertificate(
      `-----BEGIN CERTIFICATE-----\n${first.der.toString("base64")}\n-----END CERTIFICATE-----\n`,
    );
    return `${c.subjectDn} (sha256 ${c.fingerprintSha256.slice(0, 23)})`;
  } catch (e) {
    if (e instanceof PkiError) return undefined;
    throw e;
  }
}
