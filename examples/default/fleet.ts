/**
 * The embedded default program: a three-host libvirt/QEMU fleet and one operator client, as in the
 * libvirt and QEMU TLS guides, installed locally under `staging/` (no SSH needed), one folder per host
 * in the layout the host would have. Kept as a function so tests can run it through the engine test
 * harness; index.ts calls it and exports the stack outputs.
 */
import * as path from "path";
import { FleetHost, VirtualizationPki } from "../../index";

/** The three hosts of the default fleet (loopback addresses, so nothing points at a real network). */
export const DEFAULT_HOSTS: readonly FleetHost[] = [
  { name: "compute1", fqdn: "compute1.virt.example", ipAddresses: ["127.0.0.11"] },
  { name: "compute2", fqdn: "compute2.virt.example", ipAddresses: ["127.0.0.12"] },
  { name: "compute3", fqdn: "compute3.virt.example", ipAddresses: ["127.0.0.13"] },
];

/** Declares the fleet; `stagingRoot` is where the hosts' files go (default `./staging/hosts`). */
export function declareFleet(
  hosts: readonly FleetHost[] = DEFAULT_HOSTS,
  stagingRoot = path.resolve("staging", "hosts"),
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
