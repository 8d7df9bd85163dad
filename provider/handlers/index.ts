/**
 * The resource handlers the serialized dynamic providers call: `require("pulumi-virt-pki/handlers")`.
 * Keeping the logic here (not in the serialized closures) means a provider string stored in old state
 * runs the installed, version-aware handlers, which upgrade older state shapes.
 */
export * as certificateAuthority from "./certificateAuthority";
export * as certificate from "./certificate";
export * as hostIdentities from "./hostIdentities";
export * as revocationList from "./revocationList";
export * as preSharedKeys from "./preSharedKeys";
export * as hostProbe from "./hostProbe";
export { STATE_VERSION, UNKNOWN } from "./common";
