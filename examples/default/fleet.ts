/**
 * The embedded default program: a three-host libvirt/QEMU fleet and one operator client, as in the
 * libvirt and QEMU TLS guides, installed locally under `staging/` of the project (no SSH needed), one
 * folder per host in the layout the host would have. Kept as a function so tests can run it through the
 * engine test harness; index.ts calls it and exports the stack outputs.
 */
import * as fs from "fs";
import * as path from "path";
import { FleetHost, VirtualizationPki } from "../../index";

/**
 * The project root: the nearest directory at or above this file that holds a `Pulumi.yaml` (the root
 * one, for `bin/examples/default/fleet.js`), else the working directory.
 *
 * Not `process.cwd()`: with the root Pulumi.yaml's `main: bin/examples/default/index.js`, the engine runs
 * the program in the directory of `main` (pkg/engine/project.go `getPwdMain`; the nodejs language host
 * passes it as `--pwd` and sdk/nodejs/cmd/run/run.ts does `process.chdir(pwd)`), so `./staging` would be
 * `bin/examples/default/staging`. Not `pulumi.runtime.getRootDirectory()` either: outside the engine
 * (PULUMI_NODEJS_ROOT_DIRECTORY unset) it answers the relative path `"rootDirectory"`.
 */
export function projectRoot(from: string = __dirname): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "Pulumi.yaml"))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

/** The three hosts of the default fleet (loopback addresses, so nothing points at a real network). */
export const DEFAULT_HOSTS: readonly FleetHost[] = [
  { name: "compute1", fqdn: "compute1.virt.example", ipAddresses: ["127.0.0.11"] },
  { name: "compute2", fqdn: "compute2.virt.example", ipAddresses: ["127.0.0.12"] },
  { name: "compute3", fqdn: "compute3.virt.example", ipAddresses: ["127.0.0.13"] },
];

/**
 * Declares the fleet. `stagingRoot` is where the hosts' files go.
 *
 * @default hosts {@link DEFAULT_HOSTS}
 * @default stagingRoot `<project root>/staging/hosts` (see {@link projectRoot})
 */
export function declareFleet(
  hosts: readonly FleetHost[] = DEFAULT_HOSTS,
  stagingRoot: string = path.join(projectRoot(), "staging", "hosts"),
): VirtualizationPki {
  return new VirtualizationPki("fleet", {
    organization: "Example Virt",
    ca: { subject: { organization: "Example Virt", commonName: "Example Virt CA" } },
    hosts: [...hosts],
    clients: [
      {
        name: "operator",
        subject: {
          country: "GB",
          state: "London",
          locality: "London",
          organization: "Example Virt",
          commonName: "operator",
        },
        install: { user: "root" },
      },
    ],
    pskUsers: ["qemu"],
    stagingRoot,
  });
}
