/**
 * Install benchmark: what one host install costs, measured on the commands `HostCredentialInstall` hands to
 * `@pulumi/command`, run for real by /bin/sh (dash) and bash (root's login shell on Debian/Fedora, which runs
 * a `remote.Command`), under a temporary root as root with owners and SELinux on, as over SSH.
 *
 * For the fleet's usual host (libvirt-server, libvirt-client, the combined QEMU layout, keys.psk; ECDSA) it
 * prints, per install:
 * - processes (execve) and forks (clone/fork/vfork), counted by strace -f, for a first install;
 * - CPU (user + system of the shell and every child, from bash's `time`) per install, averaged over
 *   BENCH_INSTALL_N runs, for a renewal (every certificate and key changes) and for a re-run that changes
 *   nothing;
 * - the bytes the command keeps in state (inputs + outputs, as the engine stores them for a
 *   `remote.Command`: its outputs repeat its inputs and add stdout/stderr), with and without the file
 *   contents themselves, and the size of the shell text.
 * A benchmark, not a test: it asserts nothing and prints numbers.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { HostCredentialInstall, LayoutArgs, pki } from "../../index";

const N = Number(process.env.BENCH_INSTALL_N ?? 40);

type Inputs = Record<string, unknown>;

/** Replaces the SDK's secret sentinels by their values. */
function reveal(value: unknown): unknown {
  if (value !== null && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if (v[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig) return reveal(v.value);
    if (Array.isArray(value)) return value.map(reveal);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reveal(x)]));
  }
  return value;
}

/** The inputs of the one command a program registers, as the command provider receives them. */
async function commandInputs(program: () => void): Promise<Inputs> {
  const found: Inputs[] = [];
  let pending = 0;
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        pending++;
        if (args.type.startsWith("command:")) found.push(reveal(args.inputs) as Inputs);
        pending--;
        return { id: `${args.name}-id`, state: args.inputs };
      },
      call: (args) => args.inputs,
    },
    "bench",
    "bench",
    false,
  );
  program();
  for (let i = 0; i < 200 && (found.length === 0 || pending > 0); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 50));
  if (found.length !== 1) throw new Error(`expected one command, got ${found.length}`);
  return found[0];
}

interface Identity {
  caCertPem: string;
  crlPem: string;
  certPem: string;
  keyPem: string;
  keysPsk: string;
}

async function identity(ca: pki.CertificateAuthority, crlPem: string): Promise<Identity> {
  const leaf = await pki.issueCertificate({
    issuer: ca,
    profile: "server+client",
    keySpec: "ecdsa-p256",
    subject: { organization: "Bench", commonName: "compute1.bench.test" },
    dnsNames: ["compute1"],
    ipAddresses: ["192.0.2.10"],
  });
  return {
    caCertPem: ca.certPem,
    crlPem,
    certPem: leaf.certPem,
    keyPem: leaf.keyPem!,
    keysPsk: pki.createPreSharedKeys(["qemu"]).keysPsk,
  };
}

function layouts(id: Identity): LayoutArgs[] {
  const creds = { caCertPem: id.caCertPem, crlPem: id.crlPem, certPem: id.certPem, keyPem: id.keyPem };
  return [
    { kind: "libvirt-server", ...creds },
    { kind: "libvirt-client", ...creds },
    { kind: "qemu", ...creds },
    { kind: "qemu-psk", dir: "/etc/pki/qemu-psk", keysPsk: id.keysPsk },
  ];
}

/** The command of the fleet's usual host: local under `root`, owners and SELinux on (as over SSH). */
function hostInstall(root: string, id: Identity): Promise<Inputs> {
  return commandInputs(() => {
    new HostCredentialInstall("compute1", {
      checkDrift: false, // no HostProbe: this program has no dynamic resources
      root,
      setOwners: true,
      selinux: true,
      layouts: layouts(id),
    });
  });
}

function remoteInstall(id: Identity): Promise<Inputs> {
  return commandInputs(() => {
    new HostCredentialInstall("compute1", {
      checkDrift: false, // no HostProbe: this program has no dynamic resources
      connection: {
        host: "192.0.2.10",
        user: "root",
        privateKey: "(an SSH key)",
        hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKw6hJ3n9m0C2mA4y1s9gXo2o8P0rQ6mQp3ZxXb3Yk2F",
      },
      layouts: layouts(id),
    });
  });
}

/** Runs `cmd` with `shell -c` and the command's stdin; throws on failure. */
function runOnce(shell: string, cmd: Inputs): string {
  // spawnSync's input is a pipe, as a command's stdin is.
  const r = spawnSync(shell, ["-c", String(cmd.create)], { input: String(cmd.stdin), encoding: "utf8" });
  if (r.status !== 0) throw new Error(`install failed (${shell}): ${r.stderr}`);
  return r.stdout;
}

/** execve and fork counts of one run under strace -f. */
function countProcesses(shell: string, cmd: Inputs, dir: string): { execs: number; forks: number } {
  const log = join(dir, "strace.log");
  const r = spawnSync(
    "strace",
    ["-f", "-qq", "-e", "trace=execve,clone,clone3,fork,vfork", "-o", log, shell, "-c", String(cmd.create)],
    { input: String(cmd.stdin), encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`install under strace failed: ${r.stderr}`);
  const lines = readFileSync(log, "utf8").split("\n");
  const execs = lines.filter((l) => /\bexecve\(/.test(l) && !/= -1 /.test(l)).length - 1; // not the shell itself
  const forks = lines.filter((l) => /\b(clone3?|v?fork)\(/.test(l) && !/= -1 /.test(l)).length;
  return { execs, forks };
}

/**
 * CPU seconds (user + system, the shell and all its children) per install, for `runs` alternating installs
 * of `a` then `b` (each run changes what the previous one installed) or of `a` alone (nothing changes).
 */
function cpuPerInstall(shell: string, a: Inputs, b: Inputs | undefined, dir: string, runs: number): number {
  writeFileSync(join(dir, "a.sh"), String(a.create));
  writeFileSync(join(dir, "a.in"), String(a.stdin));
  writeFileSync(join(dir, "b.sh"), String((b ?? a).create));
  writeFileSync(join(dir, "b.in"), String((b ?? a).stdin));
  const loop =
    `TIMEFORMAT="%3U %3S"; d=${JSON.stringify(dir)}; ` +
    `time { i=0; while [ $i -lt ${runs} ]; do ` +
    `if [ $((i % 2)) = 0 ]; then x=a; else x=b; fi; ` +
    `cat "$d/$x.in" | ${shell} -c "$(cat "$d/$x.sh")" > /dev/null || exit 1; i=$((i+1)); done; }`;
  // The loop itself (cat of the script, the test) is measured alone and subtracted.
  const bare =
    `TIMEFORMAT="%3U %3S"; d=${JSON.stringify(dir)}; ` +
    `time { i=0; while [ $i -lt ${runs} ]; do ` +
    `if [ $((i % 2)) = 0 ]; then x=a; else x=b; fi; ` +
    `true "$(cat "$d/$x.sh")"; cat "$d/$x.in" > /dev/null || exit 1; i=$((i+1)); done; }`;
  const seconds = (script: string): number => {
    const r = spawnSync("bash", ["-c", script], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`cpu loop failed: ${r.stderr}`);
    const [u, s] = r.stderr.trim().split("\n").pop()!.split(" ").map(Number);
    return u + s;
  };
  return (seconds(loop) - seconds(bare)) / runs;
}

/** Bytes of the command's state: inputs, and outputs = inputs + stdout + stderr (the provider's outputs). */
function stateBytes(inputs: Inputs, stdout: string): number {
  const outputs = { ...inputs, stdout, stderr: "" };
  return Buffer.byteLength(JSON.stringify(inputs)) + Buffer.byteLength(JSON.stringify(outputs));
}

async function main(): Promise<void> {
  const ca = await pki.createCertificateAuthority({
    subject: { commonName: "Bench CA" },
    keySpec: "ecdsa-p256",
  });
  const crlPem = pki.createCrl({ issuer: ca, revoked: [] }).crlPem;
  const first = await identity(ca, crlPem);
  const renewed = await identity(ca, crlPem);
  const dir = mkdtempSync(join(tmpdir(), "virt-pki-bench-install-"));
  try {
    const root = join(dir, "host");
    const a = await hostInstall(root, first);
    const b = await hostInstall(root, renewed);
    console.log(`install benchmark: the fleet's usual host (4 layouts, ECDSA), N=${N} runs per CPU figure`);
    for (const shell of ["/bin/sh", "bash"]) {
      rmSync(root, { recursive: true, force: true });
      const p = countProcesses(shell, a, dir);
      const renewal = cpuPerInstall(shell, a, b, dir, N);
      const noop = cpuPerInstall(shell, a, undefined, dir, N);
      console.log(
        `install ${shell.padEnd(7)} first install: ${String(p.execs).padStart(3)} processes, ${String(p.forks).padStart(3)} forks; ` +
          `CPU per install: renewal ${(renewal * 1000).toFixed(1)} ms, no change ${(noop * 1000).toFixed(1)} ms`,
      );
    }
    rmSync(root, { recursive: true, force: true });
    const stdout = runOnce("/bin/sh", a).replace(/\n$/, "");
    const remote = await remoteInstall(first);
    const total = stateBytes(remote, stdout);
    // The payload holds each file's content once; state holds the payload twice (inputs and outputs).
    const files = new Set<string>();
    for (const line of stdout.split("\n"))
      if (line.startsWith("virt-pki-file ")) files.add(line.split(" ")[1]);
    const script = ["create", "update", "delete"].reduce(
      (n, k) => n + Buffer.byteLength(String(remote[k] ?? "")),
      0,
    );
    console.log(
      `install state per host: ${(total / 1024).toFixed(1)} KB (inputs + outputs), ` +
        `${((total - 2 * payloadContentBytes(remote)) / 1024).toFixed(1)} KB without the file contents; ` +
        `shell text ${(script / 1024).toFixed(1)} KB (create + update + delete), ${files.size} files`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes of file content in the command's stdin: every PEM block and keys.psk line it carries. */
function payloadContentBytes(cmd: Inputs): number {
  const stdin = String(cmd.stdin);
  let n = 0;
  for (const m of stdin.matchAll(/-----BEGIN [^-]+-----\n[\s\S]*?-----END [^-]+-----\n/g))
    n += Buffer.byteLength(m[0]);
  for (const m of stdin.matchAll(/^[^:\s]+:[0-9a-f]{32,}\n/gm)) n += Buffer.byteLength(m[0]);
  return n;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
