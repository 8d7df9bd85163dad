/** Shared test fixtures: a CA per key type, made once per test file, and file helpers for real programs. */
import { join } from "node:path";
import { pki } from "../../index";
import { run, tempDir, writeFiles } from "../support/programs";

/** A CA and a scratch directory holding its certificate as ca.pem. */
export interface CaFixture {
  ca: pki.CertificateAuthority;
  dir: string;
  caFile: string;
}

/** Creates a root CA of the given key type and writes ca.pem into a new temp dir. */
export async function makeCa(
  keySpec: pki.KeySpec,
  subject: pki.Subject = { commonName: "Test CA" },
): Promise<CaFixture> {
  const ca = await pki.createCertificateAuthority({ subject, keySpec });
  const dir = await tempDir(`virt-pki-${keySpec}-`);
  await writeFiles(dir, { "ca.pem": ca.certPem });
  return { ca, dir, caFile: join(dir, "ca.pem") };
}

/** `openssl verify` with extra args; resolves to its combined output and exit code. */
export async function opensslVerify(caFile: string, certFile: string, extra: string[] = []) {
  const r = await run("openssl", ["verify", "-CAfile", caFile, ...extra, certFile]);
  return { ok: r.code === 0, output: r.stdout + r.stderr };
}

/** `certtool --verify` against a CA file. */
export async function certtoolVerify(caFile: string, certFile: string) {
  const r = await run("certtool", ["--verify", "--load-ca-certificate", caFile, "--infile", certFile]);
  return { ok: r.code === 0, output: r.stdout + r.stderr };
}

/** `openssl x509 -text` of a certificate file. */
export async function opensslText(certFile: string): Promise<string> {
  const r = await run("openssl", ["x509", "-noout", "-text", "-nameopt", "RFC2253", "-in", certFile]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
}

/** The named X509v3 extension block of `openssl x509 -text` output: header line and its value lines. */
export function opensslExtension(
  text: string,
  name: string,
): { critical: boolean; value: string } | undefined {
  const lines = text.split("\n");
  const i = lines.findIndex((l) => l.trim().startsWith(`X509v3 ${name}:`) || l.trim().startsWith(`${name}:`));
  if (i < 0) return undefined;
  const value: string[] = [];
  for (let j = i + 1; j < lines.length && /^ {16}/.test(lines[j]); j++) value.push(lines[j].trim());
  return { critical: lines[i].includes("critical"), value: value.join("\n") };
}
