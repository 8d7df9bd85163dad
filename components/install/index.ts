/** Pure install planning: layouts, the install/remove scripts and their manifest, config snippets. */
export * from "./layouts";
export * from "./script";
export * from "./snippets";
