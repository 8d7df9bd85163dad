// `npm run docs:check`: regenerates the API reference into a temporary folder and fails, naming each
// file, when it differs from the checked-in docs/api, or when TypeDoc warns (typedoc.json treats
// warnings as errors: every exported symbol needs a doc comment). The fix is `npm run docs`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const checkedIn = join(root, "docs", "api");

/** Every file below `dir`, as `/`-separated paths relative to it, sorted; none when it does not exist. */
function files(dir, prefix = "") {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .flatMap((e) =>
      e.isDirectory() ? files(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
    )
    .sort();
}

/** The differences between a fresh output and docs/api, one line per file. */
function differences(fresh) {
  const now = files(fresh);
  const before = files(checkedIn);
  const same = (f) => readFileSync(join(fresh, f)).equals(readFileSync(join(checkedIn, f)));
  return [
    ...now.filter((f) => !before.includes(f)).map((f) => `missing:  docs/api/${f}`),
    ...before.filter((f) => !now.includes(f)).map((f) => `obsolete: docs/api/${f}`),
    ...now.filter((f) => before.includes(f) && !same(f)).map((f) => `stale:    docs/api/${f}`),
  ];
}

const out = mkdtempSync(join(tmpdir(), "virt-pki-docs-"));
let failure;
let count = 0;
try {
  const typedoc = join(root, "node_modules", "typedoc", "bin", "typedoc");
  const run = spawnSync(process.execPath, [typedoc, "--out", out], { cwd: root, stdio: "inherit" });
  if (run.status !== 0) {
    failure = "TypeDoc failed or warned (see above): fix the doc comments it names.";
  } else {
    const stale = differences(out);
    count = files(out).length;
    if (stale.length > 0) {
      failure =
        `docs/api does not match the doc comments (${stale.length} file(s)); run \`npm run docs\` and commit it:\n  ` +
        stale.join("\n  ");
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
if (failure !== undefined) {
  console.error(`docs:check: ${failure}`);
  process.exit(1);
}
console.log(`docs:check: docs/api is up to date (${count} files).`);
