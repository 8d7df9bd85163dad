/**
 * What HostCredentialInstall hands to @pulumi/command, read off the SDK's mock monitor: the command
 * type, its create/update/delete scripts, the secret stdin, triggers, logging and options, and the
 * preview-time errors for bad input.
 */
import * as pulumi from "@pulumi/pulumi";
import { HostCredentialInstall } from "../../components";
import { renderPayload, planInstall } from "../../components/install";
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

const connection = { host: "127.0.0.21", port: 2222, user: "root", privateKey: "not-a-real-key" };

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
  it("registers one remote Command: scripts in clear without key material, the payload as secret stdin", async () => {
    let outputs: pulumi.Output<unknown>[] = [];
    const cmd = await commandOf(() => {
      const install = new HostCredentialInstall("h1", {
        connection,
        layouts: [serverLayout()],
        reloadCommand: "systemctl reload libvirtd",
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
    expect(typeof inputs.create).toBe("string");
    expect(inputs.update).toBe(inputs.create);
    expect(inputs.delete).toMatch(/virt-pki-removed/);
    const keyBody = leaf.keyPem.split("\n")[1];
    for (const k of ["create", "update", "delete"]) expect(String(inputs[k])).not.toContain(keyBody);
    expect(isSecretValue(inputs.stdin)).toBe(true);
    const plan = planInstall([{ ...serverLayout(), keyPem: leaf.keyPem }]);
    expect((inputs.stdin as { value: string }).value).toBe(renderPayload(plan));
    expect(inputs.triggers).toEqual(plan.files.map((f) => `${f.path} ${f.sha256}`));
    expect(inputs.logging).toBe("stdout");
    expect(inputs.addPreviousOutputInEnv).toBe(false);
    expect(cmd.options?.additionalSecretOutputs).toContain("stdin");
    expect(cmd.options?.parent).toMatch(/virt-pki:index:HostCredentialInstall::h1$/);
    expect(String(inputs.create)).toContain("sh -c 'systemctl reload libvirtd'");
    const [conf, files] = await Promise.all(outputs.map((o) => new Promise((r) => o.apply(r))));
    expect(conf).toContain('tls_allowed_dn_list = ["C=GB,CN=client1"]');
    expect((files as { path: string }[]).map((f) => f.path)).toEqual([
      "/etc/pki/CA/cacert.pem",
      "/etc/pki/libvirt/servercert.pem",
      "/etc/pki/libvirt/private/serverkey.pem",
    ]);
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
    expect(again.inputs.create).toBe(first.inputs.create);
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

describe("HostCredentialInstall locally under a root folder", () => {
  it("registers a local Command run by /bin/sh -c, without chown or SELinux by default", async () => {
    const cmd = await commandOf(() => {
      new HostCredentialInstall("stage", { root: "/tmp/staging/compute1", layouts: [serverLayout()] });
    });
    expect(cmd.type).toBe("command:local:Command");
    expect(cmd.inputs.interpreter).toEqual(["/bin/sh", "-c"]);
    expect(cmd.inputs.create).toContain("root='/tmp/staging/compute1'");
    expect(cmd.inputs.create).not.toContain("chown");
    expect(cmd.inputs.create).not.toContain("restorecon");
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
      "bad qemuGroup",
      () => new HostCredentialInstall("x", { connection, layouts: [serverLayout()], qemuGroup: "q m" }),
      /^qemuGroup:/,
    ],
  ];
  it.each(cases)("%s", async (_name, make, message) => {
    await expect(captureResources(make)).rejects.toThrow(message);
  });
});
