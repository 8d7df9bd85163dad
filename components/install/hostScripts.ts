/**
 * The two shell texts that run on hosts, the same for every host and plan of this package version:
 * {@link INSTALL_SCRIPT} (the command's `create`) and {@link REMOVE_SCRIPT} (its `delete`). Both read the
 * plan from stdin (see `planData.ts`) and never run any part of it.
 *
 * The code lives in `sh/*.sh` (POSIX sh, checked by shellcheck in the tests): `common.sh` reads and checks
 * the plan, `install.sh` / `remove.sh` do the work as root, and `user.sh` is the part that runs as the user
 * who owns per-user files; it travels inside the others as the single-quoted value of `ustep`. What ships
 * is those files without comment lines and indentation (no here-document body is indented), to keep
 * state and previews small.
 */
import { readFileSync } from "fs";
import { join } from "path";

/**
 * A script file's text without comment lines, blank lines and indentation. Lines between
 * `# >>> install` and `# <<< install` (or `remove`) are kept only in that script's text.
 */
function compact(file: string, what: "install" | "remove", full = false): string {
  const text = readFileSync(join(__dirname, "sh", file), "utf8");
  let keep = true;
  const lines: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^[ \t]+/, "");
    const marker = /^# (>>>|<<<) (install|remove)$/.exec(line);
    if (marker) keep = marker[1] === "<<<" || marker[2] === what;
    else if (keep && full) lines.push(raw);
    else if (keep && line !== "" && !line.startsWith("#")) lines.push(line);
  }
  return lines.join("\n");
}

/**
 * The install or remove script. `full`: with the comments and indentation of the `sh/` files (what
 * shellcheck reads in the tests); otherwise as shipped.
 */
export function scriptText(what: "install" | "remove", full = false): string {
  const user = compact("user.sh", what, full);
  if (user.includes("'")) throw new Error("internal: sh/user.sh must not contain a single quote");
  return [
    `# pulumi-virt-pki ${what} (plan format 1): what to ${what} arrives on stdin as data, never as code.`,
    compact("common.sh", what, full),
    `ustep='
${user}
'`,
    compact(`${what}.sh`, what, full),
    "",
  ].join("\n");
}

/** The install script (`create`): reads the plan and the files from stdin. */
export const INSTALL_SCRIPT: string = scriptText("install");
/** The remove script (`delete`): reads the plan from stdin (delete gets the stored stdin too). */
export const REMOVE_SCRIPT: string = scriptText("remove");
