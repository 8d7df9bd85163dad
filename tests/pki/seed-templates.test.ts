/**
 * The seeds' certtool templates produce, through `pki`, certificates equal in content to what
 * `certtool --generate-certificate` makes from the same template, key and CA, with the documented
 * differences: CAs also get cRLSign (our CRLs need it), and a server's CN is added as a DNS SAN when
 * the template lacks it (GnuTLS ignores the CN once any DNS SAN exists). Both are read by openssl.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pki } from "../../index";
import { removeDir, run, tempDir, writeFiles } from "../support/programs";
import { opensslExtension, opensslText } from "./fixtures";

const TEMPLATES = join(__dirname, "..", "fixtures", "templates");
const template = (name: string) => readFileSync(join(TEMPLATES, name), "utf8");

interface Fields {
  subject: string;
  basicConstraints?: string;
  keyUsage?: string;
  extKeyUsage?: string;
  san: string[];
}

async function fields(file: string): Promise<Fields> {
  const text = await opensslText(file);
  const subject = /Subject: (.*)/.exec(text)?.[1].trim() ?? "";
  const ext = (n: string) => {
    const e = opensslExtension(text, n);
    return e && `${e.critical ? "critical " : ""}${e.value}`;
  };
  // extendedKeyUsage is a set: certtool lists clientAuth first, we list serverAuth first.
  const eku = opensslExtension(text, "Extended Key Usage");
  const san =
    opensslExtension(text, "Subject Alternative Name")
      ?.value.split(", ")
      .map((s) => s.toLowerCase()) ?? [];
  return {
    subject,
    basicConstraints: ext("Basic Constraints"),
    keyUsage: ext("Key Usage"),
    extKeyUsage: eku && `${eku.critical ? "critical " : ""}${eku.value.split(", ").sort().join(", ")}`,
    san: san.sort(),
  };
}

let dir: string;
let ca: pki.CertificateAuthority;
let caFiles: Record<string, string>;
beforeAll(async () => {
  dir = await tempDir("virt-pki-seeds-");
  ca = await pki.createCertificateAuthority({ template: template("libvirt-ca.info"), keySpec: "rsa-2048" });
  caFiles = await writeFiles(dir, { "ca.pem": ca.certPem, "ca-key.pem": ca.keyPem });
});
afterAll(() => removeDir(dir));

test.each(["libvirt-ca.info", "qemu-ca.info"])(
  "CA template %s matches certtool --generate-self-signed",
  async (name) => {
    const keyPem = await pki.generatePrivateKey("rsa-2048");
    const ours = await pki.createCertificateAuthority({ template: template(name), keyPem });
    const f = await writeFiles(dir, {
      [`${name}.tmpl`]: template(name),
      [`${name}.key`]: keyPem,
      [`${name}.ours.pem`]: ours.certPem,
    });
    const made = await run("certtool", [
      "--generate-self-signed",
      "--load-privkey",
      f[`${name}.key`],
      "--template",
      f[`${name}.tmpl`],
      "--outfile",
      join(dir, `${name}.certtool.pem`),
    ]);
    expect(made.code).toBe(0);
    const theirs = await fields(join(dir, `${name}.certtool.pem`));
    const mine = await fields(f[`${name}.ours.pem`]);
    expect(theirs.keyUsage).toBe("critical Certificate Sign");
    expect(mine).toEqual({
      ...theirs,
      keyUsage: "critical Certificate Sign, CRL Sign",
      basicConstraints: "critical CA:TRUE, pathlen:0",
    });
    expect(theirs.basicConstraints).toBe("critical CA:TRUE");
    expect(mine.subject).toBe("CN=Name of your organization");
  },
);

const LEAVES: [string, string[]][] = [
  ["libvirt-server.info", []],
  ["libvirt-client.info", []],
  ["wiki-host1-server.info", ["dns:host1"]],
  ["wiki-host2-server.info", ["dns:host2"]],
  ["qemu-server-hostNNN.info", []],
  ["qemu-client-hostNNN.info", []],
  ["qemu-both-hostNNN.info", []],
];

test.each(LEAVES)(
  "leaf template %s matches certtool --generate-certificate (extra SANs: %j)",
  async (name, extraSans) => {
    const keyPem = await pki.generatePrivateKey("rsa-2048");
    const ours = await pki.issueCertificate({ issuer: ca, template: template(name), keyPem });
    const f = await writeFiles(dir, {
      [`${name}.tmpl`]: template(name),
      [`${name}.key`]: keyPem,
      [`${name}.ours.pem`]: ours.certPem,
    });
    const made = await run("certtool", [
      "--generate-certificate",
      "--load-privkey",
      f[`${name}.key`],
      "--load-ca-certificate",
      caFiles["ca.pem"],
      "--load-ca-privkey",
      caFiles["ca-key.pem"],
      "--template",
      f[`${name}.tmpl`],
      "--outfile",
      join(dir, `${name}.certtool.pem`),
    ]);
    expect(made.code).toBe(0);
    const theirs = await fields(join(dir, `${name}.certtool.pem`));
    const mine = await fields(f[`${name}.ours.pem`]);
    expect(mine).toEqual({ ...theirs, san: [...theirs.san, ...extraSans].sort() });
    // Both verify against the CA with the real tools.
    const v = await run("certtool", [
      "--verify",
      "--load-ca-certificate",
      caFiles["ca.pem"],
      "--infile",
      f[`${name}.ours.pem`],
    ]);
    expect(v.code).toBe(0);
  },
);

test("the wiki's generic template (cn = Host Name) is refused as a server certificate with the fix", async () => {
  await expect(pki.issueCertificate({ issuer: ca, template: template("wiki-server.info") })).rejects.toThrow(
    'template.commonName: "Host Name" is not a host name; a server certificate\'s CN must be the name clients connect to',
  );
});
