/**
 * HostCredentialInstall on a host whose users are hostile, over REAL SSH (the test bed): a user who plants
 * symbolic links in the directories root used to write through, values made to break out of the shell, and
 * a home directory with a space whose transfer is cut. Each case failed (root takeover, code run as root, or
 * temporary files left behind) with the installer that generated per-host shell code.
 */
import * as pulumi from "@pulumi/pulumi";
import { HostCredentialInstall, LayoutArgs } from "../../components";
import { InstalledFile } from "../../components/install";
import { createCertificateAuthority, issueCertificate } from "../../provider/pki";
import { EngineState, interruptCapturedCommand, up } from "../support/engine";
import { NO_DYNAMIC, revealSecrets, secretValue } from "../support/pulumiHost";
import { TestBed, TestHost, installLeftovers, startTestBed } from "../support/testbed";

let bed: TestBed;
let host: TestHost;
let creds: { caCertPem: string; certPem: string; keyPem: string };
/** Root's own client credentials on the host, which the hostile user aims at. */
const ROOTS = "/root/.pki/libvirt";
const ROOT_FILE = "root's own client certificate\n";

beforeAll(async () => {
  bed = await startTestBed({
    hosts: [
      { name: "h1.attack.test", address: "127.0.0.41" },
      // Another machine: its host key is what an impostor at h1's address would present.
      { name: "h2.attack.test", address: "127.0.0.42" },
    ],
    users: ["mallory", "spaced"],
    homes: { spaced: "/home/space user" },
  });
  host = bed.host("h1.attack.test");
  const ca = await createCertificateAuthority({
    subject: { commonName: "Attack CA" },
    keySpec: "ecdsa-p256",
  });
  const leaf = await issueCertificate({
    issuer: ca,
    profile: "client",
    subject: { commonName: "mallory" },
    keySpec: "ecdsa-p256",
  });
  creds = { caCertPem: ca.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem! };
}, 60_000);

afterAll(async () => {
  await bed?.stop();
});

beforeEach(async () => {
  // A fresh host state: root's credentials in place, the users' homes without .pki, no claims.
  await host.execOrThrow(
    `rm -rf /etc/pki/* /var/lib/virt-pki/* ${ROOTS} /home/mallory/.pki /home/mallory/tls '/home/space user/.pki' /root/PWNED*; ` +
      `mkdir -p ${ROOTS} && for f in cacert.pem clientcert.pem clientkey.pem; do printf "%s" "${ROOT_FILE}" > ${ROOTS}/$f; done`,
  );
});

function identity(): { caCertPem: string; certPem: string; keyPem: pulumi.Output<string> } {
  return { caCertPem: creds.caCertPem, certPem: creds.certPem, keyPem: pulumi.secret(creds.keyPem) };
}

function program(layouts: LayoutArgs[], out: { install?: HostCredentialInstall } = {}, label?: string) {
  return () => {
    out.install = new HostCredentialInstall("h1", {
      checkDrift: false, // no HostProbe: this program has no dynamic resources
      connection: host.connection,
      hostLabel: label ?? host.name,
      layouts,
    });
  };
}

/** Root's files, as they are on the host: unchanged by every attack. */
async function rootFilesIntact(): Promise<void> {
  for (const f of ["cacert.pem", "clientcert.pem", "clientkey.pem"]) {
    expect(await host.readFile(`${ROOTS}/${f}`)).toBe(ROOT_FILE);
    expect(await host.stat(`${ROOTS}/${f}`)).toMatchObject({ owner: "root", group: "root" });
  }
  expect(await host.stat("/root")).toEqual({ mode: "0700", owner: "root", group: "root" });
  expect((await host.exec(`ls -A ${ROOTS}`)).stdout.split("\n").filter(Boolean).sort()).toEqual([
    "cacert.pem",
    "clientcert.pem",
    "clientkey.pem",
  ]);
}

function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

describe("a user who plants symbolic links", () => {
  const plantings: [string, string, () => LayoutArgs][] = [
    [
      "~/.pki/libvirt -> /root (the libvirt-client-user layout)",
      "mkdir -p ~/.pki && ln -s /root ~/.pki/libvirt",
      () => ({ kind: "libvirt-client-user", user: "mallory", ...identity() }),
    ],
    [
      "~/.pki/libvirt -> root's own ~/.pki/libvirt",
      `mkdir -p ~/.pki && ln -s ${ROOTS} ~/.pki/libvirt`,
      () => ({ kind: "libvirt-client-user", user: "mallory", ...identity() }),
    ],
    [
      // Into a directory private to the test host (its own tmpfs): even a vulnerable installer must not
      // reach this machine's files (the bed shares /etc with it, all but /etc/pki and /etc/hosts).
      "~/tls -> /etc/pki (a custom layout under ~user)",
      "ln -s /etc/pki ~/tls",
      () => ({
        kind: "custom",
        dir: "~mallory/tls",
        files: [{ name: "canary", content: "written by root" }],
      }),
    ],
  ];

  it.each(plantings)(
    "before the install: %s: the install fails, naming it; nothing outside changes",
    async (_n, plant, layout) => {
      await host.execOrThrow(plant, { user: "mallory" });
      const layouts: LayoutArgs[] = [{ kind: "libvirt-client", ...identity() }, layout()];
      await expect(up(program(layouts), NO_DYNAMIC, {})).rejects.toThrow(
        /virt-pki: install h1 on h1\.attack\.test: ~mallory\/(\.pki\/libvirt|tls) is a symbolic link; refusing to follow it/,
      );
      await rootFilesIntact();
      expect(await host.exists("/etc/pki/canary")).toBe(false);
      // The system layout of the same install was not applied either: nothing replaced before every part checked.
      expect(await host.exists("/etc/pki/libvirt/private/clientkey.pem")).toBe(false);
      expect(await installLeftovers(host, ["/etc/pki", "/root", "/home", "/var/lib/virt-pki"])).toBe("");
    },
  );

  it("between install and delete: the delete fails, naming it, and root's files of the same names stay", async () => {
    const layouts: LayoutArgs[] = [{ kind: "libvirt-client-user", user: "mallory", ...identity() }];
    let state: EngineState = (await up(program(layouts), NO_DYNAMIC, {})).state;
    expect(await host.stat("/home/mallory/.pki/libvirt/clientkey.pem")).toEqual({
      mode: "0600",
      owner: "mallory",
      group: "mallory",
    });
    await host.execOrThrow(`rm -rf ~/.pki/libvirt && ln -s ${ROOTS} ~/.pki/libvirt`, { user: "mallory" });
    await expect(up(() => undefined, NO_DYNAMIC, state)).rejects.toThrow(
      /~mallory\/\.pki\/libvirt is a symbolic link; refusing to follow it/,
    );
    await rootFilesIntact();
    // Once the user removes the link, the delete goes through and removes only what is still there.
    await host.execOrThrow("rm ~/.pki/libvirt && mkdir ~/.pki/libvirt", { user: "mallory" });
    state = (await up(() => undefined, NO_DYNAMIC, state)).state;
    expect(state).toEqual({});
    await rootFilesIntact();
  });
});

describe("a machine that presents another host key", () => {
  // @pulumi/command 1.2.1 accepts any host key unless connection.hostKey is set (remote/connection.go);
  // the harness does the same (testbed.ts connectionTarget). The installs pin the key, so whatever answers
  // at the address with another key never gets the stdin (the keys), on create or on delete.
  const KEY = "/etc/pki/libvirt/private/clientkey.pem";
  const layouts = (): LayoutArgs[] => [{ kind: "libvirt-client", ...identity() }];

  it("gets nothing on create: the run fails before the command starts", async () => {
    const impostor = { ...host.connection, hostKey: bed.host("h2.attack.test").hostKey };
    await expect(
      up(
        () =>
          void new HostCredentialInstall("h1", {
            checkDrift: false, // no HostProbe: this program has no dynamic resources
            connection: impostor,
            hostLabel: host.name,
            layouts: layouts(),
          }),
        NO_DYNAMIC,
        {},
      ),
    ).rejects.toThrow(/Host key verification failed/);
    expect(await host.exists(KEY)).toBe(false);
    expect(await host.exists("/var/lib/virt-pki/claims")).toBe(false);
    // Without the pin the same connection goes through: the pin is what refused it.
    const { hostKey: _k, ...unpinned } = impostor;
    void _k;
    await expect(
      up(
        () =>
          void new HostCredentialInstall("h1", {
            checkDrift: false, // no HostProbe: this program has no dynamic resources
            connection: unpinned,
            skipHostKeyVerification: true,
            hostLabel: host.name,
            layouts: layouts(),
          }),
        NO_DYNAMIC,
        {},
      ),
    ).resolves.toBeDefined();
    expect(await host.exists(KEY)).toBe(true);
  });

  it("gets nothing on delete: the stored connection keeps the pin", async () => {
    const state: EngineState = (await up(program(layouts()), NO_DYNAMIC, {})).state;
    const installed = await host.readFile(KEY);
    // The address now answers with another machine's key (re-used IP, spoofed DNS): as if h1 were h2.
    const cmd = Object.values(state).find((e) => e.type === "command:remote:Command")!;
    const connection = revealSecrets(cmd.inputs.connection) as { hostKey?: string };
    expect(connection.hostKey).toBe(host.hostKey);
    const moved = structuredClone(state);
    const movedCmd = Object.values(moved).find((e) => e.type === "command:remote:Command")!;
    movedCmd.inputs.connection = secretValue({ ...connection, hostKey: bed.host("h2.attack.test").hostKey });
    await expect(up(() => undefined, NO_DYNAMIC, moved)).rejects.toThrow(/Host key verification failed/);
    expect(await host.readFile(KEY)).toBe(installed);
    // With the true key the delete goes through.
    expect((await up(() => undefined, NO_DYNAMIC, state)).state).toEqual({});
    expect(await host.exists(KEY)).toBe(false);
  });
});

describe("values made to break out of the shell", () => {
  it("an owner @primary:$(...) is refused at preview; nothing runs on the host", async () => {
    await expect(
      up(
        () => {
          new HostCredentialInstall("h1", {
            checkDrift: false, // no HostProbe: this program has no dynamic resources
            connection: host.connection,
            layouts: [{ kind: "libvirt-client", ...identity() }],
            overrides: { "/etc/pki/CA/cacert.pem": { group: "@primary:$(id>/root/PWNED)" } },
          });
        },
        NO_DYNAMIC,
        {},
      ),
    ).rejects.toThrow(
      /overrides\["\/etc\/pki\/CA\/cacert\.pem"\]\.group: "@primary:\$\(id>\/root\/PWNED\)" is not a user or group name/,
    );
    expect(await host.exists("/root/PWNED")).toBe(false);
    expect(await host.exists("/etc/pki/CA")).toBe(false);
  });

  it("a resource name and a host label with newlines, quotes and $(...) are only ever printed", async () => {
    const name = "h1\ntouch /root/PWNED0\n#";
    const label = `h1\n"; touch /root/PWNED1; "$(touch /root/PWNED2)\`touch /root/PWNED3\`'`;
    const r = await up(
      () => {
        new HostCredentialInstall(name, {
          checkDrift: false, // no HostProbe: this program has no dynamic resources
          connection: host.connection,
          hostLabel: label,
          layouts: [{ kind: "libvirt-client", ...identity() }],
        });
      },
      NO_DYNAMIC,
      {},
    );
    expect(r.plan.map((s) => s.op)).toEqual(["create"]);
    for (const f of ["PWNED0", "PWNED1", "PWNED2", "PWNED3"])
      expect(await host.exists(`/root/${f}`)).toBe(false);
    expect(await host.readFile("/etc/pki/libvirt/private/clientkey.pem")).toBe(creds.keyPem);
  });
});

describe("a home directory with a space", () => {
  const layouts = (): LayoutArgs[] => [
    { kind: "libvirt-client", ...identity() },
    { kind: "libvirt-client-user", user: "spaced", ...identity() },
  ];

  it("an interrupted transfer leaves no temporary file; the next install lands and its manifest checks", async () => {
    // Cut inside the last file (the user's key): the system files have all arrived by then.
    const cut = await interruptCapturedCommand(program(layouts()), (stdin) => stdin.length - 60);
    expect(cut.signal).toBe("SIGKILL");
    expect(cut.code).toBeNull(); // cut while it ran, not after it had ended
    expect(await installLeftovers(host, ["/etc/pki", "/home", "/var/lib/virt-pki"])).toBe("");
    expect(await host.exists("/etc/pki/libvirt/private/clientkey.pem")).toBe(false);

    const out: { install?: HostCredentialInstall } = {};
    await up(program(layouts(), out), NO_DYNAMIC, {});
    const files: InstalledFile[] = await valueOf(out.install!.files);
    expect(
      files.filter((f) => f.path.startsWith("~")).map((f) => `${f.hostPath} ${f.mode} ${f.owner}`),
    ).toEqual([
      "/home/space user/.pki/libvirt/cacert.pem 0600 spaced",
      "/home/space user/.pki/libvirt/clientcert.pem 0600 spaced",
      "/home/space user/.pki/libvirt/clientkey.pem 0600 spaced",
    ]);
    expect(await host.readFile("/home/space user/.pki/libvirt/clientkey.pem")).toBe(creds.keyPem);
  });
});
