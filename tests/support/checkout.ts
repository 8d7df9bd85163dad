/**
 * Copies of the compiled build laid out as users have it, for tests that move, upgrade or run them: a
 * checkout of this repository, and a project with the package under node_modules. Run `npm run build`
 * first; every copy is made from `bin/`.
 */
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  symlinkSync,
} from "node:fs";
import { join } from "node:path";

/** The repository root. */
export const ROOT = join(__dirname, "..", "..");

/** The real node_modules of the repository (a worktree's may be a symlink). */
export const NODE_MODULES = realpathSync(join(ROOT, "node_modules"));

/** Throws unless the compiled build is there. */
export function requireBuild(): void {
  if (!existsSync(join(ROOT, "bin", "provider", "handlers", "index.js"))) {
    throw new Error("run `npm run build` first: this test copies the compiled build");
  }
}

/** Copies the compiled package as npm installs it (package.json `files`: bin/index.*, bin/provider, bin/components). */
export function copyPackage(to: string): void {
  mkdirSync(join(to, "bin"), { recursive: true });
  cpSync(join(ROOT, "package.json"), join(to, "package.json"));
  for (const f of readdirSync(join(ROOT, "bin")).filter((f) => f.startsWith("index."))) {
    cpSync(join(ROOT, "bin", f), join(to, "bin", f));
  }
  cpSync(join(ROOT, "bin", "provider"), join(to, "bin", "provider"), { recursive: true });
  cpSync(join(ROOT, "bin", "components"), join(to, "bin", "components"), { recursive: true });
}

/** Makes `dir` a built checkout: Pulumi.yaml, package.json, bin/ with the examples, node_modules (linked). */
export function makeCheckout(dir: string): void {
  copyPackage(dir);
  cpSync(join(ROOT, "Pulumi.yaml"), join(dir, "Pulumi.yaml"));
  cpSync(join(ROOT, "bin", "examples"), join(dir, "bin", "examples"), { recursive: true });
  symlinkSync(NODE_MODULES, join(dir, "node_modules"));
}

/**
 * Makes `dir` a user's project: its node_modules links every dependency of this repository and holds a
 * copy of the package at each path of `packages` (relative to `dir`), marked with the given version.
 */
export function makeProject(dir: string, packages: Record<string, string>): void {
  mkdirSync(join(dir, "node_modules"), { recursive: true });
  for (const name of readdirSync(NODE_MODULES)) {
    if (name !== ".bin") symlinkSync(join(NODE_MODULES, name), join(dir, "node_modules", name));
  }
  for (const [at, version] of Object.entries(packages)) {
    copyPackage(join(dir, at));
    markVersion(join(dir, at), version);
  }
}

/** Makes a copied package's handlers print `virt-pki handlers <version> loaded` on stderr when loaded. */
export function markVersion(pkg: string, version: string): void {
  appendFileSync(
    join(pkg, "bin", "provider", "handlers", "index.js"),
    `\nconsole.error("virt-pki handlers ${version} loaded");\n`,
  );
}
