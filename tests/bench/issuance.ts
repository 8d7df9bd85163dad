/**
 * Issuance benchmark: certificates per second (fresh key + CA signature) for RSA-2048, RSA-3072 and
 * ECDSA P-256, sequentially and with every core busy, next to a shell loop of `openssl req -x509 -CA`
 * doing the same work in the same run, and the machine's limit for that work in this process: a bare key
 * generation (Node's, in the same thread pool) plus one signature by the CA key over a certificate-sized
 * buffer, nothing else. Run with `npm run bench` (optionally `BENCH_N=40`).
 * This is a benchmark, not a test: it asserts nothing and prints numbers.
 */
import { execFileSync } from "node:child_process";
import { createPrivateKey, sign } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { pki } from "../../index";
import { certificate, hostIdentities } from "../../provider/handlers";

const N = Number(process.env.BENCH_N ?? 24);
/**
 * In-process runs of ECDSA (ours and the limit) issue this many: at N=24 a run lasts a few milliseconds
 * and mostly measures warm-up. Each in-process run is preceded by an untimed one of the same size.
 */
const N_EC = Number(process.env.BENCH_N_EC ?? 600);
const CORES = availableParallelism();
const SPECS: pki.KeySpec[] = ["ecdsa-p256", "rsa-2048", "rsa-3072"];

/** Certificates per in-process run of this spec. */
const inProcessN = (spec: pki.KeySpec): number => (spec.startsWith("ecdsa") ? N_EC : N);

async function ours(ca: pki.CertificateAuthority, spec: pki.KeySpec, concurrency: number): Promise<number> {
  const n = inProcessN(spec);
  const start = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < n; i = next++) {
      await pki.issueCertificate({
        issuer: ca,
        keySpec: spec,
        subject: { commonName: `host${i}.example.com` },
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** The limit: a bare key pair generation and one CA signature per certificate, at the same concurrency. */
async function limit(ca: pki.CertificateAuthority, spec: pki.KeySpec, concurrency: number): Promise<number> {
  const caKey = createPrivateKey(ca.keyPem);
  const tbs = Buffer.alloc(500, 1); // about a leaf's to-be-signed part
  const hash = pki.signatureAlgorithmFor(pki.keySpecOf(caKey)).hash;
  const n = inProcessN(spec);
  const start = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < n; i = next++) {
      await pki.generateKey(spec);
      sign(hash, tbs, caKey);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

function opensslLoop(dir: string, spec: pki.KeySpec, concurrency: number): number {
  const newkey = spec === "ecdsa-p256" ? "ec -pkeyopt ec_paramgen_curve:P-256" : `rsa:${spec.slice(4)}`;
  const one =
    `openssl req -new -newkey ${newkey} -nodes -keyout "$d/k$i.pem" -subj "/CN=host$i.example.com" ` +
    `-addext "subjectAltName=DNS:host$i.example.com" -x509 -CA "$d/ca.pem" -CAkey "$d/cakey.pem" ` +
    `-days 365 -sha256 -out "$d/c$i.pem" 2>/dev/null`;
  const script = `d=${JSON.stringify(dir)}; seq 0 ${N - 1} | xargs -P ${concurrency} -I{} sh -c 'i={}; d="$0"; ${one.replace(/'/g, "'\\''")}' "$d"`;
  const start = process.hrtime.bigint();
  execFileSync("bash", ["-c", script], { stdio: "inherit" });
  return N / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function main(): Promise<void> {
  console.log(
    `issuance benchmark: N=${N} certificates per run (in process, ECDSA: ${N_EC}), ${CORES} cores, node ${process.version}`,
  );
  console.log(
    `${"key".padEnd(11)} ${"mode".padEnd(11)} ${"ours/s".padStart(8)} ${"openssl/s".padStart(10)} ${"ratio".padStart(6)} ` +
      `${"limit/s".padStart(8)} ${"of limit".padStart(8)}`,
  );
  for (const spec of SPECS) {
    const ca = await pki.createCertificateAuthority({
      subject: { commonName: `bench ${spec}` },
      keySpec: spec,
    });
    const dir = mkdtempSync(join(tmpdir(), "virt-pki-bench-"));
    try {
      writeFileSync(join(dir, "ca.pem"), ca.certPem);
      writeFileSync(join(dir, "cakey.pem"), ca.keyPem, { mode: 0o600 });
      for (const [mode, concurrency] of [
        ["sequential", 1],
        ["all cores", CORES * 2],
      ] as const) {
        if (spec.startsWith("ecdsa"))
          await Promise.all([ours(ca, spec, concurrency), limit(ca, spec, concurrency)]);
        const mine = await ours(ca, spec, concurrency);
        const theirs = opensslLoop(dir, spec, mode === "sequential" ? 1 : CORES);
        const bound = await limit(ca, spec, concurrency);
        console.log(
          `${spec.padEnd(11)} ${mode.padEnd(11)} ${mine.toFixed(1).padStart(8)} ${theirs.toFixed(1).padStart(10)} ${(mine / theirs).toFixed(2).padStart(6)}x ` +
            `${bound.toFixed(1).padStart(8)} ${((100 * mine) / bound).toFixed(0).padStart(7)}%`,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

/**
 * One fleet host's identities through the resource handlers, as `pulumi up` creates them: the single
 * server+client certificate a host had before per-role identities (`certificate`), and the server,
 * libvirt-client and QEMU identities of `HostIdentities` (three keys). Same CA, same run.
 */
async function perHost(): Promise<void> {
  const ca = await pki.createCertificateAuthority({
    subject: { commonName: "bench hosts" },
    keySpec: "ecdsa-p256",
  });
  const base = {
    ca: { certPem: ca.certPem, keyPem: ca.keyPem },
    keySpec: "ecdsa-p256",
    dnsNames: ["h.example.com", "h"],
    ipAddresses: ["192.0.2.1"],
  };
  const subject = (i: number) => ({ organization: "Bench", commonName: `h${i}.example.com` });
  const time = async (create: (i: number) => Promise<unknown>): Promise<number> => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await create(i);
    return Number(process.hrtime.bigint() - start) / 1e6 / N;
  };
  const one = await time((i) =>
    certificate.create(
      certificate.check({}, { ...base, subject: subject(i), profile: "server+client" }).inputs as never,
    ),
  );
  const three = await time((i) =>
    hostIdentities.create(
      hostIdentities.check({}, { ...base, subject: subject(i), roles: ["client", "qemu"] } as never)
        .inputs as never,
    ),
  );
  console.log(`per host (ecdsa-p256, handlers' check + create, N=${N}):`);
  console.log(`  one shared identity (before):      ${one.toFixed(2)} ms`);
  console.log(`  HostIdentities, three keys (now):  ${three.toFixed(2)} ms`);
}

main()
  .then(perHost)
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
