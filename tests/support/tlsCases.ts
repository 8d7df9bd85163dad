/**
 * Makes the certificates of {@link CertSpec}s (tests/fixtures/tls-acceptance/cases.ts) with the `openssl` CLI,
 * with exactly the extensions the spec lists and nothing else (no key identifiers, which OpenSSL 3.0 would add by default), into a temp directory.
 *
 * - The installed OpenSSL is 3.0, whose `openssl x509` cannot set notBefore/notAfter (its `-not_before` and
 *   `-not_after` came with 3.4) and `-days` cannot go negative; `faketime` is not installed. Certificates are
 *   therefore signed with `openssl ca -startdate -enddate` (a throwaway CA database per signature), which also
 *   sets the serial from a serial file and, with `-extensions`, always writes an X.509 v3 certificate (also when
 *   the section is empty, as for upstream's "no-basic" CA).
 * - One private key per factory, shared by every certificate, as upstream's helpers do (libvirt: EC P-384,
 *   QEMU: RSA 3072). Self-signed roots use `openssl ca -selfsign`.
 * - OpenSSL 3.0 writes a certificate WITHOUT extensions as X.509 v1 (`ca`, `x509 -req` and `req -x509` alike),
 *   while upstream sets version 3 on every certificate (GnuTLS treats v1 and v3 CAs differently). For a spec
 *   without any extension, {@link toV3} inserts the version field into the v1 certificate OpenSSL made and
 *   re-signs that TBSCertificate with `openssl dgst -sha256 -sign` (same key, same algorithm).
 * - An all-zero key usage (upstream "usage: none") cannot be written by name: it is the raw extension
 *   `2.5.29.15 = [critical,]DER:03:01:00` (an empty BIT STRING).
 */
import { promises as fs } from "fs";
import * as path from "path";
import type { CertSpec } from "../fixtures/tls-acceptance/cases";
import { runOrThrow, tempDir } from "./programs";

const C_ENV: NodeJS.ProcessEnv = { LC_ALL: "C", LANG: "C" };

/** Maps upstream extended key usage OIDs to OpenSSL's short names (others are written as OIDs). */
const EKU_NAMES: Record<string, string> = {
  "1.3.6.1.5.5.7.3.1": "serverAuth",
  "1.3.6.1.5.5.7.3.2": "clientAuth",
};

/** `YYMMDDHHMMSSZ` (UTCTime, as `openssl ca -startdate/-enddate` take it) of `ms`. */
function utcTime(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-11-24T20:57:13.000Z
  return (
    iso.slice(2, 4) +
    iso.slice(5, 7) +
    iso.slice(8, 10) +
    iso.slice(11, 13) +
    iso.slice(14, 16) +
    iso.slice(17, 19) +
    "Z"
  );
}

/** The `-subj` argument of a spec's subject (C then CN, as upstream writes them). */
function subjectArg(spec: CertSpec): string {
  const parts: string[] = [];
  const esc = (v: string): string => v.replace(/[/\\]/g, (c) => `\\${c}`);
  if (spec.subject.C !== null) parts.push(`/C=${esc(spec.subject.C)}`);
  if (spec.subject.CN !== null) parts.push(`/CN=${esc(spec.subject.CN)}`);
  return parts.join("");
}

/** The OpenSSL extension section lines of a spec: exactly its extensions, in upstream order. */
export function extensionLines(spec: CertSpec): string[] {
  const lines: string[] = [];
  const crit = (critical: boolean): string => (critical ? "critical," : "");
  const san = [...spec.altNames.dns.map((d) => `DNS:${d}`), ...spec.altNames.ip.map((i) => `IP:${i}`)];
  if (san.length > 0) lines.push(`subjectAltName = ${san.join(",")}`);
  const bc = spec.basicConstraints;
  if (bc.present) {
    lines.push(
      `basicConstraints = ${crit(bc.critical)}CA:${bc.isCA ? "TRUE" : "FALSE"}` +
        (bc.pathlen !== null ? `,pathlen:${bc.pathlen}` : ""),
    );
  }
  const ku = spec.keyUsage;
  if (ku.present) {
    lines.push(
      ku.bits.length === 0
        ? `2.5.29.15 = ${crit(ku.critical)}DER:03:01:00`
        : `keyUsage = ${crit(ku.critical)}${ku.bits.join(",")}`,
    );
  }
  const eku = spec.extKeyUsage;
  if (eku.present) {
    lines.push(`extendedKeyUsage = ${crit(eku.critical)}${eku.oids.map((o) => EKU_NAMES[o] ?? o).join(",")}`);
  }
  return lines;
}

/** Makes certificates of specs sharing one key; see the module comment. */
export class CertFactory {
  private readonly made = new Map<string, Promise<string>>();
  private counter = 0;

  private constructor(
    /** Directory holding everything the factory writes. */
    readonly dir: string,
    /** The PEM file of the one private key every certificate carries. */
    readonly keyFile: string,
    /** "Now" of every spec's validity offsets (ms since the epoch). */
    readonly now: number,
  ) {}

  /** Creates a factory with a fresh key of `keyType` in a new temp directory (remove it with {@link dispose}). */
  static async create(keyType: CertSpec["key"], now = Date.now()): Promise<CertFactory> {
    const dir = await tempDir("virt-pki-tlscases-");
    const keyFile = path.join(dir, "key.pem");
    const keyArgs =
      keyType === "ec-p384"
        ? ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]
        : ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"];
    await runOrThrow("openssl", ["genpkey", ...keyArgs, "-out", keyFile], { env: C_ENV });
    return new CertFactory(dir, keyFile, now);
  }

  /** The PEM of a spec's certificate (made once; issuers are made first). */
  certPem(spec: CertSpec): Promise<string> {
    let p = this.made.get(spec.id);
    if (p === undefined) {
      p = this.make(spec);
      this.made.set(spec.id, p);
    }
    return p;
  }

  /** Writes the PEMs of `specs`, concatenated in order, to `file` (a CA file may hold several). */
  async writeBundle(file: string, specs: readonly CertSpec[]): Promise<void> {
    const pems = await Promise.all(specs.map((s) => this.certPem(s)));
    await fs.writeFile(file, pems.join(""), { mode: 0o644 });
  }

  /** Removes the factory's directory. */
  async dispose(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  private async make(spec: CertSpec): Promise<string> {
    const issuerPem = spec.issuer !== null ? await this.certPem(spec.issuer) : undefined;
    const work = path.join(this.dir, `c${++this.counter}`);
    await fs.mkdir(work);
    const file = (n: string): string => path.join(work, n);
    const hour = 3_600_000;
    const conf = [
      "[ca]",
      "default_ca = tc",
      "[tc]",
      `database = ${file("index.txt")}`,
      `serial = ${file("serial")}`,
      `new_certs_dir = ${work}`,
      "default_md = sha256",
      "policy = anything",
      "unique_subject = no",
      "email_in_dn = no",
      "copy_extensions = none",
      "[anything]",
      "countryName = optional",
      "commonName = optional",
      "[ext]",
      // OpenSSL 3.0 adds key identifiers by default; upstream's certificates have none.
      "subjectKeyIdentifier = none",
      "authorityKeyIdentifier = none",
      ...extensionLines(spec),
      "",
    ].join("\n");
    await fs.writeFile(file("ca.cnf"), conf);
    await fs.writeFile(file("index.txt"), "");
    await fs.writeFile(file("serial"), spec.serialHex + "\n");
    await runOrThrow(
      "openssl",
      [
        "req",
        "-new",
        "-key",
        this.keyFile,
        "-subj",
        subjectArg(spec),
        "-config",
        file("ca.cnf"),
        "-out",
        file("csr.pem"),
      ],
      { env: { ...C_ENV, OPENSSL_CONF: file("ca.cnf") } },
    );
    const args = [
      "ca",
      "-batch",
      "-notext",
      "-preserveDN",
      "-config",
      file("ca.cnf"),
      "-extensions",
      "ext",
      "-keyfile",
      this.keyFile,
      "-startdate",
      utcTime(this.now + spec.validity.startHours * hour),
      "-enddate",
      utcTime(this.now + spec.validity.expireHours * hour),
      "-in",
      file("csr.pem"),
      "-out",
      file("cert.pem"),
    ];
    if (issuerPem === undefined) {
      args.push("-selfsign");
    } else {
      await fs.writeFile(file("issuer.pem"), issuerPem);
      args.push("-cert", file("issuer.pem"));
    }
    await runOrThrow("openssl", args, { env: C_ENV });
    const pem = await fs.readFile(file("cert.pem"), "utf8");
    return extensionLines(spec).length === 0 ? toV3(pem, this.keyFile, work) : pem;
  }
}

/** DER length octets of `n`. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** A DER TLV. */
function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/** Splits the DER element at `offset`: its tag, content and total length. */
function readTlv(der: Buffer, offset: number): { tag: number; content: Buffer; end: number } {
  const tag = der[offset];
  let len = der[offset + 1];
  let head = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[offset + 2 + i];
    head += n;
  }
  const start = offset + head;
  return { tag, content: der.subarray(start, start + len), end: start + len };
}

/**
 * Turns a v1 certificate (PEM) into the same certificate as X.509 v3 with no extensions: inserts
 * `[0] EXPLICIT INTEGER 2` at the head of the TBSCertificate and re-signs it with `keyFile` (SHA-256; the
 * signature algorithm identifier is kept, so it must be a SHA-256 one, as OpenSSL's `default_md = sha256` makes).
 */
export async function toV3(pem: string, keyFile: string, work: string): Promise<string> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  const cert = readTlv(der, 0);
  const tbs = readTlv(cert.content, 0);
  const alg = readTlv(cert.content, tbs.end);
  if (tbs.content[0] === 0xa0) return pem; // already versioned
  const version = tlv(0xa0, tlv(0x02, Buffer.from([2])));
  const newTbs = tlv(0x30, Buffer.concat([version, tbs.content]));
  const tbsFile = path.join(work, "tbs.der");
  await fs.writeFile(tbsFile, newTbs);
  const sigFile = path.join(work, "sig.bin");
  await runOrThrow("openssl", ["dgst", "-sha256", "-sign", keyFile, "-out", sigFile, tbsFile], {
    env: C_ENV,
  });
  const sig = await fs.readFile(sigFile);
  const algDer = cert.content.subarray(tbs.end, alg.end);
  const out = tlv(0x30, Buffer.concat([newTbs, algDer, tlv(0x03, Buffer.concat([Buffer.from([0]), sig]))]));
  const b64 = out.toString("base64").replace(/(.{64})/g, "$1\n");
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith("\n") ? "" : "\n"}-----END CERTIFICATE-----\n`;
}
