/**
 * The daemon configuration block, run for real by the fixed scripts on this machine (local mode, under a
 * temporary root): Debian's own libvirtd.conf and qemu.conf as the files, edited byte for byte, and the
 * attacks on the way to them (a symbolic link as the file, a directory others can write, a broken block).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import {
  DaemonConfig,
  INSTALL_SCRIPT,
  Layout,
  REMOVE_SCRIPT,
  checkDaemonConfig,
  installCommand,
  parseHostActions,
} from "../../components/install";
import { createCertificateAuthority, issueCertificate } from "../../provider/pki";
import { removeDir, tempDir } from "../support/programs";

const FIXTURES = join(__dirname, "..", "fixtures", "libvirt");
const STOCK_LIBVIRTD = readFileSync(join(FIXTURES, "libvirtd.conf"), "utf8");
const STOCK_QEMU = readFileSync(join(FIXTURES, "qemu.conf"), "utf8");

let layouts: Layout[];
let root: string;

beforeAll(async () => {
  const ca = await createCertificateAuthority({
    subject: { commonName: "Daemon Test CA" },
    keySpec: "ecdsa-p256",
  });
  const issuer = { certPem: ca.certPem, keyPem: ca.keyPem };
  const a = await issueCertificate({ issuer, subject: { commonName: "h1.test" }, keySpec: "ecdsa-p256" });
  const trust = { caCertPem: ca.certPem };
  layouts = [
    { kind: "libvirt-server", ...trust, certPem: a.certPem, keyPem: a.keyPem! },
    { kind: "qemu", service: "vnc", ...trust, certPem: a.certPem, keyPem: a.keyPem! },
  ];
});

beforeEach(async () => {
  root = await tempDir("virt-pki-daemon-");
  await fs.mkdir(join(root, "etc/libvirt"), { recursive: true, mode: 0o755 });
  await fs.chmod(join(root, "etc"), 0o755);
  await fs.chmod(join(root, "etc/libvirt"), 0o755);
});

afterEach(async () => {
  await removeDir(root);
});

function command(config: DaemonConfig = { daemon: "libvirtd", qemuTls: ["vnc"] }, dns = ["CN=op,O=Example"]) {
  return installCommand({
    name: "h1",
    hostLabel: "h1.test",
    target: `local:${root}`,
    root,
    layouts,
    setOwners: false,
    selinux: false,
    daemonConfig: config,
    tlsAllowedDnList: dns,
  });
}

function run(script: string, stdin: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync("/bin/sh", ["-c", script], { input: stdin, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const conf = (name: string) => join(root, "etc/libvirt", name);

describe("the daemon configuration block", () => {
  it("goes first into Debian's libvirtd.conf and qemu.conf; a second run changes nothing; delete restores the files", async () => {
    // Statements of the block's keys: one alone (commented out), one sharing its line with another key
    // through ";" and one with a triple-quoted string (both left as they are: the block, first, wins).
    const site =
      'key_file = "/old.pem"\n' +
      'log_level = 3; cert_file = "/stale.pem"\n' +
      'ca_file = """/etc/pki/\nold-ca.pem"""\n' +
      'tls_allowed_dn_list = ["CN=x"]; log_level = 2\n';
    await fs.writeFile(conf("libvirtd.conf"), STOCK_LIBVIRTD + site, { mode: 0o644 });
    await fs.writeFile(conf("qemu.conf"), STOCK_QEMU, { mode: 0o600 });
    const c = command();
    const first = run(INSTALL_SCRIPT, c.stdin);
    expect(first.stderr).toBe("");
    expect(parseHostActions(first.stdout).confsChanged).toEqual([
      "/etc/libvirt/libvirtd.conf",
      "/etc/libvirt/qemu.conf",
    ]);
    const begin =
      "# BEGIN pulumi-virt-pki: these settings are managed by the Pulumi program; edits here are replaced\n";
    const text = await fs.readFile(conf("libvirtd.conf"), "utf8");
    expect(text).toBe(
      begin +
        'ca_file = "/etc/pki/CA/cacert.pem"\n' +
        'cert_file = "/etc/pki/libvirt/servercert.pem"\n' +
        'key_file = "/etc/pki/libvirt/private/serverkey.pem"\n' +
        'tls_allowed_dn_list = ["CN=op,O=Example"]\n' +
        "tls_no_verify_certificate = 0\n" +
        // The listener goes with the server's TLS files unless listenTls is false.
        "listen_tls = 1\n" +
        "# END pulumi-virt-pki\n" +
        STOCK_LIBVIRTD +
        '#pulumi-virt-pki# key_file = "/old.pem"\n' +
        'log_level = 3; cert_file = "/stale.pem"\n' +
        'ca_file = """/etc/pki/\nold-ca.pem"""\n' +
        'tls_allowed_dn_list = ["CN=x"]; log_level = 2\n',
    );
    const q = await fs.readFile(conf("qemu.conf"), "utf8");
    expect(q).toBe(
      begin +
        'vnc_tls_x509_cert_dir = "/etc/pki/libvirt-vnc"\nvnc_tls_x509_verify = 1\nvnc_tls = 1\n# END pulumi-virt-pki\n' +
        STOCK_QEMU,
    );
    expect((await fs.stat(conf("qemu.conf"))).mode & 0o777).toBe(0o600);

    const second = run(INSTALL_SCRIPT, c.stdin);
    expect(second.code).toBe(0);
    expect(parseHostActions(second.stdout).confsChanged).toEqual([]);
    expect(await fs.readFile(conf("libvirtd.conf"), "utf8")).toBe(text);

    const removed = run(REMOVE_SCRIPT, c.stdin);
    expect(removed.stderr).toBe("");
    expect(await fs.readFile(conf("libvirtd.conf"), "utf8")).toBe(STOCK_LIBVIRTD + site);
    expect(await fs.readFile(conf("qemu.conf"), "utf8")).toBe(STOCK_QEMU);
  });

  it("a new DN list replaces the block in place, and the file is created (0644) where it was missing", async () => {
    const a = run(INSTALL_SCRIPT, command().stdin);
    expect(a.code).toBe(0);
    expect((await fs.stat(conf("libvirtd.conf"))).mode & 0o777).toBe(0o644);
    const b = run(
      INSTALL_SCRIPT,
      command(undefined, ["CN=op,O=Example", "CN=two # not a comment],O=x"]).stdin,
    );
    expect(b.stderr).toBe("");
    const text = await fs.readFile(conf("libvirtd.conf"), "utf8");
    expect(text.match(/tls_allowed_dn_list/g)).toHaveLength(1);
    expect(text).toContain('tls_allowed_dn_list = ["CN=op,O=Example", "CN=two # not a comment],O=x"]');
  });

  it("refuses a symbolic link as the file, leaving the link and its target alone", async () => {
    const target = join(root, "elsewhere.conf");
    await fs.writeFile(target, "listen_tls = 0\n");
    await fs.symlink(target, conf("libvirtd.conf"));
    const r = run(INSTALL_SCRIPT, command().stdin);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("/etc/libvirt/libvirtd.conf is a symbolic link; refusing to edit it");
    expect(await fs.readlink(conf("libvirtd.conf"))).toBe(target);
    expect(await fs.readFile(target, "utf8")).toBe("listen_tls = 0\n");
    // Refused before the first file: no credentials, no claims.
    expect(existsSync(join(root, "etc", "pki"))).toBe(false);
    expect(existsSync(join(root, "var", "lib", "virt-pki"))).toBe(false);
  });

  it("refuses /etc/libvirt when another user can write it (they could swap the file under root)", async () => {
    await fs.chmod(conf(""), 0o777);
    await fs.writeFile(conf("libvirtd.conf"), STOCK_LIBVIRTD);
    const r = run(INSTALL_SCRIPT, command().stdin);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refusing to write below .*etc\/libvirt \(drwxrwxrwx/);
    expect(await fs.readFile(conf("libvirtd.conf"), "utf8")).toBe(STOCK_LIBVIRTD);
  });

  it("without awk: the install stops before anything is written; a delete with no file left to edit needs none", async () => {
    // The scripts set their own PATH, so awk is hidden where they look: /usr/bin/awk (and /bin/awk, the same
    // file on this system) is covered by a non-executable file in a mount namespace of its own.
    const script = join(root, "script.sh");
    const withoutAwk = (text: string, stdin: string) => {
      writeFileSync(script, text);
      const r = spawnSync(
        "unshare",
        ["-m", "/bin/sh", "-c", `mount --bind /dev/null /usr/bin/awk && exec /bin/sh ${script}`],
        { input: stdin, encoding: "utf8", timeout: 60_000 },
      );
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const c = command();
    const install = withoutAwk(INSTALL_SCRIPT, c.stdin);
    expect(install.code).toBe(1);
    expect(install.stderr).toContain("awk is missing on this host: it edits /etc/libvirt/libvirtd.conf");
    expect(existsSync(join(root, "etc", "pki"))).toBe(false);
    expect(existsSync(join(root, "var", "lib", "virt-pki"))).toBe(false);
    // Installed with awk, then the configuration files deleted by hand: the delete has no block to take
    // out, so it needs no awk either.
    expect(run(INSTALL_SCRIPT, c.stdin).code).toBe(0);
    await fs.rm(conf("libvirtd.conf"));
    await fs.rm(conf("qemu.conf"));
    const removed = withoutAwk(REMOVE_SCRIPT, c.stdin);
    expect({ code: removed.code, stderr: removed.stderr }).toEqual({ code: 0, stderr: "" });
    expect(existsSync(join(root, "etc", "pki", "libvirt", "servercert.pem"))).toBe(false);
  });

  it("stops on a block whose end line was deleted, instead of dropping the rest of the file", async () => {
    const broken =
      "# BEGIN pulumi-virt-pki: these settings are managed by the Pulumi program; edits here are replaced\n" +
      'ca_file = "/x"\nlisten_addr = "192.0.2.1"\n';
    await fs.writeFile(conf("libvirtd.conf"), broken);
    const r = run(INSTALL_SCRIPT, command().stdin);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "/etc/libvirt/libvirtd.conf has the line that begins the pulumi-virt-pki block but not the one that ends it",
    );
    expect(await fs.readFile(conf("libvirtd.conf"), "utf8")).toBe(broken);
    expect(existsSync(join(root, "etc", "pki"))).toBe(false);
    expect(existsSync(join(root, "var", "lib", "virt-pki"))).toBe(false);
    expect((await fs.readdir(conf(""))).sort()).toEqual(["libvirtd.conf"]);
  });
});

describe("the daemon configuration's inputs", () => {
  it("names the property and the fix", () => {
    expect(() => checkDaemonConfig({ daemon: "qemud" })).toThrow(
      'daemonConfig.daemon: "qemud" is not "auto", "libvirtd" or "virtproxyd"',
    );
    expect(() => checkDaemonConfig({ qemuTls: ["vnc", "rdp"] })).toThrow(
      'daemonConfig.qemuTls[1]: "rdp" is not one of "vnc", "spice", "chardev", "nbd"',
    );
    expect(() => checkDaemonConfig({ listen: true })).toThrow("daemonConfig.listen: is not a setting");
    expect(() => command({})).toThrow(
      'daemonConfig.daemon: cannot be detected in a local install; declare "libvirtd" or "virtproxyd"',
    );
    expect(() =>
      installCommand({
        name: "h",
        hostLabel: "h",
        target: `local:${root}`,
        root,
        layouts,
        setOwners: false,
        selinux: false,
        reload: "auto",
      }),
    ).toThrow('reload: "auto" reloads a running daemon on a host');
    expect(() => command(undefined, ['CN=a"b'])).toThrow("tlsAllowedDnList[0]");
    expect(() => command(undefined, ["CN=*"])).toThrow("tlsAllowedDnList[0]");
  });
});
