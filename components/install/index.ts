/**
 * Pure install planning: layouts, the plan as data for the fixed host scripts, the manifest check, config
 * snippets.
 *
 * @module
 */
export * from "./layouts";
export * from "./planData";
export * from "./acceptance";
export * from "./hostScripts";
export * from "./manifest";
export * from "./digests";
export * from "./snippets";
export * from "./daemonConfig";
