/** DN strings judged by libvirt's own `virt-pki-query-dn` (what tls_allowed_dn_list is matched against). */
import { pki } from "../../index";
import { removeDir, run, writeFiles } from "../support/programs";
import { CaFixture, makeCa } from "./fixtures";

let fx: CaFixture;
beforeAll(async () => {
  fx = await makeCa("ecdsa-p256");
});
afterAll(() => removeDir(fx.dir));

test.each([
  [
    {
      country: "GB",
      state: "London",
      locality: "London",
      organization: "Libvirt Project",
      commonName: "client1",
    },
  ],
  [
    {
      country: "GB",
      state: "London",
      locality: "City Of London",
      organization: "Name of your organization",
      organizationalUnit: "Virt",
      commonName: "hostnnn.foo.example.com",
    },
  ],
  [{ organization: "Acme, Inc.", commonName: "op+1" }],
  [{ domainComponents: ["org", "libvirt"], commonName: "dc-client", emailAddress: "ops@libvirt.org" }],
])("distinguishedName matches virt-pki-query-dn for %j", async (subject: pki.Subject) => {
  const cert = await pki.issueCertificate({
    issuer: fx.ca,
    keySpec: "ecdsa-p256",
    profile: "client",
    subject,
  });
  const f = await writeFiles(fx.dir, { "dn.pem": cert.certPem });
  const r = await run("virt-pki-query-dn", [f["dn.pem"]]);
  expect(r.code).toBe(0);
  expect(cert.distinguishedName).toBe(r.stdout.trim());
  expect(pki.distinguishedName(subject)).toBe(cert.distinguishedName);
});

test("the RFC 4514 form is what certtool -i prints as Subject", async () => {
  const cert = await pki.issueCertificate({
    issuer: fx.ca,
    keySpec: "ecdsa-p256",
    profile: "client",
    subject: {
      country: "GB",
      state: "London",
      locality: "London",
      organization: "Libvirt Project",
      commonName: "client1",
    },
  });
  const r = await run("certtool", ["-i"], { input: cert.certPem });
  expect(r.stdout).toContain(`Subject: ${cert.subjectDnRfc4514}`);
  expect(cert.subjectDnRfc4514).toBe("CN=client1,O=Libvirt Project,L=London,ST=London,C=GB");
});
