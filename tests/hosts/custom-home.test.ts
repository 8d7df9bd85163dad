/**
 * A `custom` layout under `~user` on a real host over SSH (the test bed): the folders missing between the
 * home and the layout's dir (`~/.pki`) are created by the user, 0700, and the files are the user's, as the
 * README says. An adopter reported `~/.pki` could not be created; this pins that it is.
 */
import { HostCredentialInstall } from "../../components";
import { up } from "../support/engine";
import { NO_DYNAMIC } from "../support/pulumiHost";
import { TestBed, TestHost, startTestBed } from "../support/testbed";

let bed: TestBed;
let host: TestHost;
beforeAll(async () => {
  bed = await startTestBed({ hosts: [{ name: "h1.custom.test", address: "127.0.0.91" }], users: ["alice"] });
  host = bed.host("h1.custom.test");
}, 60_000);
afterAll(async () => {
  await bed?.stop();
});

test.each([
  ["~alice/.pki/app", ["/home/alice/.pki", "/home/alice/.pki/app"]],
  ["~alice/app", ["/home/alice/app"]],
])("a custom layout at %s: missing folders made by the user, files the user's", async (dir, made) => {
  await host.execOrThrow("rm -rf /home/alice/.pki /home/alice/app /var/lib/virt-pki/*");
  await up(
    () =>
      void new HostCredentialInstall("x", {
        checkDrift: false, // no HostProbe: this program has no dynamic resources
        connection: host.connection,
        layouts: [{ kind: "custom", dir, files: [{ name: "token", content: "x\n", secret: true }] }],
        digestKey: "9f".repeat(32),
      }),
    NO_DYNAMIC,
    {},
  );
  const modes = Object.fromEntries(
    await Promise.all([...made, `${made[made.length - 1]}/token`].map(async (p) => [p, await host.stat(p)])),
  );
  const expected: Record<string, unknown> = {};
  made.forEach((p, i) => {
    // The layout's own dir has its dirMode (0755 by default); a folder between it and the home is 0700.
    expected[p] = { mode: i === made.length - 1 ? "0755" : "0700", owner: "alice", group: "alice" };
  });
  expected[`${made[made.length - 1]}/token`] = { mode: "0600", owner: "alice", group: "alice" };
  expect(modes).toEqual(expected);
  expect(await host.readFile(`${made[made.length - 1]}/token`)).toBe("x\n");
});
