/** Components that place credentials on hosts and declare whole fleets. */
export * from "./hostCredentialInstall";
export * as install from "./install";
export * from "./virtualizationPki";
export type { Layout, Ownership, PathOverride, QemuService } from "./install";
