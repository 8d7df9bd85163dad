/**
 * Error messages never repeat input text that could be key material: a private key (or one line of its
 * base64 body) given where a template, a name, a serial or a command was expected is refused without
 * being quoted. Messages reach previews, logs and CI output in clear text.
 */
import { generateKeyPairSync } from "node:crypto";
import { pki } from "../../index";
import { reloadArgv } from "../../components/install/planData";
import { Layout, planInstall } from "../../components/install";
import { checkFailureText } from "../support/engine";
import { certificate, revocationList } from "../../provider/handlers";

const keyPem = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({
  type: "pkcs8",
  format: "pem",
}) as string;
/** The lines of the key's base64 body (64 characters each, the last one shorter). */
const bodyLines = keyPem.split("\n").filter((l) => l !== "" && !l.startsWith("-----"));
/** Its full 64-character lines: each is tried in every case below. */
const fullLines = bodyLines.filter((l) => l.length === 64);

/** The message of what `fn` throws (it must throw). */
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected an error");
}

/** Whether `message` repeats any 10 consecutive characters of `secret`. */
function repeats(message: string, secret: string): boolean {
  for (let i = 0; i + 10 <= secret.length; i++) if (message.includes(secret.slice(i, i + 10))) return true;
  return false;
}

function expectNoKeyText(message: string, secret: string): void {
  expect(message).not.toMatch(/PRIVATE KEY/);
  expect(repeats(message, secret)).toBe(false);
}

describe("a certtool template", () => {
  test.each(fullLines)(
    "a line of a key's base64 body is refused by line number, not quoted (line %#)",
    (keyLine) => {
      const message = messageOf(() => pki.parseCerttoolTemplate(`cn = host1\n${keyLine}\ntls_www_server\n`));
      expect(message).toMatch(/^template:2: this line holds PEM or base64 text/);
      expectNoKeyText(message, keyLine);
    },
  );

  test("a whole pasted key is refused at its first line", () => {
    const message = messageOf(() => pki.parseCerttoolTemplate(`cn = host1\n${keyPem}`));
    expect(message).toMatch(/^template:2: /);
    for (const line of bodyLines) expectNoKeyText(message, line);
  });

  test.each(fullLines)("key text after a keyword is not repeated (line %#)", (keyLine) => {
    for (const text of [`cn:x${keyLine}`, `${keyLine.slice(0, 30)} = x`, `dns_name = ${keyLine}`]) {
      const message = messageOf(() => pki.parseCerttoolTemplate(`${text}\n`));
      expect(message).toMatch(/^template:1: /);
      expectNoKeyText(message, keyLine);
    }
  });

  test("short, plain values are still quoted", () => {
    expect(messageOf(() => pki.parseCerttoolTemplate("orgnization = x\n"))).toBe(
      'template:1: unknown keyword "orgnization"; did you mean "organization"?',
    );
  });
});

describe("other inputs", () => {
  test.each<[string, (keyLine: string) => unknown]>([
    ["keySpec", (l) => pki.parseKeySpec(l)],
    ["a DNS name", (l) => pki.normalizeDnsName(l)],
    ["an IP address", (l) => pki.normalizeIpAddress(l)],
    ["a serial number", (l) => pki.normalizeSerial(l)],
    ["a country", (l) => pki.normalizeSubject({ commonName: "x", country: l })],
    ["an e-mail SAN", (l) => pki.normalizeAltNames({ emailAddresses: [l] })],
    ["hours", (l) => pki.checkHours(l, "validityHours")],
    ["a PSK username", (l) => pki.createPreSharedKeys([`${l} x`])],
    ["a reload command", (l) => reloadArgv(`systemctl reload ${l};`)],
    ["a revocation date", (l) => pki.isoSecond(l, "revoked[0].revocationDate")],
    ["a leaf subject with a glob", (l) => pki.checkDnListSubject({ commonName: `${l}*` }, "subject")],
    [
      "an install path",
      (l) => planInstall([{ kind: "custom", dir: `/etc/${l}!`, files: [{ name: "a", content: "x" }] }]),
    ],
    [
      "a custom file name",
      (l) => planInstall([{ kind: "custom", dir: "/etc/x", files: [{ name: `${l}!`, content: "x" }] }]),
    ],
    [
      "a user name",
      (l) =>
        planInstall([
          { kind: "custom", dir: "/etc/x", dirOwner: l, files: [{ name: "a", content: "x" }] } as Layout,
        ]),
    ],
    ["a whole key as keySpec", () => pki.parseKeySpec(keyPem)],
  ])("%s holding key text", (_what, fn) => {
    for (const keyLine of fullLines) {
      const message = messageOf(() => fn(keyLine));
      expectNoKeyText(message, keyLine);
      expect(message).toMatch(/not repeated/);
    }
  });

  test("a CRL's revoked entries: a reason, a date or a notAfter holding key text", () => {
    const ca = { certPem: "x", keyPem: "y" };
    for (const keyLine of fullLines) {
      for (const field of ["reason", "revocationDate", "notAfter"]) {
        const failures =
          revocationList.check({}, { ca, revoked: [{ serialNumber: "01", [field]: keyLine }] } as never)
            .failures ?? [];
        const mine = failures.filter((f) => f.reason.startsWith(`revoked[0].${field}`));
        expect({ field, failures: mine.length }).toEqual({ field, failures: 1 });
        expectNoKeyText(mine[0].reason, keyLine);
      }
    }
  });

  test("a check failure, as the engine prints it, repeats no key text", () => {
    const news = {
      ca: { certPem: "x", keyPem },
      profile: "server",
      subject: { commonName: "h" },
      keySpec: keyPem,
    };
    const failures = certificate.check({}, news as never).failures ?? [];
    expect(failures.length).toBeGreaterThan(0);
    const printed = failures
      .map((f) => checkFailureText("virt-pki:ServerCertificate", "h", news, f))
      .join("\n");
    for (const line of bodyLines) expectNoKeyText(printed, line);
  });
});
