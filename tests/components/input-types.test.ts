/**
 * What a user's program may pass without a cast, run for real through the provider host and local
 * installs: outputs deep inside a layout (a `custom` file's content given a certificate), a leaf's
 * `keyPem` as a layout's key, a fleet client's subject given as an output, one client installed on two
 * machines. This file compiling is half the test (tsconfig.test.json is strict); the runs are the rest.
 */
import * as pulumi from "@pulumi/pulumi";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as virtpki from "../../bin/index";
import { EngineState, up } from "../support/engine";
import { ProviderHost, startProviderHost } from "../support/pulumiHost";
import { removeDir, run, tempDir } from "../support/programs";

let host: ProviderHost;
let dir: string;
beforeAll(async () => {
  host = await startProviderHost({ cwd: join(__dirname, "..", "..") });
  await host.configure();
  dir = await tempDir("virt-pki-input-types-");
});
afterAll(async () => {
  await host?.stop();
  await removeDir(dir);
});

const names = (state: EngineState) =>
  Object.values(state)
    .map((s) => s.name)
    .sort();

test("outputs at any depth of a layout, and a leaf's keyPem, go into an install as they are", async () => {
  const root = join(dir, "deep");
  const program = () => {
    const ca = new virtpki.CertificateAuthority("ca", { subject: { commonName: "Deep CA" } });
    const leaf = new virtpki.ServerCertificate("h1", { ca, subject: { commonName: "h1.example.org" } });
    new virtpki.HostCredentialInstall("h1", {
      root,
      layouts: [
        // keyPem is an Output<string>: no cast.
        { kind: "libvirt-server", caCertPem: ca.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem },
        // An output two levels down (files[0].content) and one in a plain array of a plain object.
        {
          kind: "custom",
          dir: "/etc/pki/app",
          files: [
            { name: "ca.pem", content: ca.certPem },
            { name: "serial", content: pulumi.interpolate`${leaf.serialNumber}\n`, mode: 0o644 },
          ],
        },
      ],
    });
  };
  const r = await up(program, host, {});
  const leaf = Object.values(r.state).find((s) => s.name === "h1" && s.type.endsWith("ServerCertificate"))!;
  const ca = Object.values(r.state).find((s) => s.name === "ca")!;
  expect(readFileSync(join(root, "etc/pki/app/ca.pem"), "utf8")).toBe(ca.outputs.certPem);
  expect(readFileSync(join(root, "etc/pki/app/serial"), "utf8")).toBe(`${leaf.outputs.serialNumber}\n`);
  // The installed key is the leaf's own: openssl derives the certificate's public key from it.
  const fromKey = await run("openssl", [
    "pkey",
    "-in",
    join(root, "etc/pki/libvirt/private/serverkey.pem"),
    "-pubout",
  ]);
  const fromCert = await run("openssl", [
    "x509",
    "-in",
    join(root, "etc/pki/libvirt/servercert.pem"),
    "-pubkey",
    "-noout",
  ]);
  expect(fromKey.code).toBe(0);
  expect(fromKey.stdout).toBe(fromCert.stdout);
});

test("a fleet client with an output subject, installed on two machines: one certificate, two installs", async () => {
  const staging = join(dir, "fleet");
  let allowed: string[] = [];
  const program = () => {
    // The subject from elsewhere (another stack's output, a config secret): an Output<Subject>.
    const subject = pulumi.output({ organization: "Example Ops", commonName: "alice" });
    const fleet = new virtpki.VirtualizationPki("f", {
      organization: "Example",
      ca: { subject: { commonName: "Example CA" } },
      hosts: [{ name: "c1", fqdn: "c1.example.org" }],
      clients: [
        {
          name: "alice",
          subject,
          // The first keeps the name it had with one machine; the second is told apart by its id.
          install: [{ user: "alice" }, { id: "laptop", user: "alice" }],
        },
      ],
      stagingRoot: staging,
    });
    fleet.tlsAllowedDnList.apply((l) => (allowed = l));
  };
  const r = await up(program, host, {});
  expect(names(r.state).filter((n) => n.startsWith("f-client"))).toEqual([
    "f-client-alice", // the one certificate (the state keeps custom resources, not components)
    "f-client-alice-files",
    "f-client-alice-laptop-files",
  ]);
  const cert = (folder: string) =>
    readFileSync(join(staging, folder, "home/alice/.pki/libvirt/clientcert.pem"), "utf8");
  const key = (folder: string) =>
    readFileSync(join(staging, folder, "home/alice/.pki/libvirt/clientkey.pem"), "utf8");
  expect(cert("client-alice-laptop")).toBe(cert("client-alice"));
  expect(key("client-alice-laptop")).toBe(key("client-alice"));
  const dn = await run("virt-pki-query-dn", [
    join(staging, "client-alice", "home/alice/.pki/libvirt/clientcert.pem"),
  ]);
  expect(dn.stdout.trim()).toBe("O=Example Ops,CN=alice");
  // The hosts admit the output subject's DN.
  expect(allowed).toContain("O=Example Ops,CN=alice");
  // A second up changes nothing.
  const again = await up(program, host, r.state);
  expect(again.plan.filter((s) => s.op !== "same")).toEqual([]);
});

test("client installs: two without an id, a repeated id and a bad id are refused naming the entry", async () => {
  const fleet = (install: virtpki.FleetClient["install"]) => () =>
    void new virtpki.VirtualizationPki("f", {
      ca: { subject: { commonName: "CA" } },
      hosts: [{ name: "c1", fqdn: "c1.example.org" }],
      clients: [{ name: "bob", subject: { commonName: "bob" }, install }],
      stagingRoot: join(dir, "refused"),
    });
  await expect(up(fleet([{ user: "bob" }, { root: "/srv/ws" }]), host, {})).rejects.toThrow(
    /clients\[0\]\.install\[1\]: a second install without an id/,
  );
  await expect(up(fleet([{ id: "ws" }, { id: "ws", user: "bob" }]), host, {})).rejects.toThrow(
    /clients\[0\]\.install\[1\]\.id: "ws" is used twice/,
  );
  // The id becomes part of a resource name, a staging folder and the install's host label: anything
  // but a short name is refused before a resource is registered or a folder made.
  for (const id of ["WS 1", "../etc", "a$(id)", "a\nb", "*", "a/b", "-a", "x".repeat(41)]) {
    await expect(up(fleet([{ id, user: "bob" }]), host, {})).rejects.toThrow(
      /^clients\[0\]\.install\[0\]\.id: .* is not a short name \(a-z, 0-9, -\)/,
    );
  }
  expect(existsSync(join(dir, "refused"))).toBe(false);
});

test('peerDnList "prefix": a client whose output subject the hosts\' entry would admit is refused', async () => {
  const program = () =>
    void new virtpki.VirtualizationPki("p", {
      organization: "Example",
      ca: { subject: { commonName: "CA" } },
      hosts: [{ name: "c1", fqdn: "c1.example.org" }],
      clients: [
        {
          name: "sneaky",
          subject: pulumi.output({
            organization: "Example",
            organizationalUnit: "libvirt-client",
            commonName: "x",
          }),
        },
      ],
      peerDnList: "prefix",
      stagingRoot: join(dir, "prefix"),
    });
  await expect(up(program, host, {})).rejects.toThrow(
    /clients\[0\]\.subject: its DN "O=Example,OU=libvirt-client,CN=x" is one the hosts' entry/,
  );
});
