/**
 * The multi-host test bed itself: real sshd per host with private /etc/pki, /root, /home and /etc/hosts,
 * the @pulumi/command runners, daemons that really die, and real libvirtd/virsh and qemu-nbd/qemu-img
 * talking TLS between two hosts with certificates at their default paths.
 */
import { createHash, randomBytes } from "crypto";
import { promises as fs, readdirSync, readFileSync } from "fs";
import * as net from "net";
import * as path from "path";
import { freePort, removeDir, runOrThrow, sleep, tempDir, writeFiles } from "./programs";
import {
  interruptRemoteCommand,
  qemuImgInfoOnHost,
  runLocalCommand,
  runRemoteCommand,
  shQuote,
  startLibvirtdOnHost,
  startQemuNbdOnHost,
  startTestBed,
  TestBed,
  TestHost,
  virshOnHost,
} from "./testbed";

const A = { name: "tb-a.test", address: "127.0.0.21", aliases: ["tb-a"] };
const B = { name: "tb-b.test", address: "127.0.0.22", aliases: ["tb-b"] };
const USER = "tbuser";

let bed: TestBed | undefined;
let hostA: TestHost;
let hostB: TestHost;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  bed = await startTestBed({ hosts: [A, B], users: [USER] });
  hostA = bed.host(A.name);
  hostB = bed.host(B.name);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await bed?.stop();
});

const sha256 = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex");

/** PIDs (machine view) of processes whose command line contains `needle`. */
function pidsWith(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(needle)) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

test("ssh logs in as root on each host with the bed's key, against pinned host keys", async () => {
  for (const host of [hostA, hostB]) {
    const r = await host.execOrThrow("id -un; echo $HOME");
    expect(r.stdout).toBe("root\n/root\n");
    expect(host.connection).toEqual({
      host: host.address,
      port: host.port,
      user: "root",
      privateKey: bed?.privateKey,
      hostKey: host.hostKey,
    });
    expect(host.hostKey).toMatch(/^ssh-ed25519 AAAA\S+$/);
  }
  expect(bed?.privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
  expect((await fs.stat(bed?.privateKeyPath ?? "")).mode & 0o777).toBe(0o600);
  expect(hostA.hostKey).not.toBe(hostB.hostKey);
});

test("/etc/pki, /root and /home are private to each host", async () => {
  await hostA.writeFile("/etc/pki/testbed/marker", "host A\n", { mode: "0640" });
  await hostA.execOrThrow("echo a > /root/marker");
  expect(await hostA.readFile("/etc/pki/testbed/marker")).toBe("host A\n");
  expect(await hostA.stat("/etc/pki/testbed/marker")).toEqual({ mode: "0640", owner: "root", group: "root" });
  expect(await hostB.exists("/etc/pki/testbed/marker")).toBe(false);
  expect(await hostB.exists("/root/marker")).toBe(false);
  expect(await hostB.stat("/etc/pki/testbed")).toBeUndefined();
  await expect(fs.access("/etc/pki/testbed/marker")).rejects.toThrow();
  await expect(fs.access("/root/marker")).rejects.toThrow();
});

test("every host resolves every bed name through its private /etc/hosts", async () => {
  const r = await hostA.execOrThrow("getent hosts tb-b.test; getent hosts tb-a");
  expect(r.stdout).toMatch(/^127\.0\.0\.22\s+tb-b\.test tb-b$/m);
  expect(r.stdout).toMatch(/^127\.0\.0\.21\s+tb-a\.test tb-a$/m);
  expect((await hostB.execOrThrow("getent hosts tb-a.test")).stdout).toMatch(/^127\.0\.0\.21\s+tb-a\.test/);
});

test("runRemoteCommand runs a connection's command with stdin, byte for byte; keys are pinned", async () => {
  const text = "ünïcödé\n'quotes' \"double\" $HOME `x`\n" + randomBytes(48 * 1024).toString("base64");
  const r = await runRemoteCommand(hostB.connection, "sha256sum; echo user=$(id -un)", text);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${sha256(Buffer.from(text, "utf8"))}  -\nuser=root\n`);

  // Names of bed hosts are mapped to their addresses; binary stdin through exec.
  const bytes = randomBytes(200 * 1024);
  expect((await hostA.execOrThrow("sha256sum", { stdin: bytes })).stdout).toBe(`${sha256(bytes)}  -\n`);
  const byName = await runRemoteCommand(
    { ...hostA.connection, host: "tb-a.test" },
    "cat /etc/hostname; exit 3",
  );
  expect(byName.code).toBe(3);

  // A known_hosts file pinning another key for the address is refused.
  const dir = await tempDir("virt-pki-tbtest-");
  try {
    const bad = (await writeFiles(dir, { kh: `[${A.address}]:${hostA.port} ${hostB.hostKey}\n` })).kh;
    const refused = await runRemoteCommand(hostA.connection, "true", undefined, { knownHostsFile: bad });
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/Host key verification failed/);
  } finally {
    await removeDir(dir);
  }
  // As @pulumi/command 1.2.1: connection.hostKey is the only key accepted; a host presenting another key
  // gets nothing (the command never starts). Without hostKey, any host key is accepted.
  const wrongKey = await runRemoteCommand(
    { ...hostA.connection, hostKey: hostB.hostKey },
    "touch /root/reached-with-wrong-key",
  );
  expect(wrongKey.code).toBe(255);
  expect(wrongKey.stderr).toMatch(/Host key verification failed/);
  expect(await hostA.exists("/root/reached-with-wrong-key")).toBe(false);
  const { hostKey: pinned, ...unpinned } = hostA.connection;
  expect(pinned).toBe(hostA.hostKey);
  expect((await runRemoteCommand(unpinned, "true")).code).toBe(0);
  const otherKey = await runRemoteCommand(
    {
      ...hostA.connection,
      privateKey: readFileSync(path.join(bed?.dir ?? "", A.name, "ssh_host_ed25519_key"), "utf8"),
    },
    "true",
  );
  expect(otherKey.code).toBe(255);
});

test("interruptRemoteCommand kills the client mid-stdin; the remote side sees EOF", async () => {
  const r = await interruptRemoteCommand(
    hostA.connection,
    "echo started; cat > /root/partial; echo $? > /root/partial.status",
    "first half",
    { untilStdout: /started/ },
  );
  expect(r.signal).toBe("SIGKILL");
  expect(r.stdout).toBe("started\n");
  let status = "";
  for (let i = 0; i < 40 && status === ""; i++) {
    status = (await hostA.exec("cat /root/partial.status 2>/dev/null")).stdout;
    if (status === "") await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(status).toBe("0\n");
  expect(await hostA.readFile("/root/partial")).toBe("first half");
});

test("runLocalCommand runs like local.Command", async () => {
  const dir = await tempDir("virt-pki-tbtest-");
  try {
    const r = await runLocalCommand('printf "%s|" "$PWD" "$X"; cat', "in", { dir, env: { X: "y" } });
    expect(r).toMatchObject({ code: 0, stdout: `${dir}|y|in` });
    const bash = await runLocalCommand("echo ${BASH_VERSION:+bash}", undefined, {
      interpreter: ["/bin/bash", "-c"],
    });
    expect(bash.stdout).toBe("bash\n");
  } finally {
    await removeDir(dir);
  }
});

test("extra users log in with the bed's key and own their private home", async () => {
  const r = await hostB.execOrThrow("id -un; echo $HOME; touch ~/mine && ls -ld ~ | cut -d' ' -f1,3", {
    user: USER,
  });
  expect(r.stdout).toBe(`${USER}\n/home/${USER}\ndrwx------ ${USER}\n`);
  expect(await hostB.stat(`/home/${USER}`)).toEqual({ mode: "0700", owner: USER, group: USER });
  expect(await hostA.exists(`/home/${USER}/mine`)).toBe(false);
  const viaConnection = await runRemoteCommand({ ...hostA.connection, user: USER }, "id -un");
  expect(viaConnection.stdout).toBe(`${USER}\n`);
});

test("spawnDaemon waits for the port and stop() really kills the remote process group", async () => {
  const port = await freePort(A.address);
  const perl =
    `$s=IO::Socket::INET->new(LocalAddr=>"${A.address}",LocalPort=>${port},Listen=>5,ReuseAddr=>1) or die "listen: $!";` +
    `while(1){$c=$s->accept; close $c if $c}`;
  const daemon = await hostA.spawnDaemon(
    `sh -c ${shQuote(`sleep 31337 & exec /usr/bin/perl -MIO::Socket::INET -e ${shQuote(perl)}`)}`,
    { description: "perl listener", readyHost: A.address, readyPort: port },
  );
  const pid = daemon.remotePid;
  expect(pid).toBeGreaterThan(1);
  expect((await hostA.exec(`kill -0 ${pid}`)).code).toBe(0);
  expect((await hostA.exec("pgrep -f 'sleep [3]1337'")).code).toBe(0);
  // The host's /proc is its own: the machine does not number it the same way.
  expect((await hostA.execOrThrow("cat /proc/1/cmdline | tr '\\0' ' '")).stdout).toMatch(/^sshd: /);

  await daemon.stop();
  await daemon.stop();
  expect(daemon.exited).toBe(true);
  expect((await hostA.exec(`kill -0 ${pid}`)).code).not.toBe(0);
  expect((await hostA.exec("pgrep -f 'sleep [3]1337'")).code).toBe(1);
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect({ host: A.address, port });
    s.once("connect", () => (s.destroy(), resolve(false)));
    s.once("error", () => resolve(true));
  });
  expect(refused).toBe(true);
});

/** A throwaway CA with a server certificate for tb-a.test and a client certificate for tb-b.test. */
async function makePki(dir: string): Promise<Record<string, string>> {
  const o = (args: string[]): Promise<unknown> => runOrThrow("openssl", args, { cwd: dir });
  const usage = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n";
  await writeFiles(
    dir,
    {
      "server.ext": usage + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:tb-a.test,IP:127.0.0.21\n",
      "client.ext": usage + "extendedKeyUsage=clientAuth\n",
    },
    0o644,
  );
  const days = ["-days", "2"];
  await o(
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", ...days]
      .concat(["-subj", "/O=Test Bed/CN=Test Bed CA"])
      .concat([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
      ]),
  );
  await Promise.all(
    [
      ["server", "tb-a.test", "01"],
      ["client", "tb-b.test", "02"],
    ].map(async ([name, cn, serial]) => {
      await o(
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`].concat([
          "-subj",
          `/O=Test Bed/CN=${cn}`,
        ]),
      );
      await o(
        [
          "x509",
          "-req",
          "-in",
          `${name}.csr`,
          "-CA",
          "ca.pem",
          "-CAkey",
          "ca.key",
          "-set_serial",
          serial,
        ].concat([...days, "-out", `${name}.pem`, "-extfile", `${name}.ext`]),
      );
    }),
  );
  const pki: Record<string, string> = {};
  for (const name of ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"]) {
    pki[name] = await fs.readFile(path.join(dir, name), "utf8");
  }
  return pki;
}

test("libvirtd on host A and virsh on host B use their hosts' default /etc/pki paths", async () => {
  const dir = await tempDir("virt-pki-tbtest-");
  let pki: Record<string, string>;
  try {
    pki = await makePki(dir);
  } finally {
    await removeDir(dir);
  }
  await hostA.writeFile("/etc/pki/CA/cacert.pem", pki["ca.pem"]);
  await hostA.writeFile("/etc/pki/libvirt/servercert.pem", pki["server.pem"]);
  await hostA.writeFile("/etc/pki/libvirt/private/serverkey.pem", pki["server.key"], { mode: "0600" });
  await hostB.writeFile("/etc/pki/CA/cacert.pem", pki["ca.pem"]);
  await hostB.writeFile("/etc/pki/libvirt/clientcert.pem", pki["client.pem"]);
  await hostB.writeFile("/etc/pki/libvirt/private/clientkey.pem", pki["client.key"], { mode: "0600" });
  // QEMU: the server key is readable by the QEMU group only.
  await hostA.writeFile("/etc/pki/qemu/ca-cert.pem", pki["ca.pem"]);
  await hostA.writeFile("/etc/pki/qemu/server-cert.pem", pki["server.pem"]);
  await hostA.writeFile("/etc/pki/qemu/server-key.pem", pki["server.key"], {
    mode: "0640",
    group: "libvirt-qemu",
  });
  await hostB.writeFile("/etc/pki/qemu/ca-cert.pem", pki["ca.pem"]);
  await hostB.writeFile("/etc/pki/qemu/client-cert.pem", pki["client.pem"]);
  await hostB.writeFile("/etc/pki/qemu/client-key.pem", pki["client.key"], { mode: "0600" });

  const libvirtd = await startLibvirtdOnHost(hostA, { tlsAllowedDnList: ["O=Test Bed,CN=tb-b.test"] });
  cleanups.push(() => libvirtd.stop());
  const uri = `test+tls://tb-a.test:${libvirtd.port}/default`;
  const ok = await virshOnHost(hostB, { uri });
  expect(ok.output).toMatch(/test/);
  expect(ok.ok).toBe(true);
  // Host A has no client certificate of its own: the same URI fails there.
  const noClientCert = await virshOnHost(hostA, { uri, timeoutMs: 10_000 });
  expect(noClientCert.ok).toBe(false);
  expect(await libvirtd.waitForLog(/No certificate was found/)).toBeDefined();
  await libvirtd.stop();

  const nbd = await startQemuNbdOnHost(hostA, { kind: "x509", dir: "/etc/pki/qemu", runAs: "libvirt-qemu" });
  cleanups.push(() => nbd.stop());
  const info = await qemuImgInfoOnHost(hostB, {
    serverName: "tb-a.test",
    port: nbd.port,
    kind: "x509",
    dir: "/etc/pki/qemu",
  });
  expect(info.output).toMatch(/^virtual size: 1 MiB/m);
  expect(info.ok).toBe(true);
  expect((await hostA.execOrThrow(`ps -o user= -p $(pgrep -x qemu-nbd)`)).stdout.trim()).toBe("libvirt-qemu");
  await nbd.stop();
});

test("bed.stop() kills every host's whole process tree, even orphans, and removes its files", async () => {
  // An orphan escaping its session (sshd does not signal it when the client disconnects).
  await hostB.execOrThrow("nohup sleep 42424 >/dev/null 2>&1 </dev/null &");
  const current = bed as TestBed;
  // The session may end before the backgrounded shell has exec'd sleep: wait (bounded) for it to appear.
  for (let i = 0; i < 50 && pidsWith("sleep\u000042424").length === 0; i++) await sleep(100);
  expect(pidsWith("sleep\u000042424").length).toBe(1);
  expect(pidsWith(current.dir).length).toBeGreaterThanOrEqual(2);
  await current.stop();
  await current.stop();
  expect(pidsWith(current.dir)).toEqual([]);
  expect(pidsWith("sleep\u000042424")).toEqual([]);
  await expect(fs.access(current.dir)).rejects.toThrow();
  // A host name no running bed knows is refused; its address answers no more.
  await expect(runRemoteCommand({ ...hostA.connection, host: "tb-a.test" }, "true")).rejects.toThrow(
    /no running test bed/,
  );
  expect((await runRemoteCommand(hostA.connection, "true")).stderr).toMatch(/Connection refused/);
});
