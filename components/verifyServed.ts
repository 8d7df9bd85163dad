/**
 * Where a host checks which certificate its libvirt daemon serves after a reload
 * (`HostCredentialInstallArgs.verifyServed`), and how a fleet's setting and a host's combine. Not part of the
 * package's API: the components call it.
 */
import { PkiError } from "../provider/pki/errors";
import { quoteInput } from "../provider/pki/quote";
import { LIBVIRT_TLS_PORT } from "./install/daemonConfig";

/** A `verifyServed` setting: off, on with defaults, or where. */
export type VerifyServedSetting = boolean | { address?: string; port?: number } | undefined;

/**
 * The address and port a host connects to for the check: the given ones, else the connection's host and
 * libvirt's TLS port; none when off. A bad address or port is refused naming `property`.
 */
export function probeOf(
  verify: VerifyServedSetting,
  host: string,
  property = "verifyServed",
): { address: string; port: number } | undefined {
  if (verify === false) return undefined;
  const v = typeof verify === "object" && verify !== null ? verify : {};
  const port = v.port ?? LIBVIRT_TLS_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PkiError(`${property}.port`, `${quoteInput(port)} is not a TCP port (1-65535)`);
  }
  const address = v.address ?? host;
  // The address is a word of the host script's `openssl s_client -connect`: a name or an IP, nothing else.
  if (typeof address !== "string" || !/^[A-Za-z0-9.:-]+$/.test(address) || address.startsWith("-")) {
    throw new PkiError(`${property}.address`, `${quoteInput(address)} is not a host name or address`);
  }
  return { address, port };
}

/**
 * A fleet host's setting: the host's own over the fleet's. `false` on either side turns the check off unless
 * the host turns it on again; a host's object is merged over the fleet's (`{ port }` from the fleet,
 * `{ address }` from the host).
 */
export function hostVerifyServed(fleet: VerifyServedSetting, host: VerifyServedSetting): VerifyServedSetting {
  if (host === undefined) return fleet;
  if (host === false) return false;
  const base = typeof fleet === "object" && fleet !== null ? fleet : {};
  return host === true ? base : { ...base, ...host };
}
