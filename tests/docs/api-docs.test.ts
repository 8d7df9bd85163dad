/**
 * The doc-comment rules TypeDoc's own validation does not check, over the public API (`index.ts`, as
 * `typedoc.json` documents it): every exported symbol and member has a summary (TypeDoc's `notDocumented`
 * is satisfied by a comment holding only a block tag), and every optional property (an argument's field,
 * an option, an optional result field) says with `@default` what applies when it is omitted.
 *
 * TypeDoc is ESM-only, so it runs as its CLI, writing its JSON model to a temporary file; its warnings are
 * `npm run docs:check`'s business and are not repeated here.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(__dirname, "..", "..");
const TYPEDOC = join(ROOT, "node_modules", "typedoc", "bin", "typedoc");

/** TypeDoc's `ReflectionKind` values (typedoc/dist/lib/models/kind.d.ts), for the kinds these rules look at. */
const KIND = {
  Namespace: 4,
  Enum: 8,
  EnumMember: 16,
  Variable: 32,
  Function: 64,
  Class: 128,
  Interface: 256,
  Property: 1024,
  Method: 2048,
  Accessor: 262144,
  TypeAlias: 2097152,
} as const;

/** The kinds that need a summary: TypeDoc's default `requiredToBeDocumented`, plus namespaces. */
const NEEDS_SUMMARY = new Set<number>(Object.values(KIND));

/** The parts of TypeDoc's JSON model these rules read. */
interface CommentPart {
  text: string;
}
interface Comment {
  summary?: CommentPart[];
  blockTags?: { tag: string; content: CommentPart[] }[];
}
interface JsonNode {
  variant?: string;
  name?: string;
  kind?: number;
  flags?: { isOptional?: boolean };
  comment?: Comment;
  inheritedFrom?: unknown;
  signatures?: JsonNode[];
  getSignature?: JsonNode;
  setSignature?: JsonNode;
  [key: string]: unknown;
}

function text(parts: CommentPart[] | undefined): string {
  return (parts ?? [])
    .map((p) => p.text)
    .join("")
    .trim();
}

/** The comments that document a reflection: its own, or its signatures' (functions, methods, accessors). */
function comments(node: JsonNode): Comment[] {
  const signatures = [...(node.signatures ?? []), node.getSignature, node.setSignature];
  return [node.comment, ...signatures.map((s) => s?.comment)].filter((c): c is Comment => c !== undefined);
}

function hasSummary(node: JsonNode): boolean {
  return comments(node).some((c) => text(c.summary) !== "");
}

function hasDefault(node: JsonNode): boolean {
  return (node.comment?.blockTags ?? []).some(
    (t) => (t.tag === "@default" || t.tag === "@defaultValue") && text(t.content) !== "",
  );
}

interface Findings {
  /** Exported symbols and members without a summary, as dotted paths (`install.PlanOptions.root`). */
  withoutSummary: string[];
  /** Optional properties without a non-empty `@default` block tag. */
  optionalWithoutDefault: string[];
}

/**
 * Walks the whole model: declarations and their members, and the object types inside properties, type
 * aliases and return types (`{ address?: string }` in a field's type is checked too). A function's
 * parameters are left to its `@param` tags; members inherited from another declaration of the package are
 * checked where they are declared.
 */
function audit(project: JsonNode): Findings {
  const findings: Findings = { withoutSummary: [], optionalWithoutDefault: [] };
  const visit = (value: unknown, path: string[]): void => {
    if (Array.isArray(value)) {
      for (const v of value) visit(v, path);
      return;
    }
    if (value === null || typeof value !== "object") return;
    const node = value as JsonNode;
    if (node.variant === "param") return;
    let here = path;
    if (node.variant === "declaration" && node.name !== undefined) {
      if (node.name !== "__type") here = [...path, node.name];
      const where = here.join(".");
      if (node.inheritedFrom === undefined) {
        if (node.kind !== undefined && NEEDS_SUMMARY.has(node.kind) && !hasSummary(node)) {
          findings.withoutSummary.push(where);
        }
        if (node.kind === KIND.Property && node.flags?.isOptional && !hasDefault(node)) {
          findings.optionalWithoutDefault.push(where);
        }
      }
    }
    for (const [key, child] of Object.entries(node)) {
      if (key !== "comment") visit(child, here);
    }
  };
  visit(project.children, []);
  const unique = (list: string[]) => [...new Set(list)].sort();
  return {
    withoutSummary: unique(findings.withoutSummary),
    optionalWithoutDefault: unique(findings.optionalWithoutDefault),
  };
}

let project: JsonNode;

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), "virt-pki-api-docs-"));
  try {
    const json = join(dir, "api.json");
    const run = spawnSync(
      process.execPath,
      [TYPEDOC, "--json", json, "--treatWarningsAsErrors", "false", "--logLevel", "Error"],
      { cwd: ROOT, encoding: "utf8" },
    );
    if (run.status !== 0) throw new Error(`typedoc failed (${run.status}):\n${run.stdout}${run.stderr}`);
    project = JSON.parse(readFileSync(json, "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the model covers the public API: resources, components, and the pki and install namespaces", () => {
  const names = (project.children as JsonNode[]).map((c) => c.name);
  expect(names).toEqual(
    expect.arrayContaining([
      "CertificateAuthority",
      "HostCredentialInstall",
      "VirtualizationPki",
      "pki",
      "install",
    ]),
  );
});

test("every exported symbol and member has a summary", () => {
  expect(audit(project).withoutSummary).toEqual([]);
});

test("every optional property says what applies when it is omitted (@default)", () => {
  expect(audit(project).optionalWithoutDefault).toEqual([]);
});
