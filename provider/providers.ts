/**
 * The dynamic provider objects. Pulumi serializes each into the resource's `__provider` input; to keep
 * that text small and stable they capture nothing but `require` and strings, and call the pure,
 * versioned handlers of the installed package (`pulumi-virt-pki/handlers`). A program run from a
 * checkout of this repository (not installed under node_modules) falls back to this build's file.
 */
import * as pulumi from "@pulumi/pulumi";
import type * as Handlers from "./handlers";

/** Where this build's handlers are, for programs run from a checkout rather than node_modules. */
const HANDLERS_FALLBACK = `${__dirname}/handlers/index.js`;

type HandlerName =
  "certificateAuthority" | "certificate" | "hostIdentities" | "revocationList" | "preSharedKeys";

/** Builds the provider for one handler. Each method resolves the handlers when the engine calls it. */
function providerFor(name: HandlerName): pulumi.dynamic.ResourceProvider {
  const fallback = HANDLERS_FALLBACK;
  const handlers = (): (typeof Handlers)[HandlerName] => {
    let mod: typeof Handlers;
    // require() at call time, not import: the serialized closure must capture no module objects.
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      mod = require("pulumi-virt-pki/handlers");
    } catch {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      mod = require(fallback);
    }
    return mod[name];
  };
  return {
    check: async (olds, news) => handlers().check(olds, news as never),
    diff: async (id, olds, news) => handlers().diff(id, olds, news as never),
    create: async (inputs) => handlers().create(inputs as never),
    update: async (id, olds, news) => handlers().update(id, olds, news as never),
    read: async (id, props) => handlers().read(id, props),
    delete: async (id, props) => handlers().remove(id, props),
  };
}

/** Provider of CertificateAuthority. */
export const certificateAuthorityProvider = providerFor("certificateAuthority");
/** Provider of ServerCertificate and ClientCertificate. */
export const certificateProvider = providerFor("certificate");
/** Provider of HostIdentities. */
export const hostIdentitiesProvider = providerFor("hostIdentities");
/** Provider of CertificateRevocationList. */
export const revocationListProvider = providerFor("revocationList");
/** Provider of PreSharedKeys. */
export const preSharedKeysProvider = providerFor("preSharedKeys");
