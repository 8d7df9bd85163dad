/**
 * A VeNCrypt probe: which certificate does a REAL VNC server (QEMU's `-vnc ...,tls-creds=ID`) present right now?
 *
 * {@link probeVncTls} speaks just enough RFB to get to the TLS handshake, on one TCP connection to a loopback
 * address: RFB 3.8 version exchange, security type 19 (VeNCrypt), VeNCrypt version 0.2, one TLS-bearing
 * subtype, then a Node TLS client handshake over the same socket (`tls.connect({ socket })`), which does not
 * verify the server (`rejectUnauthorized: false`) but reports whether it would have. For the `*None` subtypes
 * it then reads the RFB SecurityResult, i.e. whether the server accepted this client (QEMU with
 * `verify-peer=on` closes the connection instead when the client's certificate is missing or not trusted).
 * It never goes further (no ClientInit) and always destroys the socket; the whole exchange is bounded.
 *
 * Established with QEMU 7.2 (Debian bookworm): QEMU offers exactly one VeNCrypt subtype, X509None (260) with
 * `tls-creds-x509` and no password, TLSNone (257) with `tls-creds-anon`, and negotiates TLS 1.3 (x509) or
 * TLS 1.2 anonymous DH (anon; Node needs `aNULL` ciphers at security level 0 for that).
 *
 * Fingerprints are SHA-256 of the DER certificate as colon-separated upper-case hex, the form
 * `openssl x509 -fingerprint -sha256` prints and `IssuedCertificate.fingerprintSha256` holds.
 */
import { X509Certificate } from "crypto";
import * as net from "net";
import { Duplex } from "stream";
import * as tls from "tls";
import { assertLoopbackIPv4 } from "./libvirtd";

const DEFAULT_PROBE_TIMEOUT_MS = 10_000;
/** RFB security type VeNCrypt. */
const SECURITY_VENCRYPT = 19;

/** VeNCrypt subtypes (RFB protocol, "VeNCrypt" security type; QEMU ui/vnc.h). */
export const VENCRYPT_SUBTYPES = {
  Plain: 256,
  TLSNone: 257,
  TLSVnc: 258,
  TLSPlain: 259,
  X509None: 260,
  X509Vnc: 261,
  X509Plain: 262,
  TLSSASL: 263,
  X509SASL: 264,
} as const;

/** Subtypes the probe may choose, most preferred first: certificate-based ones, then anonymous TLS. */
const PREFERRED_SUBTYPES: readonly number[] = [260, 261, 262, 264, 257, 258, 259, 263];
/** Anonymous (certificate-less) TLS subtypes. */
const ANONYMOUS_SUBTYPES: readonly number[] = [257, 258, 259, 263];
/** Subtypes after whose TLS handshake the server sends the RFB SecurityResult. */
const RESULT_SUBTYPES: readonly number[] = [257, 260];

/** Options for {@link probeVncTls}. */
export interface VncTlsProbeOptions {
  /** Loopback IPv4 address of the VNC server (also the name checked for `authorized`). */
  host: string;
  port: number;
  /** Client certificate (PEM) to present, for servers with `verify-peer=on`. Give it with `key`. */
  cert?: string;
  /** The client certificate's private key (PEM). */
  key?: string;
  /** CA certificate(s) (PEM) that `authorized` is judged against. @default Node's bundled roots */
  ca?: string;
  /** Upper bound for the whole exchange, connect to teardown. @default 10 s */
  timeoutMs?: number;
}

/** The certificate a VNC server presented. */
export interface VncServerCertificate {
  /** SHA-256 of the DER, `AB:CD:...` (upper-case hex with colons, as openssl prints it). */
  fingerprintSha256: string;
  /** Subject as Node prints it (`X509Certificate.subject`: one `KEY=value` per line, e.g. `CN=vnc-a`). */
  subject: string;
  /** Issuer, in the same form. */
  issuer: string;
  /** notAfter (second precision). */
  notAfter: Date;
  /** Serial number, upper-case hex. */
  serialNumber: string;
  /** The DER certificate. */
  der: Buffer;
}

/** What {@link probeVncTls} saw. */
export interface VncTlsProbeResult {
  /** The server's RFB version line without the newline, e.g. `RFB 003.008`. */
  serverVersion: string;
  /** Security types the server offered. */
  securityTypes: number[];
  /** VeNCrypt subtypes the server offered. */
  subtypes: number[];
  /** The subtype chosen (see {@link VENCRYPT_SUBTYPES}). */
  subtype: number;
  /** Negotiated TLS version, e.g. `TLSv1.3`. */
  protocol: string | null;
  /** Negotiated cipher suite (OpenSSL name). */
  cipher: string;
  /** The server's certificate; null for an anonymous subtype. */
  certificate: VncServerCertificate | null;
  /** Whether the certificate chains to `ca` and matches `host` (informational: the probe connects regardless). */
  authorized: boolean;
  /** Why not, when not. */
  authorizationError?: string;
  /**
   * For the `*None` subtypes: whether the server accepted this client after the TLS handshake (RFB
   * SecurityResult 0), false when it sent a failure or closed the connection. Undefined for other subtypes,
   * where VNC/Plain/SASL authentication would come next.
   */
  accepted?: boolean;
  /** The server's failure reason or how the connection ended, when `accepted` is false. */
  rejection?: string;
}

/** Reads exact byte counts from a stream; pending reads reject once the stream ends, closes or fails. */
class StreamReader {
  private buffered = Buffer.alloc(0);
  private waiting: { n: number; what: string; resolve: (b: Buffer) => void; reject: (e: Error) => void }[] =
    [];
  private ended: string | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    this.pump();
  };
  private readonly onEnd = (): void => this.fail("the server closed the connection");
  private readonly onError = (err: Error): void => this.fail(err.message);

  constructor(private readonly stream: Duplex) {
    stream.on("data", this.onData);
    stream.on("end", this.onEnd);
    stream.on("close", this.onEnd);
    stream.on("error", this.onError);
  }

  /** Resolves the next `n` bytes; `what` names them in the error if the stream ends first. */
  read(n: number, what: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ n, what, resolve, reject });
      this.pump();
    });
  }

  /** Stops listening (the stream is handed over) and returns what was received but not read. */
  detach(): Buffer {
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.off("close", this.onEnd);
    this.stream.off("error", this.onError);
    return this.buffered;
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.buffered.length >= this.waiting[0].n) {
      const w = this.waiting.shift()!;
      const bytes = this.buffered.subarray(0, w.n);
      this.buffered = this.buffered.subarray(w.n);
      w.resolve(bytes);
    }
    if (this.ended !== undefined) {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${this.ended} (expecting ${w.what})`));
    }
  }

  private fail(reason: string): void {
    this.ended ??= reason;
    this.pump();
  }
}

/** Reads an RFB failure reason (U32 length, then that many bytes). */
async function readReason(reader: StreamReader): Promise<string> {
  const length = (await reader.read(4, "reason length")).readUInt32BE(0);
  if (length > 65_536) throw new Error(`VNC server sent an implausible reason length ${length}`);
  return (await reader.read(length, "reason")).toString("utf8");
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value, 0);
  return b;
}

/** Describes a peer certificate from Node's TLS socket. */
function describeCertificate(peer: tls.PeerCertificate): VncServerCertificate | null {
  if (peer === null || peer.raw === undefined) return null;
  const x509 = new X509Certificate(peer.raw);
  return {
    fingerprintSha256: x509.fingerprint256,
    subject: x509.subject,
    issuer: x509.issuer,
    notAfter: new Date(x509.validTo),
    serialNumber: x509.serialNumber.toUpperCase(),
    der: peer.raw,
  };
}

/** The RFB version exchange and VeNCrypt negotiation; resolves once the server expects a TLS ClientHello. */
async function negotiate(
  socket: net.Socket,
  reader: StreamReader,
): Promise<Pick<VncTlsProbeResult, "serverVersion" | "securityTypes" | "subtypes" | "subtype">> {
  const serverVersion = (await reader.read(12, "RFB version")).toString("latin1").replace(/\n$/, "");
  const version = /^RFB (\d{3})\.(\d{3})$/.exec(serverVersion);
  if (version === null) throw new Error(`not an RFB server: ${JSON.stringify(serverVersion)}`);
  if (Number(version[1]) * 1000 + Number(version[2]) < 3008) {
    throw new Error(`VNC server speaks ${serverVersion}; this probe needs RFB 3.8`);
  }
  socket.write("RFB 003.008\n");

  const count = (await reader.read(1, "number of security types"))[0];
  if (count === 0) throw new Error(`VNC server refused the connection: ${await readReason(reader)}`);
  const securityTypes = [...(await reader.read(count, "security types"))];
  if (!securityTypes.includes(SECURITY_VENCRYPT)) {
    throw new Error(`VNC server offers security types [${securityTypes.join(", ")}], not VeNCrypt (19)`);
  }
  socket.write(Buffer.from([SECURITY_VENCRYPT]));

  const [major, minor] = await reader.read(2, "VeNCrypt version");
  if (major !== 0 || minor < 2) throw new Error(`VNC server offers VeNCrypt ${major}.${minor}, not 0.2`);
  socket.write(Buffer.from([0, 2]));
  const versionAck = (await reader.read(1, "VeNCrypt version ack"))[0];
  if (versionAck !== 0) throw new Error(`VNC server refused VeNCrypt 0.2 (status ${versionAck})`);

  const subtypeCount = (await reader.read(1, "number of VeNCrypt subtypes"))[0];
  const raw = await reader.read(4 * subtypeCount, "VeNCrypt subtypes");
  const subtypes = Array.from({ length: subtypeCount }, (_, i) => raw.readUInt32BE(4 * i));
  const subtype = PREFERRED_SUBTYPES.find((t) => subtypes.includes(t));
  if (subtype === undefined) {
    throw new Error(`VNC server offers VeNCrypt subtypes [${subtypes.join(", ")}], none of them with TLS`);
  }
  socket.write(u32(subtype));
  const subtypeAck = (await reader.read(1, "VeNCrypt subtype ack"))[0];
  if (subtypeAck !== 1)
    throw new Error(`VNC server refused VeNCrypt subtype ${subtype} (status ${subtypeAck})`);
  return { serverVersion, securityTypes, subtypes, subtype };
}

/** Runs the TLS client handshake over `socket`; resolves the connected TLS socket. */
function handshake(socket: net.Socket, opts: VncTlsProbeOptions, anonymous: boolean): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      host: opts.host,
      rejectUnauthorized: false,
      cert: opts.cert,
      key: opts.key,
      ca: opts.ca,
      // Anonymous VeNCrypt is TLS 1.2 anonymous (EC)DH, which OpenSSL only offers at security level 0.
      ...(anonymous ? { ciphers: "aNULL:@SECLEVEL=0", maxVersion: "TLSv1.2" as const } : {}),
    });
    const onError = (err: Error): void =>
      reject(new Error(`TLS handshake with the VNC server: ${err.message}`));
    secure.once("error", onError);
    secure.once("close", () =>
      reject(new Error("the VNC server closed the connection during the TLS handshake")),
    );
    secure.once("secureConnect", () => {
      secure.off("error", onError);
      resolve(secure);
    });
  });
}

/** Reads the RFB SecurityResult after the TLS handshake of a `*None` subtype. */
async function securityResult(
  secure: tls.TLSSocket,
): Promise<Pick<VncTlsProbeResult, "accepted" | "rejection">> {
  const reader = new StreamReader(secure);
  try {
    const status = (await reader.read(4, "SecurityResult")).readUInt32BE(0);
    if (status === 0) return { accepted: true };
    return { accepted: false, rejection: await readReason(reader).catch((e: Error) => e.message) };
  } catch (err) {
    return { accepted: false, rejection: (err as Error).message };
  } finally {
    reader.detach();
  }
}

/**
 * Connects to a VeNCrypt VNC server on a loopback address, negotiates a TLS subtype (X509None, X509Vnc,
 * X509Plain, X509SASL; else an anonymous TLS one), completes a TLS handshake over the same socket (with the
 * client certificate if given) and resolves what the server presented. Rejects with the reason when the server
 * does not get that far, or after `timeoutMs`. The socket is destroyed in every case.
 */
export async function probeVncTls(opts: VncTlsProbeOptions): Promise<VncTlsProbeResult> {
  assertLoopbackIPv4(opts.host);
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    throw new Error("probeVncTls: give both cert and key, or neither");
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const socket = net.connect({ host: opts.host, port: opts.port });
  // The TLS socket reports errors of the connection once it owns it; this keeps a late one from being unhandled.
  socket.on("error", () => undefined);
  let secure: tls.TLSSocket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`VeNCrypt probe of ${opts.host}:${opts.port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
  });
  const exchange = async (): Promise<VncTlsProbeResult> => {
    const reader = new StreamReader(socket);
    const negotiated = await negotiate(socket, reader);
    const early = reader.detach();
    if (early.length > 0) throw new Error(`VNC server sent ${early.length} unexpected bytes before TLS`);
    const anonymous = ANONYMOUS_SUBTYPES.includes(negotiated.subtype);
    secure = await handshake(socket, opts, anonymous);
    const cipher = secure.getCipher();
    const authError = secure.authorizationError;
    const result: VncTlsProbeResult = {
      ...negotiated,
      protocol: secure.getProtocol(),
      cipher: cipher.name,
      certificate: describeCertificate(secure.getPeerCertificate(false)),
      authorized: secure.authorized,
      ...(authError !== undefined && authError !== null ? { authorizationError: String(authError) } : {}),
    };
    if (RESULT_SUBTYPES.includes(negotiated.subtype)) Object.assign(result, await securityResult(secure));
    return result;
  };
  try {
    return await Promise.race([exchange(), timeout]);
  } finally {
    clearTimeout(timer);
    secure?.destroy();
    socket.destroy();
  }
}
