/**
 * The two shell texts that run on hosts, the same for every host and plan of this package version:
 * {@link INSTALL_SCRIPT} (the command's `create`) and {@link REMOVE_SCRIPT} (its `delete`). Both read the
 * plan from stdin (see `planData.ts`) and never run any part of it.
 *
 * The code lives in `sh/*.sh` (POSIX sh, checked by shellcheck in the tests): `prologue.sh` is shared,
 * `install.sh` reads and checks the plan and runs `files.sh`, the file engine, as root for root's files and
 * as each user for the user's (it travels inside the install text as the single-quoted value of `fx`);
 * `remove.sh` removes what this generation still claims on the host. What ships is those files without
 * comment lines and indentation (no here-document body is indented), to keep state and previews small.
 */
import { readFileSync } from "fs";
import { join } from "path";

/** A script file's text; without comment lines, blank lines and indentation unless `full`. */
function text(file: string, full: boolean): string {
  const lines = readFileSync(join(__dirname, "sh", file), "utf8")
    .replace(/\n$/, "")
    .split("\n");
  if (full) return lines.join("\n");
  return lines
    .map((l) => l.replace(/^[ \t]+/, ""))
    .filter((l) => l !== "" && !l.startsWith("#"))
    .join("\n");
}

/**
 * The install or remove script. `full`: with the comments and indentation of the `sh/` files (what
 * shellcheck reads in the tests); otherwise as shipped.
 */
export function scriptText(what: "install" | "remove", full = false): string {
  const parts = [
    `# pulumi-virt-pki ${what} (plan format 1): what to ${what} arrives on stdin as data, never as code.`,
    text("prologue.sh", full),
  ];
  if (what === "install") {
    const engine = text("files.sh", full);
    if (engine.includes("'")) throw new Error("internal: sh/files.sh must not contain a single quote");
    parts.push(`fx='\n${engine}\n'`);
  }
  parts.push(text(`${what}.sh`, full), "");
  return parts.join("\n");
}

/** The install script (`create`): reads the plan and the files from stdin. */
export const INSTALL_SCRIPT: string = scriptText("install");
/** The remove script (`delete`): reads the plan from stdin (delete gets the stored stdin too). */
export const REMOVE_SCRIPT: string = scriptText("remove");
