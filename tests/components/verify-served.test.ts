/**
 * Where a host checks the certificate its daemon serves (`verifyServed`): the address and port it connects to,
 * what is refused before anything runs (the address is a word of the host script's `openssl s_client
 * -connect`), and how a fleet host's setting combines with the fleet's.
 */
import { VirtualizationPki, VirtualizationPkiArgs } from "../../components";
import { hostVerifyServed, probeOf } from "../../components/verifyServed";
import { captureResources } from "../support/pulumiHost";

test("the connection's host and libvirt's TLS port unless given; none when off", () => {
  expect(probeOf(undefined, "192.0.2.1")).toEqual({ address: "192.0.2.1", port: 16514 });
  expect(probeOf(true, "h1.example.org")).toEqual({ address: "h1.example.org", port: 16514 });
  expect(probeOf({ port: 16600 }, "2001:db8::1")).toEqual({ address: "2001:db8::1", port: 16600 });
  expect(probeOf({ address: "h1.internal" }, "203.0.113.9")).toEqual({ address: "h1.internal", port: 16514 });
  expect(probeOf(false, "192.0.2.1")).toBeUndefined();
});

test.each([
  ["a command substitution", "$(id)"],
  ["a space and an option", "h1 -proxy x"],
  ["a leading dash", "-servername"],
  ["a newline", "h1\nprobe x 1 /etc/shadow"],
  ["a glob", "h*"],
  ["a quote", "h1'"],
  ["empty", ""],
  ["not a string", 42],
])("an address with %s is refused, naming the property", (_what, address) => {
  expect(() => probeOf({ address: address as string }, "h", "hosts[2].verifyServed")).toThrow(
    /^hosts\[2\]\.verifyServed\.address: .* is not a host name or address$/,
  );
});

test.each([0, 65536, 1.5, -1, "16514" as unknown as number])("port %p is refused", (port) => {
  expect(() => probeOf({ port }, "h")).toThrow(/^verifyServed\.port: .* is not a TCP port \(1-65535\)$/);
});

test("a fleet host's setting goes over the fleet's", () => {
  expect(hostVerifyServed(undefined, undefined)).toBeUndefined();
  expect(hostVerifyServed({ port: 1 }, undefined)).toEqual({ port: 1 });
  expect(hostVerifyServed(false, undefined)).toBe(false);
  expect(hostVerifyServed({ port: 1 }, false)).toBe(false);
  expect(hostVerifyServed(false, true)).toEqual({});
  expect(hostVerifyServed({ port: 1 }, true)).toEqual({ port: 1 });
  expect(hostVerifyServed({ port: 1 }, { address: "a" })).toEqual({ port: 1, address: "a" });
  expect(hostVerifyServed(false, { address: "a" })).toEqual({ address: "a" });
  expect(hostVerifyServed({ port: 1 }, { port: 2 })).toEqual({ port: 2 });
});

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKw6hJ3n9m0C2mA4y1s9gXo2o8P0rQ6mQp3ZxXb3Yk2F";
function fleet(extra: Partial<VirtualizationPkiArgs>): VirtualizationPkiArgs {
  return {
    ca: { subject: { commonName: "Fleet CA" } },
    hosts: [
      {
        name: "h1",
        fqdn: "h1.example.org",
        connection: { host: "192.0.2.1", privateKey: "k", hostKey: HOST_KEY },
      },
    ],
    ...extra,
  };
}

test.each<[string, Partial<VirtualizationPkiArgs>, RegExp]>([
  [
    "a fleet port that is no port",
    { verifyServed: { port: 70000 } },
    /^verifyServed\.port: 70000 is not a TCP port/,
  ],
  [
    "a fleet-wide address",
    { verifyServed: { address: "10.0.0.1" } as never },
    /^verifyServed\.address: is each host's own: give it as hosts\[i\]\.verifyServed\.address/,
  ],
  [
    "a hostile host address",
    {
      hosts: [
        {
          name: "h1",
          fqdn: "h1.example.org",
          connection: { host: "192.0.2.1", privateKey: "k", hostKey: HOST_KEY },
          verifyServed: { address: "$(reboot)" },
        },
      ],
    },
    /^hosts\[0\]\.verifyServed\.address: "\$\(reboot\)" is not a host name or address/,
  ],
  [
    "a check on a staged host",
    { hosts: [{ name: "s1", fqdn: "s1.example.org", verifyServed: true }], stagingRoot: "/tmp/stage" },
    /^hosts\[0\]\.verifyServed: a staged host \(no connection\) has no daemon to check/,
  ],
])("the fleet refuses %s at preview", async (_what, extra, message) => {
  await expect(
    captureResources(
      () => {
        new VirtualizationPki("prod", fleet(extra));
      },
      { preview: true },
    ),
  ).rejects.toThrow(message);
});
