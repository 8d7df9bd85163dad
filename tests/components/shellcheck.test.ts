/**
 * shellcheck (a real static checker for POSIX sh) reads the host scripts as they are assembled, with
 * their comments and directives, and the user part alone: no warning or error is allowed.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { INSTALL_SCRIPT, REMOVE_SCRIPT, scriptText } from "../../components/install";

function shellcheck(text: string): { code: number | null; output: string } {
  const r = spawnSync("shellcheck", ["--shell=sh", "--severity=warning", "-"], {
    input: text,
    encoding: "utf8",
  });
  if (r.error)
    throw new Error(
      `shellcheck could not run (is it installed? .ci/install-system-packages installs it): ${r.error.message}`,
    );
  return { code: r.status, output: r.stdout + r.stderr };
}

describe("shellcheck", () => {
  it.each(["install", "remove"] as const)("the %s script has no warning", (what) => {
    const r = shellcheck(scriptText(what, true));
    expect(r.output).toBe("");
    expect(r.code).toBe(0);
  });

  it("the file engine (run as root and as each user, inside the install text) has no warning", () => {
    const r = shellcheck(readFileSync(join(__dirname, "../../components/install/sh/files.sh"), "utf8"));
    expect(r.output).toBe("");
    expect(r.code).toBe(0);
  });

  // The shipped texts are stripped of comments and indentation (directives go with them): shellcheck at
  // error level, and both shells' parsers, must still take them as they are sent.
  it.each([
    ["install", INSTALL_SCRIPT],
    ["remove", REMOVE_SCRIPT],
  ])("the %s text as shipped parses and has no error", (_what, text) => {
    const r = spawnSync("shellcheck", ["--shell=sh", "--severity=error", "-"], {
      input: text,
      encoding: "utf8",
    });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
    for (const shell of ["/bin/dash", "/bin/bash"]) {
      const n = spawnSync(shell, ["-n"], { input: text, encoding: "utf8" });
      expect({ shell, code: n.status, stderr: n.stderr }).toEqual({ shell, code: 0, stderr: "" });
    }
  });
});
