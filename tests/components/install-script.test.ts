/**
 * The pure install planning and the generated scripts. The scripts are RUN here with the machine's
 * /bin/sh (dash on Debian) under a temporary root folder (local mode), so what is asserted is what a
 * host does with them: files, modes, owners, idempotency, refusal of truncated or corrupted input,
 * and claim-guarded delete.
 */
import { spawnSync } from "node:child_process";
import { existsSync, promises as fs, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  InstallPlan,
  Layout,
  generationOf,
  libvirtdConfSnippet,
  parseManifest,
  planInstall,
  qemuConfSnippet,
  renderInstallScript,
  renderPayload,
  renderRemoveScript,
  verifyManifest,
} from "../../components/install";
import { createCertificateAuthority, issueCertificate } from "../../provider/pki";
import { removeDir, tempDir } from "../support/programs";

interface Creds {
  caCertPem: string;
  certPem: string;
  keyPem: string;
  otherCertPem: string;
  otherKeyPem: string;
}

let creds: Creds;
let root: string;

beforeAll(async () => {
  const ca = await createCertificateAuthority({
    subject: { commonName: "Install Test CA" },
    keySpec: "ecdsa-p256",
  });
  const issuer = { certPem: ca.certPem, keyPem: ca.keyPem };
  const a = await issueCertificate({ issuer, subject: { commonName: "h1.test" }, keySpec: "ecdsa-p256" });
  const b = await issueCertificate({ issuer, subject: { commonName: "h1.test" }, keySpec: "ecdsa-p256" });
  creds = {
    caCertPem: ca.certPem,
    certPem: a.certPem,
    keyPem: a.keyPem!,
    otherCertPem: b.certPem,
    otherKeyPem: b.keyPem!,
  };
});

beforeEach(async () => {
  root = await tempDir("virt-pki-install-");
});

afterEach(async () => {
  await removeDir(root);
});

function server(c = creds): Layout {
  return { kind: "libvirt-server", caCertPem: c.caCertPem, certPem: c.certPem, keyPem: c.keyPem };
}

function layoutTable(plan: InstallPlan): string[] {
  return [
    ...plan.dirs.map(
      (d) => `${d.path}/ ${d.owner}:${d.group} ${d.mode.toString(8)}${d.managed ? "" : " (if missing)"}`,
    ),
    ...plan.files.map(
      (f) => `${f.path} ${f.owner}:${f.group} ${f.mode.toString(8)}${f.secret ? " secret" : ""}`,
    ),
  ];
}

describe("planInstall: the layouts table", () => {
  it("libvirt-server and libvirt-client share /etc/pki/CA/cacert.pem and pass virt-pki-validate's rules", () => {
    const plan = planInstall([
      { ...server(), crlPem: "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n" } as Layout,
      { kind: "libvirt-client", caCertPem: creds.caCertPem, certPem: creds.certPem, keyPem: creds.keyPem },
    ]);
    expect(layoutTable(plan)).toEqual([
      "/etc/pki/ root:root 755 (if missing)",
      "/etc/pki/CA/ root:root 755",
      "/etc/pki/libvirt/ root:root 755",
      "/etc/pki/libvirt/private/ root:root 755",
      "/etc/pki/CA/cacert.pem root:root 644",
      "/etc/pki/CA/cacrl.pem root:root 644",
      "/etc/pki/libvirt/servercert.pem root:root 644",
      "/etc/pki/libvirt/private/serverkey.pem root:root 600 secret",
      "/etc/pki/libvirt/clientcert.pem root:root 644",
      "/etc/pki/libvirt/private/clientkey.pem root:root 644 secret",
    ]);
  });

  it("the seed's root:qemu convention: 0750 key directory, 0440 files, group qemu", () => {
    const plan = planInstall([server()], { ownership: "root-qemu" });
    expect(layoutTable(plan)).toEqual([
      "/etc/pki/ root:root 755 (if missing)",
      "/etc/pki/CA/ root:root 755",
      "/etc/pki/libvirt/ root:@qemu 755",
      "/etc/pki/libvirt/private/ root:@qemu 750",
      "/etc/pki/CA/cacert.pem root:root 644",
      "/etc/pki/libvirt/servercert.pem root:@qemu 440",
      "/etc/pki/libvirt/private/serverkey.pem root:@qemu 440 secret",
    ]);
  });

  it("libvirt-client-user: ~user/.pki/libvirt 0700, files 0600 owned by the user", () => {
    const plan = planInstall([
      {
        kind: "libvirt-client-user",
        user: "alice",
        caCertPem: creds.caCertPem,
        certPem: creds.certPem,
        keyPem: creds.keyPem,
      },
    ]);
    expect(layoutTable(plan)).toEqual([
      "~alice/.pki/ alice:@primary:alice 700 (if missing)",
      "~alice/.pki/libvirt/ alice:@primary:alice 700",
      "~alice/.pki/libvirt/cacert.pem alice:@primary:alice 600",
      "~alice/.pki/libvirt/clientcert.pem alice:@primary:alice 600",
      "~alice/.pki/libvirt/clientkey.pem alice:@primary:alice 600 secret",
    ]);
    expect(plan.users).toEqual(["alice"]);
  });

  it("qemu (both roles) saves the certificate twice; keys are readable by the QEMU group", () => {
    const plan = planInstall([
      {
        kind: "qemu",
        service: "migrate",
        caCertPem: creds.caCertPem,
        certPem: creds.certPem,
        keyPem: creds.keyPem,
      },
    ]);
    expect(layoutTable(plan)).toEqual([
      "/etc/pki/ root:root 755 (if missing)",
      "/etc/pki/libvirt-migrate/ root:root 755",
      "/etc/pki/libvirt-migrate/ca-cert.pem root:root 644",
      "/etc/pki/libvirt-migrate/server-cert.pem root:root 644",
      "/etc/pki/libvirt-migrate/server-key.pem root:@qemu 640 secret",
      "/etc/pki/libvirt-migrate/client-cert.pem root:root 644",
      "/etc/pki/libvirt-migrate/client-key.pem root:@qemu 640 secret",
    ]);
    const [serverCert, clientCert] = plan.files.filter(
      (f) => f.role.endsWith("-cert") && f.role !== "ca-cert",
    );
    expect(serverCert.sha256).toBe(clientCert.sha256);
    expect(plan.usesQemuGroup).toBe(true);
  });

  it("qemu-server, qemu-client, qemu-psk and custom", () => {
    const plan = planInstall([
      { kind: "qemu-server", caCertPem: creds.caCertPem, certPem: creds.certPem, keyPem: creds.keyPem },
      {
        kind: "qemu-client",
        dir: "/etc/pki/qemu-client",
        caCertPem: creds.caCertPem,
        certPem: creds.certPem,
        keyPem: creds.keyPem,
      },
      { kind: "qemu-psk", dir: "/etc/pki/qemu-psk", keysPsk: "qemu:00ff\n" },
      {
        kind: "custom",
        dir: "/srv/tls",
        files: [
          { name: "a.pem", content: "x" },
          { name: "k", content: "y", secret: true },
        ],
      },
    ]);
    expect(layoutTable(plan)).toEqual([
      "/etc/pki/ root:root 755 (if missing)",
      "/srv/tls/ root:root 755",
      "/etc/pki/qemu/ root:root 755",
      "/etc/pki/qemu-client/ root:root 755",
      "/etc/pki/qemu-psk/ root:root 755",
      "/etc/pki/qemu/ca-cert.pem root:root 644",
      "/etc/pki/qemu/server-cert.pem root:root 644",
      "/etc/pki/qemu/server-key.pem root:@qemu 640 secret",
      "/etc/pki/qemu-client/ca-cert.pem root:root 644",
      "/etc/pki/qemu-client/client-cert.pem root:root 644",
      "/etc/pki/qemu-client/client-key.pem root:@qemu 640 secret",
      "/etc/pki/qemu-psk/keys.psk root:root 600 secret",
      "/srv/tls/a.pem root:root 644",
      "/srv/tls/k root:root 600 secret",
    ]);
    expect(plan.files.find((f) => f.path === "/srv/tls/a.pem")!.content).toBe("x\n");
  });

  it("overrides win over the layout", () => {
    const plan = planInstall(
      [{ kind: "libvirt-client", caCertPem: creds.caCertPem, certPem: creds.certPem, keyPem: creds.keyPem }],
      {
        overrides: { "/etc/pki/libvirt/private/clientkey.pem": { mode: 0o600 } },
      },
    );
    expect(plan.files.find((f) => f.role === "client-key")!.mode).toBe(0o600);
  });
});

describe("planInstall: bad input names the property and the fix, never the key", () => {
  const cases: [string, () => unknown, RegExp][] = [
    ["no layouts", () => planInstall([]), /^layouts: is required/],
    [
      "unknown kind",
      () => planInstall([{ kind: "libvirt" } as unknown as Layout]),
      /^layouts\[0\]\.kind: "libvirt" is not one of libvirt-server/,
    ],
    [
      "relative dir",
      () => planInstall([{ kind: "qemu-psk", dir: "etc/pki", keysPsk: "a:00\n" }]),
      /^layouts\[0\]\.dir: "etc\/pki" is not an absolute path/,
    ],
    [
      "dot-dot dir",
      () => planInstall([{ kind: "qemu-psk", dir: "/etc/../tmp", keysPsk: "a:00\n" }]),
      /contains "\." or "\.\."/,
    ],
    [
      "bad user",
      () =>
        planInstall([
          { kind: "libvirt-client-user", user: "Bob Smith", caCertPem: "", certPem: "", keyPem: "" },
        ]),
      /^layouts\[0\]\.user: "Bob Smith" is not a user or group name/,
    ],
    [
      "bad service",
      () => planInstall([{ kind: "qemu", service: "rdp" as never, caCertPem: "", certPem: "", keyPem: "" }]),
      /^layouts\[0\]\.service: "rdp" is not one of default, vnc/,
    ],
    [
      "missing key",
      () => planInstall([{ ...server(), keyPem: "" } as Layout]),
      /^layouts\[0\]\.keyPem: is required: give the PEM key/,
    ],
    [
      "a certificate where the key goes",
      () => planInstall([{ ...server(), keyPem: creds.certPem } as Layout]),
      /^layouts\[0\]\.keyPem: does not hold a PEM key/,
    ],
    [
      "bad mode",
      () => planInstall([server()], { overrides: { "/etc/pki/CA/cacert.pem": { mode: 0o10000 } } }),
      /overrides\["\/etc\/pki\/CA\/cacert\.pem"\]\.mode: 4096 is not a file mode/,
    ],
    [
      "two CAs for one path",
      () =>
        planInstall([
          server(),
          {
            kind: "libvirt-client",
            caCertPem: creds.otherCertPem,
            certPem: creds.certPem,
            keyPem: creds.keyPem,
          },
        ]),
      /^layouts\[1\]: \/etc\/pki\/CA\/cacert\.pem would get different content from layouts\[0\] and from here/,
    ],
    [
      "conflicting directory ownership",
      () =>
        planInstall([
          server(),
          { kind: "custom", dir: "/etc/pki/libvirt", dirMode: 0o700, files: [{ name: "x", content: "x" }] },
        ]),
      /^layouts\[1\]: directory \/etc\/pki\/libvirt is asked for as root:root 0700 here and as root:root 0755 by layouts\[0\]; .*overrides/,
    ],
  ];
  it.each(cases)("%s", (_name, fn, message) => {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain(creds.keyPem.split("\n")[1]);
  });
});

function runScript(script: string, stdin = ""): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync("/bin/sh", ["-c", script], { input: stdin, encoding: "utf8", timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function options(plan: InstallPlan, extra: Partial<Parameters<typeof renderInstallScript>[1]> = {}) {
  return {
    name: "h1-install",
    hostLabel: "h1",
    generation: generationOf("h1-install", `local:${root}`, plan),
    root,
    setOwners: true,
    selinux: false,
    ...extra,
  };
}

function mode(path: string): string {
  return (statSync(path).mode & 0o7777).toString(8).padStart(4, "0");
}

function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith(".virt-pki."));
}

describe("the install script, run by /bin/sh", () => {
  it("never carries key material; the payload does", () => {
    const plan = planInstall([server()]);
    const script = renderInstallScript(plan, options(plan));
    const keyBody = creds.keyPem.split("\n")[1];
    expect(script).not.toContain(keyBody);
    expect(renderRemoveScript(plan, options(plan))).not.toContain(keyBody);
    expect(renderPayload(plan)).toContain(keyBody);
    expect(script.split("\n").slice(2, 4)).toEqual(["set -eu", "umask 077"]);
  });

  it("installs with the planned modes and owners, prints a manifest that verifies, and is idempotent", async () => {
    const plan = planInstall([
      server(),
      { kind: "qemu", caCertPem: creds.caCertPem, certPem: creds.certPem, keyPem: creds.keyPem },
    ]);
    const marker = join(root, "reloads");
    const script = renderInstallScript(plan, options(plan, { reloadCommand: `echo reload >> ${marker}` }));
    const first = runScript(script, renderPayload(plan));
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^virt-pki-install h1-install [0-9a-f]{32} changed=1$/m);
    const installed = verifyManifest(first.stdout, plan, { hostLabel: "h1", setOwners: true });
    expect(installed.map((f) => `${f.path} ${f.mode} ${f.owner}:${f.group}`)).toEqual([
      "/etc/pki/CA/cacert.pem 0644 root:root",
      "/etc/pki/libvirt/servercert.pem 0644 root:root",
      "/etc/pki/libvirt/private/serverkey.pem 0600 root:root",
      "/etc/pki/qemu/ca-cert.pem 0644 root:root",
      "/etc/pki/qemu/server-cert.pem 0644 root:root",
      "/etc/pki/qemu/server-key.pem 0640 root:libvirt-qemu",
      "/etc/pki/qemu/client-cert.pem 0644 root:root",
      "/etc/pki/qemu/client-key.pem 0640 root:libvirt-qemu",
    ]);
    expect(await fs.readFile(join(root, "etc/pki/libvirt/private/serverkey.pem"), "utf8")).toBe(creds.keyPem);
    expect(mode(join(root, "etc/pki/libvirt/private"))).toBe("0755");
    expect(await fs.readFile(marker, "utf8")).toBe("reload\n");

    const second = runScript(script, renderPayload(plan));
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/changed=0$/m);
    expect(second.stdout).not.toContain("virt-pki-reloaded");
    expect(await fs.readFile(marker, "utf8")).toBe("reload\n"); // no reload when nothing changed
    expect(leftovers(join(root, "etc/pki/qemu"))).toEqual([]);
  });

  it("restores a mode someone loosened, without a reload", async () => {
    const plan = planInstall([server()]);
    const script = renderInstallScript(plan, options(plan, { reloadCommand: "echo reloaded-by-test" }));
    expect(runScript(script, renderPayload(plan)).code).toBe(0);
    await fs.chmod(join(root, "etc/pki/libvirt/private/serverkey.pem"), 0o644);
    const again = runScript(script, renderPayload(plan));
    expect(again.code).toBe(0);
    expect(mode(join(root, "etc/pki/libvirt/private/serverkey.pem"))).toBe("0600");
    expect(again.stdout).not.toContain("virt-pki-reloaded");
  });

  it("a truncated payload (lost connection) changes nothing and leaves no temporary file", async () => {
    const old = planInstall([server()]);
    expect(runScript(renderInstallScript(old, options(old)), renderPayload(old)).code).toBe(0);
    const next = planInstall([server({ ...creds, certPem: creds.otherCertPem, keyPem: creds.otherKeyPem })]);
    const payload = renderPayload(next);
    const cut = runScript(
      renderInstallScript(next, options(next)),
      payload.slice(0, Math.floor(payload.length * 0.8)),
    );
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(
      /virt-pki: install h1-install on h1: the file data ended early \(connection lost\?\); nothing was replaced/,
    );
    expect(await fs.readFile(join(root, "etc/pki/libvirt/servercert.pem"), "utf8")).toBe(creds.certPem);
    expect(await fs.readFile(join(root, "etc/pki/libvirt/private/serverkey.pem"), "utf8")).toBe(creds.keyPem);
    expect(leftovers(join(root, "etc/pki/libvirt"))).toEqual([]);
    expect(leftovers(join(root, "etc/pki/libvirt/private"))).toEqual([]);
  });

  it("a corrupted payload fails its sha256 check before anything is replaced", async () => {
    const old = planInstall([server()]);
    expect(runScript(renderInstallScript(old, options(old)), renderPayload(old)).code).toBe(0);
    const next = planInstall([server({ ...creds, certPem: creds.otherCertPem, keyPem: creds.otherKeyPem })]);
    const payload = renderPayload(next);
    const i = payload.indexOf("MII") + 10;
    const corrupted = payload.slice(0, i) + (payload[i] === "A" ? "B" : "A") + payload.slice(i + 1);
    const r = runScript(renderInstallScript(next, options(next)), corrupted);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not match its sha256; nothing was replaced/);
    expect(await fs.readFile(join(root, "etc/pki/libvirt/servercert.pem"), "utf8")).toBe(creds.certPem);
    expect(leftovers(join(root, "etc/pki/libvirt"))).toEqual([]);
  });

  it("delete removes only files whose claim is still its own (create-before-delete replacement)", async () => {
    const a = planInstall([server()]);
    const b = planInstall([server({ ...creds, certPem: creds.otherCertPem, keyPem: creds.otherKeyPem })]);
    expect(options(a).generation).not.toBe(options(b).generation);
    expect(runScript(renderInstallScript(a, options(a)), renderPayload(a)).code).toBe(0);
    // Pulumi replaces the command when the triggers (content hashes) change: new create, then old delete.
    expect(runScript(renderInstallScript(b, options(b)), renderPayload(b)).code).toBe(0);
    const oldDelete = runScript(renderRemoveScript(a, options(a)));
    expect(oldDelete.code).toBe(0);
    expect(oldDelete.stdout).toContain("virt-pki-kept /etc/pki/CA/cacert.pem\n");
    // The CA file did not change between a and b, and is still there.
    expect(await fs.readFile(join(root, "etc/pki/CA/cacert.pem"), "utf8")).toBe(creds.caCertPem);
    expect(await fs.readFile(join(root, "etc/pki/libvirt/servercert.pem"), "utf8")).toBe(creds.otherCertPem);

    const finalDelete = runScript(renderRemoveScript(b, options(b)));
    expect(finalDelete.code).toBe(0);
    expect(finalDelete.stdout.match(/virt-pki-removed/g)).toHaveLength(3);
    await expect(fs.access(join(root, "etc/pki/CA/cacert.pem"))).rejects.toThrow();
    // Directories stay: other software may use them.
    expect(statSync(join(root, "etc/pki/libvirt/private")).isDirectory()).toBe(true);
  });

  it("per-user files in local mode land in <root>/home/<user>", async () => {
    const plan = planInstall([
      {
        kind: "libvirt-client-user",
        user: "root",
        caCertPem: creds.caCertPem,
        certPem: creds.certPem,
        keyPem: creds.keyPem,
      },
    ]);
    const r = runScript(renderInstallScript(plan, options(plan)), renderPayload(plan));
    expect(r.code).toBe(0);
    expect(parseManifest(r.stdout).map((e) => [e.path, e.hostPath.slice(root.length), e.mode])).toEqual([
      ["~root/.pki/libvirt/cacert.pem", "/root/.pki/libvirt/cacert.pem", "0600"],
      ["~root/.pki/libvirt/clientcert.pem", "/root/.pki/libvirt/clientcert.pem", "0600"],
      ["~root/.pki/libvirt/clientkey.pem", "/root/.pki/libvirt/clientkey.pem", "0600"],
    ]);
    expect(mode(join(root, "root/.pki/libvirt"))).toBe("0700");
  });

  it("refuses a host without a QEMU group, naming the fix", () => {
    const plan = planInstall([
      { kind: "qemu-server", caCertPem: creds.caCertPem, certPem: creds.certPem, keyPem: creds.keyPem },
    ]);
    const r = runScript(
      renderInstallScript(plan, options(plan, { qemuGroup: "no-such-group" })),
      renderPayload(plan),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/group no-such-group \(qemuGroup\) does not exist/);
    expect(existsSync(join(root, "etc/pki/qemu"))).toBe(false); // refused before anything was written
  });
});

describe("verifyManifest", () => {
  it("names the host and the file that differs", () => {
    const plan = planInstall([server()]);
    const f = plan.files[1];
    const stdout = plan.files
      .map(
        (x) =>
          `virt-pki-file ${x.path} /x${x.path} ${x === f ? "0".repeat(64) : x.sha256} ${x.mode.toString(8)} root root`,
      )
      .join("\n");
    expect(() =>
      verifyManifest(stdout, plan, { hostLabel: "compute2 (127.0.0.12)", setOwners: true }),
    ).toThrow(
      `install on compute2 (127.0.0.12) does not match what was sent:\n  /etc/pki/libvirt/servercert.pem: sha256 ${"0".repeat(64)} on the host, ${f.sha256} sent`,
    );
    expect(() => verifyManifest("", plan, { hostLabel: "h", setOwners: false })).toThrow(
      /\/etc\/pki\/CA\/cacert\.pem: missing from the host's manifest/,
    );
  });
});

describe("configuration snippets", () => {
  it("libvirtd.conf lines with the CRL and the allowed DNs; qemu.conf directories", () => {
    const plan = planInstall([
      { ...server(), crlPem: "-----BEGIN X509 CRL-----\nAA\n-----END X509 CRL-----" } as Layout,
    ]);
    expect(libvirtdConfSnippet(plan, ["C=GB,O=Libvirt Project,CN=client1"])).toBe(
      [
        "# TLS credentials installed by pulumi-virt-pki (libvirt's default paths)",
        'ca_file = "/etc/pki/CA/cacert.pem"',
        'cert_file = "/etc/pki/libvirt/servercert.pem"',
        'key_file = "/etc/pki/libvirt/private/serverkey.pem"',
        'crl_file = "/etc/pki/CA/cacrl.pem"',
        'tls_allowed_dn_list = ["C=GB,O=Libvirt Project,CN=client1"]',
        "",
      ].join("\n"),
    );
    const qemu: Layout[] = [
      { kind: "qemu", caCertPem: "", certPem: "", keyPem: "" },
      { kind: "qemu-server", service: "vnc", dir: "/srv/vnc-tls", caCertPem: "", certPem: "", keyPem: "" },
    ];
    expect(qemuConfSnippet(qemu)).toBe(
      [
        "# QEMU TLS directories installed by pulumi-virt-pki",
        'default_tls_x509_cert_dir = "/etc/pki/qemu"',
        "default_tls_x509_verify = 1",
        'vnc_tls_x509_cert_dir = "/srv/vnc-tls"',
        "vnc_tls_x509_verify = 1",
        "",
      ].join("\n"),
    );
    expect(libvirtdConfSnippet(planInstall([{ kind: "qemu-psk", keysPsk: "a:00" }]))).toBe("");
  });
});
