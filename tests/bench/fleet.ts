/**
 * Fleet benchmark: a `VirtualizationPki` of N hosts (ECDSA P-256, local installs under a temporary staging root,
 * one IPv4 each, PSK users, one operator client), driven through the test harness (tests/support/engine.ts) with
 * the real dynamic-provider host, as `pulumi up` runs it. For each N it prints:
 * - register: the program alone under the SDK's mocks as a preview (every resource registered, outputs unknown), wall time;
 * - first up and no-change up through the harness, wall time (program + provider host + installs);
 * - the program process's peak RSS (sampled every 20 ms over the runs of that N);
 * - the state per host: the JSON of every state entry (inputs + outputs), divided by N;
 * - the growth ratio of each time against the previous N.
 * Each time is the minimum of BENCH_FLEET_RUNS runs (default 1; the figures use 3). N is 10, 100 and
 * 1000, plus 2000 with BENCH_FLEET_2000=1, or the list in BENCH_FLEET_N (e.g. `BENCH_FLEET_N=10,100`).
 * A benchmark, not a test: it asserts nothing and prints numbers. Run it with `npm run bench:fleet`.
 *
 * With BENCH_FLEET_SPLIT=K1,K2,... it measures the stack-splitting guideline instead: the last N split into K
 * stacks of N/K hosts that share one CA (given as `{ certPem, keyPem }`, as a StackReference hands it over, see
 * examples/shared-ca), each stack a process of its own with its own provider host, as K `pulumi up` runs in
 * parallel CI jobs would be. Every stack makes its first up, then all start their no-change up at once; it prints
 * the wall time until the last finishes, the slowest stack's own time, and the largest RSS of a stack's process.
 */
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pki } from "../../index";
import { VirtualizationPki, VirtualizationPkiArgs } from "../../components";
import { EngineState, up } from "../support/engine";
import { removeDir, tempDir } from "../support/programs";
import { captureResources, startProviderHost } from "../support/pulumiHost";

const RUNS = Number(process.env.BENCH_FLEET_RUNS ?? 1);
const SIZES = (process.env.BENCH_FLEET_N ?? `10,100,1000${process.env.BENCH_FLEET_2000 ? ",2000" : ""}`)
  .split(",")
  .map(Number);

function fleetArgs(
  n: number,
  stagingRoot: string,
  ca: VirtualizationPkiArgs["ca"] = { subject: { commonName: "Bench CA" } },
  first = 0,
): VirtualizationPkiArgs {
  return {
    ca,
    hosts: Array.from({ length: n }, (_, j) => {
      const i = first + j;
      return {
        name: `h${i}`,
        fqdn: `h${i}.bench.example.org`,
        ipAddresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
      };
    }),
    clients: [{ name: "operator", subject: { organization: "Bench", commonName: "operator" } }],
    pskUsers: ["qemu"],
    stagingRoot,
  };
}

/** Peak RSS while `run` runs, sampled every 20 ms. */
async function withPeakRss<T>(run: () => Promise<T>): Promise<{ value: T; peak: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    const value = await run();
    return { value, peak: Math.max(peak, process.memoryUsage().rss) };
  } finally {
    clearInterval(timer);
  }
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = process.hrtime.bigint();
  const value = await run();
  return { value, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

const stateBytes = (state: EngineState): number =>
  Object.values(state).reduce((sum, e) => sum + Buffer.byteLength(JSON.stringify(e)), 0);

interface Row {
  n: number;
  register: number;
  firstUp: number;
  noChangeUp: number;
  rss: number;
  perHost: number;
}

async function measure(n: number): Promise<Row> {
  const host = await startProviderHost({ cwd: join(__dirname, "..", "..", "..") });
  await host.configure();
  const mins = { register: Infinity, firstUp: Infinity, noChangeUp: Infinity };
  let perHost = 0;
  try {
    const { peak } = await withPeakRss(async () => {
      for (let r = 0; r < RUNS; r++) {
        const staging = await tempDir("virt-pki-bench-fleet-");
        try {
          const program = () => void new VirtualizationPki("bench", fleetArgs(n, staging));
          const reg = await timed(() => captureResources(program, { preview: true }));
          mins.register = Math.min(mins.register, reg.seconds);
          const first = await timed(() => up(program, host, {}));
          mins.firstUp = Math.min(mins.firstUp, first.seconds);
          const again = await timed(() => up(program, host, first.value.state));
          mins.noChangeUp = Math.min(mins.noChangeUp, again.seconds);
          const changed = again.value.plan.filter((s) => s.op !== "same");
          if (changed.length > 0)
            throw new Error(`no-change up changed ${changed.map((s) => s.name).join(", ")}`);
          perHost = stateBytes(again.value.state) / n;
        } finally {
          await removeDir(staging);
        }
      }
    });
    return { n, ...mins, rss: peak, perHost };
  } finally {
    await host.stop();
  }
}

/**
 * One stack of a split fleet, in a child process: first up, then "ready" on stdout; on "go" from stdin the
 * no-change up; then one JSON line with its own times and peak RSS.
 */
async function site(): Promise<void> {
  const [index, count, caFile] = [
    Number(process.env.BENCH_SITE),
    Number(process.env.BENCH_SITE_N),
    process.env.BENCH_SITE_CA!,
  ];
  const shared = JSON.parse(await readFile(caFile, "utf8")) as { certPem: string; keyPem: string };
  const host = await startProviderHost({ cwd: join(__dirname, "..", "..", "..") });
  await host.configure();
  const staging = await tempDir("virt-pki-bench-site-");
  try {
    const args = fleetArgs(count, staging, { id: "shared", ...shared }, index * count);
    const program = () => void new VirtualizationPki(`site${index}`, args);
    const { value, peak } = await withPeakRss(async () => {
      const first = await timed(() => up(program, host, {}));
      console.log("ready");
      const lines = createInterface({ input: process.stdin });
      for await (const line of lines) if (line === "go") break;
      process.stdin.destroy(); // nothing more comes; an open stdin would keep this process alive
      const again = await timed(() => up(program, host, first.value.state));
      if (again.value.plan.some((s) => s.op !== "same")) throw new Error("no-change up changed something");
      return { firstUp: first.seconds, noChangeUp: again.seconds };
    });
    console.log(JSON.stringify({ ...value, rss: peak }));
  } finally {
    await removeDir(staging);
    await host.stop();
  }
}

/** N hosts split into k stacks run as parallel processes (see the module comment). */
async function split(n: number, k: number): Promise<void> {
  const dir = await tempDir("virt-pki-bench-split-");
  try {
    const ca = await pki.createCertificateAuthority({
      subject: { commonName: "Bench CA" },
      keySpec: "ecdsa-p256",
    });
    const caFile = join(dir, "ca.json"); // mode 0600 in a 0700 folder; never in the environment
    await writeFile(caFile, JSON.stringify({ certPem: ca.certPem, keyPem: ca.keyPem }), { mode: 0o600 });
    const children = Array.from({ length: k }, (_, i) =>
      spawn(process.execPath, [__filename], {
        env: { ...process.env, BENCH_SITE: String(i), BENCH_SITE_N: String(n / k), BENCH_SITE_CA: caFile },
        stdio: ["pipe", "pipe", "inherit"],
      }),
    );
    const lines = children.map((c) => createInterface({ input: c.stdout! })[Symbol.asyncIterator]());
    const next = async (i: number): Promise<string> => {
      for (;;) {
        const r = await lines[i].next();
        if (r.done) throw new Error(`stack ${i} ended early`);
        if (r.value === "ready" || r.value.startsWith("{")) return r.value;
      }
    };
    await Promise.all(children.map((_, i) => next(i)));
    const start = process.hrtime.bigint();
    for (const c of children) c.stdin!.end("go\n");
    const results = (await Promise.all(children.map((_, i) => next(i)))).map(
      (l) => JSON.parse(l) as { firstUp: number; noChangeUp: number; rss: number },
    );
    const wall = Number(process.hrtime.bigint() - start) / 1e9;
    await Promise.all(children.map((c) => new Promise((r) => c.once("exit", r))));
    const max = (f: (r: (typeof results)[number]) => number) => Math.max(...results.map(f));
    console.log(
      `| ${n} | ${k} x ${n / k} | ${wall.toFixed(2)} s | ${max((r) => r.noChangeUp).toFixed(2)} s | ` +
        `${max((r) => r.firstUp).toFixed(2)} s | ${(max((r) => r.rss) / 2 ** 20).toFixed(0)} MiB |`,
    );
  } finally {
    await removeDir(dir);
  }
}

async function main(): Promise<void> {
  if (process.env.BENCH_SITE !== undefined) return site();
  if (process.env.BENCH_FLEET_SPLIT) {
    const n = SIZES[SIZES.length - 1];
    console.log(`fleet split: ${n} hosts, ECDSA P-256, local installs, stacks run as parallel processes`);
    console.log(
      "| N | stacks x hosts | all no-change ups (wall) | slowest stack | first ups (slowest, all at once) | largest stack RSS |",
    );
    console.log("| ---: | --- | ---: | ---: | ---: | ---: |");
    for (const k of process.env.BENCH_FLEET_SPLIT.split(",").map(Number)) await split(n, k);
    return;
  }
  console.log(`fleet benchmark: ECDSA P-256, local installs, ${RUNS} run(s) per N, min shown`);
  console.log(
    "| N | register | first up | no-change up | growth (register / first / no-change) | program RSS | state per host |",
  );
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  let prev: Row | undefined;
  for (const n of SIZES) {
    const row = await measure(n);
    const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}x` : "-");
    const growth = prev
      ? `${ratio(row.register, prev.register)} / ${ratio(row.firstUp, prev.firstUp)} / ${ratio(row.noChangeUp, prev.noChangeUp)} (N x${n / prev.n})`
      : "-";
    console.log(
      `| ${n} | ${row.register.toFixed(2)} s | ${row.firstUp.toFixed(2)} s | ${row.noChangeUp.toFixed(2)} s | ${growth} | ` +
        `${(row.rss / 2 ** 20).toFixed(0)} MiB | ${(row.perHost / 1000).toFixed(1)} KB |`,
    );
    prev = row;
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
