/**
 * An install asks `pki.checkTlsCredentials` about every TLS layout, with the files exactly as they would be
 * written: what libvirt or QEMU would refuse fails the preview naming the layout and the file, and nothing
 * reaches the host; what they would log is a warning on the resource. The certificates are the upstream
 * cases' (tests/fixtures/tls-acceptance/cases.ts, made with openssl), whose verdicts the real daemons
 * confirm in tests/consumers/tls-acceptance.test.ts.
 */
import { existsSync, promises as fs } from "node:fs";
import { join } from "node:path";
import { HostCredentialInstall } from "../../components";
import { checkLayoutCredentials, Layout } from "../../components/install";
import { CertSpec, TLS_ACCEPTANCE_CASES } from "../fixtures/tls-acceptance/cases";
import { up } from "../support/engine";
import { NO_DYNAMIC } from "../support/pulumiHost";
import { removeDir, tempDir } from "../support/programs";
import { CertFactory } from "../support/tlsCases";
import { createCertificateAuthority } from "../../provider/pki/ca";
import { issueCertificate } from "../../provider/pki/leaf";

/** A libvirt server case that the real libvirtd accepts without a warning, and its files. */
const good = TLS_ACCEPTANCE_CASES.find(
  (c) =>
    c.consumer === "libvirt" &&
    c.stage === "context" &&
    c.role === "server" &&
    c.expected === "accept" &&
    c.observed === undefined &&
    (c.daemonWarnings ?? []).length === 0,
)!;

let factory: CertFactory;
let files: { caCertPem: string; certPem: string; keyPem: string };
let dir: string;

beforeAll(async () => {
  factory = await CertFactory.create(good.cert!.key);
  files = {
    caCertPem: (await Promise.all(good.ca.map((s) => factory.certPem(s)))).join(""),
    certPem: await factory.certPem(good.cert!),
    keyPem: await fs.readFile(factory.keyFile, "utf8"),
  };
  dir = await tempDir("virt-pki-install-acceptance-");
}, 60_000);

afterAll(async () => {
  await factory?.dispose();
  await removeDir(dir);
});

function server(extra: Partial<{ caCertPem: string; certPem: string }> = {}): Layout {
  return { kind: "libvirt-server", ...files, ...extra };
}

/** The CA of the good case, expired yesterday: CloudStack #9562, an old CA left in the bundle. */
async function expiredCaPem(): Promise<string> {
  const old: CertSpec = {
    ...good.ca[0],
    id: "expired-old-ca",
    subject: { C: "GB", CN: "Old CA" },
    validity: { startHours: -72, expireHours: -24 },
  };
  return factory.certPem(old);
}

test("credentials libvirtd accepts pass, with the files as they would be written", () => {
  expect(checkLayoutCredentials([server()])).toEqual({ errors: [], warnings: [] });
});

test("an expired CA left in the CA file is refused, naming the layout and the file", async () => {
  const r = checkLayoutCredentials([
    { kind: "qemu-psk", keysPsk: "qemu:" + "ab".repeat(32) + "\n" },
    server({ caCertPem: files.caCertPem + (await expiredCaPem()) }),
  ] as Layout[]);
  expect(r.errors.map((e) => e.property)).toEqual(["layouts[1]"]);
  expect(r.errors[0].message).toContain("The CA certificate /etc/pki/CA/cacert.pem has expired");
});

test("a name clients use that the server certificate lacks is refused as libvirt words it", () => {
  const r = checkLayoutCredentials([server()], { serverNames: ["not-in-the-cert.example.org"] });
  expect(r.errors[0].message).toContain(
    "Certificate [session] owner does not match the hostname not-in-the-cert.example.org",
  );
});

test("a refused layout fails the up before its command exists: nothing reaches the host", async () => {
  const root = join(dir, "root");
  const bad = await expiredCaPem();
  const program = () => {
    new HostCredentialInstall("h", { root, layouts: [server({ caCertPem: files.caCertPem + bad })] });
  };
  await expect(up(program, NO_DYNAMIC, {})).rejects.toThrow(
    /layouts\[0\]: would be refused: libvirt server: The CA certificate/,
  );
  expect(existsSync(join(root, "etc"))).toBe(false);
});

test("what libvirt would only log is a warning on the install", async () => {
  // This library's EC leaves: a non-critical keyUsage without keyEncipherment (RFC 5480 allows none for EC),
  // which libvirtd 9.0 loads with a warning (README "Choices, and why": seen from the real daemon).
  const ca = await createCertificateAuthority({ subject: { commonName: "EC CA" }, keySpec: "ecdsa-p256" });
  const leaf = await issueCertificate({
    issuer: { certPem: ca.certPem, keyPem: ca.keyPem },
    profile: "server",
    subject: { commonName: "h1.example.org" },
    dnsNames: ["h1.example.org"],
    keySpec: "ecdsa-p256",
  });
  const layout: Layout = {
    kind: "libvirt-server",
    caCertPem: ca.certPem,
    certPem: leaf.certPem,
    keyPem: leaf.keyPem!,
  };
  const r = checkLayoutCredentials([layout]);
  expect(r).toEqual({
    errors: [],
    warnings: [
      "layouts[0] (libvirt server): Certificate /etc/pki/libvirt/servercert.pem usage does not permit key encipherment",
    ],
  });
  const logged = jest.spyOn(console, "warn").mockImplementation(() => undefined);
  try {
    await up(
      () => new HostCredentialInstall("w", { root: join(dir, "w"), layouts: [layout] }),
      NO_DYNAMIC,
      {},
    );
    const text = logged.mock.calls.map((c) => String(c[0])).join("\n");
    expect(text).toContain(r.warnings[0]);
  } finally {
    logged.mockRestore();
  }
});
