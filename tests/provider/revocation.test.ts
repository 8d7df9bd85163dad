/**
 * Revocation that holds, at the handler level: a revoked leaf is never re-issued for any input change,
 * and a CRL keeps each serial with its original date and reason until the certificate has expired. The
 * CRLs are read back with `openssl crl`, the judge for what a CRL lists.
 */
import { certificate, certificateAuthority, revocationList } from "../../provider/handlers";
import { pki } from "../../index";
import { removeDir, runOrThrow, tempDir, writeFiles } from "../support/programs";

let caCreds: { certPem: string; keyPem: string };
let dir: string;
beforeAll(async () => {
  const ca = await certificateAuthority.create({
    subject: { commonName: "Revocation CA" },
    keySpec: "ecdsa-p256",
  });
  caCreds = { certPem: ca.outs.certPem as string, keyPem: ca.outs.keyPem as string };
  dir = await tempDir("virt-pki-revocation-");
});
afterAll(async () => {
  if (dir !== undefined) await removeDir(dir);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `openssl crl -noout -text` of a CRL. */
async function opensslCrl(crlPem: string): Promise<string> {
  await writeFiles(dir, { "crl.pem": crlPem });
  return (await runOrThrow("openssl", ["crl", "-noout", "-text", "-in", `${dir}/crl.pem`])).stdout;
}

/** The entries `openssl crl -text` prints: serial (upper-case hex), date as openssl prints it, reason. */
function listed(text: string): { serial: string; date: string; reason?: string }[] {
  const out: { serial: string; date: string; reason?: string }[] = [];
  const re =
    /Serial Number: ([0-9A-F]+)\s+Revocation Date: ([^\n]+)(?:\s+CRL entry extensions:\s+X509v3 CRL Reason Code:\s+([^\n]+))?/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out.push({
      serial: m[1].replace(/^0+/, ""),
      date: m[2].trim(),
      ...(m[3] ? { reason: m[3].trim() } : {}),
    });
  }
  return out;
}

/** How openssl prints an ISO time: `Nov 24 16:40:01 2026 GMT`. */
function opensslDate(iso: string): string {
  const d = new Date(iso);
  const mon = d.toLocaleString("en-US", { month: "short", timeZone: "UTC" });
  const day = String(d.getUTCDate()).padStart(2, " ");
  const t = d.toISOString().slice(11, 19);
  return `${mon} ${day} ${t} ${d.getUTCFullYear()} GMT`;
}

const hex = (serial: string) => serial.replace(/^0+/, "").toUpperCase();

describe("a revoked leaf is frozen", () => {
  const base = () => ({
    ca: caCreds,
    profile: "client" as const,
    subject: { commonName: "laptop" },
    keySpec: "ecdsa-p256",
    validityHours: 48,
    renewBeforeHours: 24,
  });

  test("no input change re-issues it, not keySpec, validityHours, subject, the CA or renewal", async () => {
    const stored = certificate.check({}, base()).inputs!;
    const created = await certificate.create(stored as never);
    const mark = certificate.check(stored, { ...base(), revoked: true, autoRenew: false }).inputs!;
    expect(mark.notAfter).toBe(created.outs.notAfter);
    // Marking is the one in-place update left (it records revokedAt).
    expect(certificate.diff(created.id, created.outs, mark as never)).toEqual({ changes: true });
    const marked = (await certificate.update(created.id, created.outs, mark as never)).outs;
    expect(marked.serialNumber).toBe(created.outs.serialNumber);
    expect(marked.revoked).toBe(true);
    const revokedAt = marked.revokedAt as string;
    expect(Math.abs(new Date(revokedAt).getTime() - Date.now())).toBeLessThan(60_000);

    const otherCa = await pki.createCertificateAuthority({
      subject: { commonName: "Next CA" },
      keySpec: "ecdsa-p256",
    });
    const changes: [string, Record<string, unknown>][] = [
      ["keySpec", { keySpec: "rsa-2048" }],
      ["validityHours", { validityHours: 36 }],
      ["subject", { subject: { commonName: "laptop2" } }],
      ["ca", { ca: otherCa }],
      ["renewal due", { renewBeforeHours: 47.99 }],
    ];
    for (const [what, over] of changes) {
      const news = certificate.check(mark, { ...base(), revoked: true, autoRenew: false, ...over }).inputs!;
      expect({ what, notAfter: news.notAfter }).toEqual({ what, notAfter: created.outs.notAfter });
      const d = certificate.diff(created.id, marked, news as never);
      expect({ what, d }).toEqual({ what, d: { changes: false } });
    }
    // Everything at once, still nothing to replace.
    const all = certificate.check(mark, {
      ...base(),
      revoked: true,
      autoRenew: false,
      keySpec: "rsa-2048",
      validityHours: 36,
      ca: otherCa,
    }).inputs!;
    expect(certificate.diff(created.id, marked, all as never)).toEqual({ changes: false });

    // Marked again later (an update retried with the mark): the revocation date does not move.
    await sleep(1100);
    const again = (await certificate.update(created.id, marked, mark as never)).outs;
    expect(again.revokedAt).toBe(revokedAt);
    expect(again.serialNumber).toBe(created.outs.serialNumber);

    // Un-revoking is the user's call: then the changed inputs re-issue it.
    const unrevoked = certificate.check({}, { ...base(), keySpec: "rsa-2048" }).inputs!;
    expect(certificate.diff(created.id, marked, unrevoked as never)).toEqual({
      changes: true,
      replaces: ["keySpec"],
    });
    const cleared = (await certificate.update(created.id, marked, base() as never)).outs;
    expect(cleared.revoked).toBeUndefined();
    expect(cleared.revokedAt).toBeUndefined();
  });
});

describe("the CRL ledger", () => {
  async function leaf(cn: string, validityHours = 48) {
    return pki.issueCertificate({
      issuer: caCreds,
      keySpec: "ecdsa-p256",
      profile: "client",
      subject: { commonName: cn },
      validityHours,
    });
  }

  test("an entry keeps its original date and the user's reason across re-signs, and outlives its input until notAfter", async () => {
    const a = await leaf("a");
    const b = await leaf("b");
    const first = revocationList.check(
      {},
      { ca: caCreds, revoked: [{ certPem: a.certPem, reason: "affiliationChanged" }] },
    ).inputs!;
    const created = await revocationList.create(first as never);
    const original = pki.inspectCrl(created.outs.crlPem as string).revoked[0].revocationDate;
    expect(created.outs.revokedCertificates).toEqual([
      {
        serialNumber: a.serialNumber,
        revocationDate: original,
        reason: "affiliationChanged",
        notAfter: a.notAfter,
      },
    ]);
    await sleep(1100);

    // b added: a keeps its date; b gets the one it is given.
    const bDate = "2026-01-02T03:04:05.000Z";
    const second = revocationList.check(
      {},
      {
        ca: caCreds,
        revoked: [
          { certPem: a.certPem, reason: "affiliationChanged" },
          { certPem: b.certPem, reason: "cessationOfOperation", revocationDate: bDate },
        ],
      },
    ).inputs!;
    const s2 = (await revocationList.update(created.id, created.outs, second as never)).outs;
    let text = await opensslCrl(s2.crlPem as string);
    expect(listed(text)).toEqual(
      expect.arrayContaining([
        { serial: hex(a.serialNumber), date: opensslDate(original), reason: "Affiliation Changed" },
        { serial: hex(b.serialNumber), date: opensslDate(bDate), reason: "Cessation Of Operation" },
      ]),
    );
    await sleep(1100);

    // Both dropped from the inputs (client removed, certificate resource gone): still listed, same dates.
    const none = revocationList.check({}, { ca: caCreds, revoked: [] }).inputs!;
    expect(revocationList.diff(created.id, s2, none as never)).toEqual({ changes: true });
    const s3 = (await revocationList.update(created.id, s2, none as never)).outs;
    text = await opensslCrl(s3.crlPem as string);
    expect(listed(text)).toHaveLength(2);
    expect(listed(text)).toEqual(
      expect.arrayContaining([
        { serial: hex(a.serialNumber), date: opensslDate(original), reason: "Affiliation Changed" },
        { serial: hex(b.serialNumber), date: opensslDate(bDate), reason: "Cessation Of Operation" },
      ]),
    );

    // Renewal due: re-signed in place (an update keeps the ledger), never replaced.
    const stale = { ...s3, nextUpdate: new Date(Date.now() + 3_600_000).toISOString() };
    expect(revocationList.diff(created.id, stale, none as never)).toEqual({ changes: true });
    const s4 = (await revocationList.update(created.id, stale, none as never)).outs;
    expect(listed(await opensslCrl(s4.crlPem as string))).toHaveLength(2);

    // Once a certificate is past notAfter, the next re-sign drops its entry (here: b's notAfter is passed).
    const expired = {
      ...s4,
      revokedCertificates: (s4.revokedCertificates as { serialNumber: string }[]).map((e) =>
        e.serialNumber === b.serialNumber ? { ...e, notAfter: new Date(Date.now() - 1000).toISOString() } : e,
      ),
    };
    const s5 = (await revocationList.update(created.id, expired, none as never)).outs;
    expect(listed(await opensslCrl(s5.crlPem as string)).map((e) => e.serial)).toEqual([hex(a.serialNumber)]);
  });

  test("a CRL signed before the ledger existed keeps the dates and reasons it lists", async () => {
    const a = await leaf("old");
    const inputs = revocationList.check(
      {},
      { ca: caCreds, revoked: [{ serialNumber: a.serialNumber, reason: "superseded" }] },
    ).inputs!;
    const created = await revocationList.create(inputs as never);
    const { revokedCertificates: _ledger, ...older } = created.outs;
    void _ledger;
    const date = pki.inspectCrl(created.outs.crlPem as string).revoked[0].revocationDate;
    await sleep(1100);
    const dropped = revocationList.check({}, { ca: caCreds }).inputs!;
    const s2 = (await revocationList.update(created.id, older, dropped as never)).outs;
    expect(listed(await opensslCrl(s2.crlPem as string))).toEqual([
      { serial: hex(a.serialNumber), date: opensslDate(date), reason: "Superseded" },
    ]);
  });

  test("a certificateHold is lifted when it leaves the inputs; a bad date names the property", async () => {
    const a = await leaf("held");
    const held = revocationList.check(
      {},
      { ca: caCreds, revoked: [{ certPem: a.certPem, reason: "certificateHold" }] },
    ).inputs!;
    const created = await revocationList.create(held as never);
    const s2 = (
      await revocationList.update(
        created.id,
        created.outs,
        revocationList.check({}, { ca: caCreds }).inputs as never,
      )
    ).outs;
    expect(pki.inspectCrl(s2.crlPem as string).revoked).toEqual([]);
    expect(
      revocationList.check(
        {},
        { ca: caCreds, revoked: [{ certPem: a.certPem, revocationDate: "yesterday" }] },
      ).failures?.[0],
    ).toEqual({
      property: "", // the input holds a certificate PEM: the engine would print it
      reason: expect.stringContaining('revoked[0].revocationDate: "yesterday" is not a date'),
    });
    // Only the reasons' own names: "toString" is on every object, and `in` took it.
    for (const reason of ["toString", "constructor", "__proto__"]) {
      expect(
        revocationList.check({}, { ca: caCreds, revoked: [{ serialNumber: "0a", reason }] } as never)
          .failures,
      ).toEqual([
        { property: "revoked", reason: expect.stringContaining("revoked[0].reason: unknown reason") },
      ]);
      expect(() =>
        pki.createCrl({ issuer: caCreds, revoked: [{ serialNumber: "0a", reason: reason as never }] }),
      ).toThrow(/unknown reason/);
    }
  });
});
