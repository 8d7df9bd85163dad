/**
 * Proves the real-program test support: certificates made by certtool itself, judged by real
 * gnutls-serv / gnutls-cli handshakes over 127.0.0.1 only.
 */
import { promises as fs } from "fs";
import * as net from "net";
import * as path from "path";
import { GnutlsServer, gnutlsConnect, judgeClientCertificate, startGnutlsServer } from "./gnutls";
import * as programs from "./programs";
import { certtool, freePort, removeDir, run, runOrThrow, tempDir, writeFiles } from "./programs";

const TEMPLATES: Record<string, string> = {
  "ca.info": [
    "cn = Support Test CA",
    "ca",
    "cert_signing_key",
    "crl_signing_key",
    "expiration_days = 30",
    "",
  ].join("\n"),
  "other-ca.info": [
    "cn = Some Other CA",
    "ca",
    "cert_signing_key",
    "crl_signing_key",
    "expiration_days = 30",
    "",
  ].join("\n"),
  "server.info": [
    "cn = localhost",
    "dns_name = localhost",
    "ip_address = 127.0.0.1",
    "tls_www_server",
    "encryption_key",
    "signing_key",
    "expiration_days = 30",
    "",
  ].join("\n"),
  "client.info": ["cn = client", "tls_www_client", "signing_key", "expiration_days = 30", ""].join("\n"),
  "client2.info": ["cn = client2", "tls_www_client", "signing_key", "expiration_days = 30", ""].join("\n"),
  "crl.info": ["crl_next_update = 30", "crl_number = 1", ""].join("\n"),
};

let dir: string;
/** Absolute path of a file in the temp dir. */
const f = (name: string): string => path.join(dir, name);

async function privkey(name: string): Promise<void> {
  await runOrThrow("certtool", ["--generate-privkey", "--outfile", f(name)]);
}

async function selfSigned(key: string, template: string, out: string): Promise<void> {
  await runOrThrow("certtool", [
    "--generate-self-signed",
    "--load-privkey",
    f(key),
    "--template",
    f(template),
    "--outfile",
    f(out),
  ]);
}

async function issued(
  key: string,
  caCert: string,
  caKey: string,
  template: string,
  out: string,
): Promise<void> {
  await runOrThrow("certtool", [
    "--generate-certificate",
    "--load-privkey",
    f(key),
    "--load-ca-certificate",
    f(caCert),
    "--load-ca-privkey",
    f(caKey),
    "--template",
    f(template),
    "--outfile",
    f(out),
  ]);
}

beforeAll(async () => {
  dir = await tempDir("gnutls-support-");
  await writeFiles(dir, TEMPLATES);
  await Promise.all(
    ["ca.key", "other-ca.key", "server.key", "client.key", "client2.key", "stranger.key"].map(privkey),
  );
  await selfSigned("ca.key", "ca.info", "ca.pem");
  await selfSigned("other-ca.key", "other-ca.info", "other-ca.pem");
  await issued("server.key", "ca.pem", "ca.key", "server.info", "server.pem");
  await issued("client.key", "ca.pem", "ca.key", "client.info", "client.pem");
  await issued("client2.key", "ca.pem", "ca.key", "client2.info", "client2.pem");
  // Same template as "client" but issued by a CA the server does not trust.
  await issued("stranger.key", "other-ca.pem", "other-ca.key", "client.info", "stranger.pem");
  // A CRL, signed by the CA, that revokes "client" (and only it).
  await runOrThrow("certtool", [
    "--generate-crl",
    "--load-ca-privkey",
    f("ca.key"),
    "--load-ca-certificate",
    f("ca.pem"),
    "--load-certificate",
    f("client.pem"),
    "--template",
    f("crl.info"),
    "--outfile",
    f("crl.pem"),
  ]);
});

afterAll(async () => {
  if (dir) await removeDir(dir);
});

const servers: GnutlsServer[] = [];

/** Starts a server that is always stopped in afterEach. */
async function server(opts: Partial<Parameters<typeof startGnutlsServer>[0]> = {}): Promise<GnutlsServer> {
  const s = await startGnutlsServer({ certFile: f("server.pem"), keyFile: f("server.key"), ...opts });
  servers.push(s);
  return s;
}

afterEach(async () => {
  const started = servers.splice(0);
  await Promise.all(started.map((s) => s.stop()));
  for (const s of started) expect(s.exited).toBe(true);
});

describe("programs", () => {
  test("run collects output, feeds stdin and reports exit codes", async () => {
    const echoed = await run("cat", [], { input: "hello\n" });
    expect(echoed).toMatchObject({ code: 0, stdout: "hello\n", stderr: "", timedOut: false });
    const failed = await run("sh", ["-c", "echo oops >&2; exit 3"]);
    expect(failed).toMatchObject({ code: 3, stderr: "oops\n", timedOut: false });
  });

  test("run kills a program that overruns its timeout", async () => {
    const started = Date.now();
    const slow = await run("sleep", ["20"], { timeoutMs: 200 });
    expect(slow).toMatchObject({ code: null, signal: "SIGKILL", timedOut: true });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test("run rejects when the program does not exist", async () => {
    await expect(run("/nonexistent/program", [])).rejects.toThrow(/cannot run/);
  });

  test("writeFiles sets the exact mode and stays inside the directory", async () => {
    const written = await writeFiles(dir, { "sub/secret.txt": "s3cret" }, 0o640);
    const st = await fs.stat(written["sub/secret.txt"]);
    expect(st.mode & 0o777).toBe(0o640);
    expect(await fs.readFile(written["sub/secret.txt"], "utf8")).toBe("s3cret");
    await expect(writeFiles(dir, { "../escape.txt": "x" })).rejects.toThrow(/escapes/);
  });

  test("freePort returns a usable loopback port", async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65536);
  });

  test("certtool made what the tests rely on", async () => {
    const info = await certtool(["--certificate-info", "--infile", f("server.pem")]);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/DNSname: localhost/);
    expect(info.stdout).toMatch(/IPAddress: 127\.0\.0\.1/);
    const crl = await certtool(["--crl-info", "--infile", f("crl.pem")]);
    expect(crl.code).toBe(0);
    expect(crl.stdout).toMatch(/Revoked certificates \(1\)/);
  });
});

describe("gnutls server authentication (client judges the server)", () => {
  test("handshake succeeds for hostname localhost", async () => {
    const s = await server();
    const r = await gnutlsConnect({ port: s.port, caFile: f("ca.pem"), verifyHostname: "localhost" });
    expect(r.output).toMatch(/Handshake was completed/);
    expect(r).toMatchObject({ ok: true, code: 0, serverCertTrusted: true, handshakeCompleted: true });
    expect(r.args).toEqual(expect.arrayContaining(["--verify-hostname", "localhost"]));
    expect(r.args).not.toContain("--insecure");
  });

  test("handshake succeeds for the IP SAN when no hostname is given (verified against 127.0.0.1)", async () => {
    const s = await server();
    const r = await gnutlsConnect({ port: s.port, caFile: f("ca.pem") });
    expect(r.ok).toBe(true);
    expect(r.args).toEqual(expect.arrayContaining(["--verify-hostname", "127.0.0.1"]));
  });

  test("handshake fails for hostname wrong.example", async () => {
    const s = await server();
    const r = await gnutlsConnect({ port: s.port, caFile: f("ca.pem"), verifyHostname: "wrong.example" });
    expect(r.ok).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/name in the certificate does not match/);
  });

  test("handshake fails when the client trusts a different CA", async () => {
    const s = await server();
    const r = await gnutlsConnect({ port: s.port, caFile: f("other-ca.pem"), verifyHostname: "localhost" });
    expect(r.ok).toBe(false);
    expect(r.serverCertTrusted).toBe(false);
    expect(r.output).toMatch(/issuer is unknown/);
  });
});

describe("gnutls client authentication (server judges the client)", () => {
  /** Client authentication on; every server below also gets caFile (the CA that issued the clients). */
  const clientAuth = { requireClientCert: true } as const;

  test("a valid client certificate is accepted when required", async () => {
    const s = await server({ ...clientAuth, caFile: f("ca.pem") });
    expect(s.args).toEqual(expect.arrayContaining(["--require-client-cert", "--verify-client-cert"]));
    const j = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      certFile: f("client.pem"),
      keyFile: f("client.key"),
    });
    expect(j.detail).toBeDefined();
    expect(j.verdict).toBe("accepted");
    expect(j.client.ok).toBe(true);
    expect(j.serverErrors).toEqual([]);
  });

  test("a client without a certificate is refused", async () => {
    const s = await server({ ...clientAuth, caFile: f("ca.pem") });
    const j = await judgeClientCertificate(s, { caFile: f("ca.pem"), verifyHostname: "localhost" });
    expect(j.verdict).toBe("refused");
    expect(j.client.ok).toBe(false);
    expect(j.client.alert).toEqual({ code: 116, description: "Certificate is required" });
    expect(j.serverErrors).toEqual(["Certificate is required."]);
  });

  test("a client certificate from an untrusted CA is refused", async () => {
    const s = await server({ ...clientAuth, caFile: f("ca.pem") });
    const j = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      certFile: f("stranger.pem"),
      keyFile: f("stranger.key"),
    });
    expect(j.verdict).toBe("refused");
    expect(j.client.alert?.code).toBe(49);
    expect(j.serverErrors).toEqual(["Error in the certificate."]);
  });

  test("control: without the CRL, the client certificate that the CRL revokes is accepted", async () => {
    const s = await server({ ...clientAuth, caFile: f("ca.pem") });
    const j = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      certFile: f("client.pem"),
      keyFile: f("client.key"),
    });
    expect(j.verdict).toBe("accepted");
  });

  test("a client certificate listed in the CRL is refused, another from the same CA is accepted", async () => {
    const s = await server({ ...clientAuth, caFile: f("ca.pem"), crlFile: f("crl.pem") });
    expect(s.args).toEqual(expect.arrayContaining(["--x509crlfile", f("crl.pem")]));
    const revoked = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      certFile: f("client.pem"),
      keyFile: f("client.key"),
    });
    expect(revoked.verdict).toBe("refused");
    expect(revoked.client.alert?.code).toBe(49);
    expect(revoked.serverErrors).toEqual(["Error in the certificate."]);

    const fine = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      certFile: f("client2.pem"),
      keyFile: f("client2.key"),
    });
    expect(fine.verdict).toBe("accepted");
  });

  test("refusal is also detected under TLS 1.2, where it happens inside the handshake", async () => {
    const tls12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
    const s = await server({ ...clientAuth, caFile: f("ca.pem"), crlFile: f("crl.pem"), priority: tls12 });
    const revoked = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      certFile: f("client.pem"),
      keyFile: f("client.key"),
    });
    expect(revoked.verdict).toBe("refused");
    expect(revoked.client.handshakeCompleted).toBe(false);
    const fine = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      certFile: f("client2.pem"),
      keyFile: f("client2.key"),
    });
    expect(fine.verdict).toBe("accepted");
  });

  test("a client that rejects the server is inconclusive, never 'refused'", async () => {
    const s = await server({ ...clientAuth, caFile: f("ca.pem") });
    const j = await judgeClientCertificate(s, {
      caFile: f("ca.pem"),
      verifyHostname: "wrong.example",
      certFile: f("client.pem"),
      keyFile: f("client.key"),
    });
    expect(j.verdict).toBe("inconclusive");
    expect(j.client.serverCertTrusted).toBe(false);
  });
});

describe("gnutls server lifecycle", () => {
  test("a server that cannot start rejects with its stderr", async () => {
    await expect(startGnutlsServer({ certFile: f("server.pem"), keyFile: f("client.key") })).rejects.toThrow(
      /exited before listening[\s\S]*do not match/,
    );
  });

  test("a port taken by someone else is detected and another port is used", async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
    const address = squatter.address();
    const taken = typeof address === "object" && address !== null ? address.port : 0;
    const spy = jest.spyOn(programs, "freePort").mockResolvedValueOnce(taken);
    try {
      const s = await server();
      expect(spy).toHaveBeenCalledTimes(2);
      expect(s.port).not.toBe(taken);
      const r = await gnutlsConnect({ port: s.port, caFile: f("ca.pem"), verifyHostname: "localhost" });
      expect(r.ok).toBe(true);
    } finally {
      spy.mockRestore();
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  test("stop is idempotent and the port is closed afterwards", async () => {
    const s = await server();
    await s.stop();
    await s.stop();
    expect(s.exited).toBe(true);
    const r = await gnutlsConnect({
      port: s.port,
      caFile: f("ca.pem"),
      verifyHostname: "localhost",
      timeoutMs: 5_000,
    });
    expect(r.ok).toBe(false);
  });

  test("non-loopback hosts are refused", async () => {
    await expect(
      startGnutlsServer({ certFile: f("server.pem"), keyFile: f("server.key"), host: "192.0.2.1" }),
    ).rejects.toThrow(/non-loopback/);
    await expect(gnutlsConnect({ port: 1, host: "example.com", caFile: f("ca.pem") })).rejects.toThrow(
      /non-loopback/,
    );
  });
});
