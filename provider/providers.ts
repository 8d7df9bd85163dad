/**
 * The dynamic provider objects. Pulumi serializes each into the resource's `__provider` input; to keep
 * that text small and stable they capture nothing but `require` and strings, and call the pure,
 * versioned handlers (`pulumi-virt-pki/handlers`) that are installed when the engine runs them.
 *
 * Where the serialized text runs, and why it looks for the handlers in three places:
 *
 * - The engine runs it in the dynamic-provider host (`@pulumi/pulumi` sdk/nodejs/cmd/dynamic-provider/index.ts,
 *   `getProvider`: `requireFromString(providerString).handler()`). require-from-string 2.0.2 compiles it as a
 *   module whose filename is `""`, so its `paths` are `Module._nodeModulePaths(path.dirname(""))`: the
 *   `node_modules` folders of the host's cwd and its parents, and relative paths resolve from that cwd too.
 *   A package's self-reference by name never applies (the module has no filename inside the package), so
 *   from a checkout of this repository `require("pulumi-virt-pki/handlers")` does not resolve.
 * - The engine starts the `pulumi-resource-pulumi-nodejs` plugin with `cmd.Dir = pwd`
 *   (sdk/go/common/resource/plugin/plugin.go `ExecPlugin`, called by `newPlugin` with the plugin
 *   context's `Pwd`), and that `Pwd` comes from pkg/engine/project.go `getPwdMain`: the project root (the
 *   directory of Pulumi.yaml) without `main`, the directory of `main` with one. The program runs in that
 *   same directory: the nodejs language host passes it as `--pwd` (sdk/nodejs/cmd/pulumi-language-nodejs
 *   `constructArguments`, from the engine's `programDirectory`, pkg/resource/deploy/program_source.go)
 *   and sdk/nodejs/cmd/run/run.ts does `process.chdir(pwd)` before loading the program. So the program's
 *   `process.cwd()` here, when the provider is serialized, is the cwd of the host that later runs it.
 * - The engine calls Delete and Read with the OLD state's `__provider` (a destroy, a refresh, the delete
 *   after a replacement), so that text must keep working after this package is upgraded or the project
 *   is moved.
 *
 * Hence the order: this build's handlers by their path relative to the program's cwd, resolved against the
 * host's cwd (a checkout or a nested install moved or copied as a whole, and a package upgraded in place);
 * then the absolute path of this build; then the package by name, for an install that was hoisted or
 * re-laid out. The name is looked up like Node does, from the host's cwd up through every parent's
 * `node_modules`, so a copy is only taken when it lies inside the project (the nearest folder above the cwd
 * holding Pulumi.yaml): a `node_modules/pulumi-virt-pki` that another user planted in a parent folder (say
 * `/tmp/node_modules` for a project under `/tmp`) would get every input, CA keys included. A place moves on
 * to the next only when its file does not exist (`require.resolve` fails); the handlers' own failures,
 * such as a missing dependency, are reported as they are.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- the serialized closures require() by design */
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import type * as Handlers from "./handlers";

/** This build's handlers, by absolute path: the last resort. */
const HANDLERS_ABSOLUTE = path.join(__dirname, "handlers", "index.js");

/**
 * This build's handlers relative to the program's working directory, which is also the dynamic-provider
 * host's (see the module comment); the host resolves it against its own cwd.
 */
const HANDLERS_RELATIVE = path.relative(process.cwd(), HANDLERS_ABSOLUTE);

type HandlerName =
  | "certificateAuthority"
  | "certificate"
  | "hostIdentities"
  | "revocationList"
  | "preSharedKeys"
  | "hostProbe";

/** Builds the provider for one handler. Each method resolves the handlers when the engine calls it. */
function providerFor(name: HandlerName): pulumi.dynamic.ResourceProvider {
  const relative = HANDLERS_RELATIVE;
  const absolute = HANDLERS_ABSOLUTE;
  // require() at call time, not import: the serialized closure must capture no module objects (comments
  // inside it would be serialized too, hence the file-wide eslint directive).
  const handlers = (): (typeof Handlers)[HandlerName] => {
    const p = require("path") as typeof path;
    const fs = require("fs") as typeof import("fs");
    const cwd = process.cwd();
    const at = [p.resolve(cwd, relative), absolute].find((f) => fs.existsSync(f));
    if (at) return (require(at) as typeof Handlers)[name];
    let root = cwd;
    while (!fs.existsSync(p.join(root, "Pulumi.yaml")) && p.dirname(root) !== root) root = p.dirname(root);
    if (!fs.existsSync(p.join(root, "Pulumi.yaml"))) root = cwd;
    let found = "";
    try {
      found = require.resolve("pulumi-virt-pki/handlers", { paths: [cwd] });
    } catch {
      // not installed by name either
    }
    const inside = found ? p.relative(root, found) : "..";
    if (!inside.startsWith("..") && !p.isAbsolute(inside)) return (require(found) as typeof Handlers)[name];
    throw new Error(
      `pulumi-virt-pki handlers not found from ${cwd}: tried ${p.resolve(cwd, relative)}, ${absolute}, ` +
        `pulumi-virt-pki/handlers${found ? ` (${found} is outside the project ${root}: not loaded)` : ""}`,
    );
  };
  return {
    check: async (olds, news) => handlers().check(olds, news as never),
    diff: async (id, olds, news) => handlers().diff(id, olds, news as never),
    create: async (inputs) => handlers().create(inputs as never),
    update: async (id, olds, news) => handlers().update(id, olds, news as never),
    read: async (id, props) => handlers().read(id, props),
    delete: async (id, props) => handlers().remove(id, props),
  };
}

/** Provider of CertificateAuthority. */
export const certificateAuthorityProvider = providerFor("certificateAuthority");
/** Provider of ServerCertificate and ClientCertificate. */
export const certificateProvider = providerFor("certificate");
/** Provider of HostIdentities. */
export const hostIdentitiesProvider = providerFor("hostIdentities");
/** Provider of CertificateRevocationList. */
export const revocationListProvider = providerFor("revocationList");
/** Provider of PreSharedKeys. */
export const preSharedKeysProvider = providerFor("preSharedKeys");
/** Provider of HostProbe. */
export const hostProbeProvider = providerFor("hostProbe");
