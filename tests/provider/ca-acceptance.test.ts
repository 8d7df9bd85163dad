/**
 * A CA that enters from elsewhere (an import, a parent, PEM given to a leaf or a CRL) is asked what libvirt and
 * QEMU would say of it in their CA file (`pki.checkTlsCaFile`): a CA they would refuse fails the check, in
 * libvirt's words, before anything it signs is installed. Each case passed every check before this defence
 * (loadIssuer checks CA:TRUE, keyCertSign and the key, never times or the chain's other certificates).
 */
import { certificate, certificateAuthority, revocationList } from "../../provider/handlers";
import { pki } from "../../index";

const HOUR = 3_600_000;
const NOW = new Date();

/** A CA issued at `now` for `validityHours`, as another stack or a corporate PKI would hand it over. */
async function caAt(now: Date, validityHours: number, commonName: string) {
  const ca = await pki.createCertificateAuthority({
    subject: { commonName },
    keySpec: "ecdsa-p256",
    validityHours,
    now,
  });
  return { certPem: ca.certPem, keyPem: ca.keyPem, chainPem: ca.chainPem };
}

/** The one failure of a check, as the engine would print it. */
function failure(r: { failures?: { property: string; reason: string }[] }): string {
  expect(r.failures).toHaveLength(1);
  return r.failures![0].reason;
}

let expired: { certPem: string; keyPem: string; chainPem: string };
let notYet: { certPem: string; keyPem: string; chainPem: string };
let good: { certPem: string; keyPem: string; chainPem: string };
beforeAll(async () => {
  expired = await caAt(new Date(NOW.getTime() - 48 * HOUR), 24, "Expired CA");
  notYet = await caAt(new Date(NOW.getTime() + 48 * HOUR), 87600, "Future CA");
  good = await caAt(NOW, 87600, "Good CA");
});

describe("CertificateAuthority import", () => {
  test("an expired CA is refused in libvirt's words", () => {
    expect(failure(certificateAuthority.check({}, { import: expired }, NOW))).toBe(
      "import.certPem: libvirt and QEMU would refuse this CA: The CA certificate /etc/pki/CA/cacert.pem has expired",
    );
  });

  test("a CA not yet active (another machine's clock ahead) is refused", () => {
    expect(failure(certificateAuthority.check({}, { import: notYet }, NOW))).toContain(
      "The CA certificate /etc/pki/CA/cacert.pem is not yet active",
    );
  });

  test("a good CA passes, and the same CA fails once the clock passes its end", () => {
    expect(certificateAuthority.check({}, { import: good }, NOW).failures).toBeUndefined();
    const later = new Date(NOW.getTime() + 87601 * HOUR);
    expect(failure(certificateAuthority.check({}, { import: good }, later))).toContain("has expired");
  });
});

describe("CertificateAuthority parent", () => {
  test("a parent whose chain holds a certificate that is not a CA is refused on parent.chainPem", async () => {
    const leaf = await pki.issueCertificate({
      issuer: good,
      keySpec: "ecdsa-p256",
      profile: "server",
      subject: { commonName: "not-a-ca.example.org" },
      dnsNames: ["not-a-ca.example.org"],
    });
    const parent = { ...good, chainPem: good.chainPem + leaf.certPem };
    expect(failure(certificateAuthority.check({}, { subject: { commonName: "Sub" }, parent }, NOW))).toBe(
      "parent.chainPem: libvirt and QEMU would refuse this CA: " +
        "The certificate /etc/pki/CA/cacert.pem basic constraints do not show a CA",
    );
  });

  test("a parent not yet active is refused before anything is signed", () => {
    const r = certificateAuthority.check({}, { subject: { commonName: "Sub" }, parent: notYet }, NOW);
    expect(failure(r)).toContain("parent.certPem: libvirt and QEMU would refuse this CA");
  });
});

describe("a CA given as PEM to a leaf or a CRL", () => {
  test("a leaf's CA not yet active fails the leaf's check", () => {
    const r = certificate.check(
      {},
      {
        ca: notYet,
        profile: "server",
        subject: { commonName: "h.example.org" },
        dnsNames: ["h.example.org"],
      },
      { now: NOW },
    );
    expect(failure(r)).toBe(
      "ca.certPem: libvirt and QEMU would refuse this CA: The CA certificate /etc/pki/CA/cacert.pem is not yet active",
    );
  });

  test("a CRL's expired CA fails the CRL's check", () => {
    expect(failure(revocationList.check({}, { ca: expired, revoked: [] }, NOW))).toContain(
      "ca.certPem: libvirt and QEMU would refuse this CA: The CA certificate /etc/pki/CA/cacert.pem has expired",
    );
  });

  test("a revoked certificate, frozen for good, is not refused for its old CA having expired since", () => {
    const r = certificate.check(
      {},
      {
        ca: expired,
        profile: "client",
        subject: { commonName: "laptop" },
        revoked: true,
        autoRenew: false,
        truncateToIssuer: true,
      },
      { now: NOW },
    );
    expect(r.failures ?? []).not.toContainEqual(
      expect.objectContaining({ reason: expect.stringContaining("would refuse this CA") }),
    );
  });

  test("the message names no key material and the failure no secret property", () => {
    const r = revocationList.check({}, { ca: expired, revoked: [] }, NOW);
    expect(r.failures![0].property).toBe("");
    expect(JSON.stringify(r)).not.toContain("PRIVATE KEY");
  });
});
