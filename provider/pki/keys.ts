/**
 * Private keys: generation off the event loop, PEM import in every common encoding, and the native
 * signing that certificates, CSRs and CRLs share. Node's crypto does all the key work: it is native,
 * asynchronous, and (unlike node-forge) handles ECDSA and Ed25519.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  KeyObject,
  sign as nodeSign,
} from "node:crypto";
import { promisify } from "node:util";
import * as der from "./asn1";
import { PkiError } from "./errors";
import { checkTextSize, MAX_PEM_CHARS } from "./limits";
import { quoteInput } from "./quote";

const generateKeyPairAsync = promisify(generateKeyPair);

/** The key types this library issues. `rsa-3072` is the default of `pki` and the resources; `VirtualizationPki` defaults to `ecdsa-p256`. */
export type KeySpec = "rsa-2048" | "rsa-3072" | "rsa-4096" | "ecdsa-p256" | "ecdsa-p384" | "ed25519";

/** Every supported key spec, in a stable order. */
export const KEY_SPECS: readonly KeySpec[] = [
  "rsa-2048",
  "rsa-3072",
  "rsa-4096",
  "ecdsa-p256",
  "ecdsa-p384",
  "ed25519",
];

/** The default key spec of `pki` and the resources: RSA 3072 bits, as certtool (the fleet uses P-256, for speed at scale). */
export const DEFAULT_KEY_SPEC: KeySpec = "rsa-3072";

/** Checks a key spec given as text, naming the property on error. */
export function parseKeySpec(value: unknown, property = "keySpec"): KeySpec {
  if (value === undefined || value === null || value === "") return DEFAULT_KEY_SPEC;
  if (typeof value === "string" && (KEY_SPECS as readonly string[]).includes(value.toLowerCase())) {
    return value.toLowerCase() as KeySpec;
  }
  throw new PkiError(property, `unknown key spec ${quoteInput(value)}; use one of ${KEY_SPECS.join(", ")}`);
}

/** A freshly generated key pair as native key objects. */
export interface GeneratedKey {
  /** The private key. Secret. */
  readonly privateKey: KeyObject;
  /** Its public key. */
  readonly publicKey: KeyObject;
}

/** Generates a key pair asynchronously, in libuv's thread pool, so many can be made concurrently. */
export async function generateKey(spec: KeySpec = DEFAULT_KEY_SPEC): Promise<GeneratedKey> {
  switch (spec) {
    case "rsa-2048":
    case "rsa-3072":
    case "rsa-4096":
      return generateKeyPairAsync("rsa", { modulusLength: Number(spec.slice(4)), publicExponent: 0x10001 });
    case "ecdsa-p256":
    case "ecdsa-p384":
      return generateKeyPairAsync("ec", { namedCurve: spec === "ecdsa-p256" ? "prime256v1" : "secp384r1" });
    case "ed25519":
      return generateKeyPairAsync("ed25519");
  }
}

/** A freshly generated key pair as the encodings a certificate needs: no key object is kept. */
export interface EncodedKey {
  /** PKCS#8 PEM of the private key. */
  readonly keyPem: string;
  /** DER SubjectPublicKeyInfo of the public key. */
  readonly spki: Buffer;
}

/**
 * The fixed DER around an EC key of a named curve, as OpenSSL 3 writes it (the tests compare bytes):
 * - SPKI: `SEQUENCE { SEQUENCE { id-ecPublicKey, curve }, BIT STRING 04||x||y }`;
 * - PKCS#8: `SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, curve }, OCTET STRING ECPrivateKey }` with
 *   `ECPrivateKey ::= SEQUENCE { INTEGER 1, OCTET STRING d, [1] BIT STRING 04||x||y }` (RFC 5915, no [0]
 *   parameters since the algorithm carries them).
 * Every length is fixed by the curve's size, so each encoding is prefix || values.
 */
const EC_DER: Partial<Record<KeySpec, { size: number; spki: Buffer; pkcs8: Buffer; pub: Buffer }>> = {
  "ecdsa-p256": {
    size: 32,
    spki: Buffer.from("3059301306072a8648ce3d020106082a8648ce3d030107034200", "hex"),
    pkcs8: Buffer.from("308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420", "hex"),
    pub: Buffer.from("a144034200", "hex"),
  },
  "ecdsa-p384": {
    size: 48,
    spki: Buffer.from("3076301006072a8648ce3d020106052b81040022036200", "hex"),
    pkcs8: Buffer.from("3081b6020100301006072a8648ce3d020106052b8104002204819e30819b0201010430", "hex"),
    pub: Buffer.from("a164036200", "hex"),
  },
};

/**
 * Generates a key pair (as {@link generateKey}) and returns the two encodings an issuance needs. For EC keys
 * they are assembled from the key's JWK form: OpenSSL 3's DER and PEM encoders took 0.19 ms of the event
 * loop per key, the JWK export 0.01 ms, and exporting was about half of an ECDSA issuance (`npm run bench`,
 * "of limit"). Other keys are exported by OpenSSL.
 */
export async function generateEncodedKey(spec: KeySpec = DEFAULT_KEY_SPEC): Promise<EncodedKey> {
  const { privateKey, publicKey } = await generateKey(spec);
  const ec = EC_DER[spec];
  if (ec !== undefined) {
    const jwk = privateKey.export({ format: "jwk" });
    const [d, x, y] = [jwk.d, jwk.x, jwk.y].map((v) => Buffer.from(v ?? "", "base64url"));
    if (d.length === ec.size && x.length === ec.size && y.length === ec.size) {
      const point = Buffer.concat([Buffer.of(4), x, y]);
      const pkcs8 = Buffer.concat([ec.pkcs8, d, ec.pub, point]);
      return { keyPem: der.derToPem(pkcs8, "PRIVATE KEY"), spki: Buffer.concat([ec.spki, point]) };
    }
  }
  return { keyPem: toPkcs8Pem(privateKey), spki: spkiDer(publicKey) };
}

/** Generates a private key (see `generateKey`) and returns it as PKCS#8 PEM. */
export async function generatePrivateKey(spec: KeySpec = DEFAULT_KEY_SPEC): Promise<string> {
  return toPkcs8Pem((await generateKey(parseKeySpec(spec))).privateKey);
}

/**
 * Loads an unencrypted private key from PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or
 * SEC1 (`EC PRIVATE KEY`). The error names `property` and never echoes the input.
 */
export function loadPrivateKey(pem: string, property = "keyPem"): KeyObject {
  checkTextSize(pem, property, MAX_PEM_CHARS, "PEM private key");
  if (typeof pem !== "string" || !/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(pem)) {
    if (typeof pem === "string" && pem.includes("ENCRYPTED PRIVATE KEY")) {
      throw new PkiError(
        property,
        "encrypted private keys are not supported; decrypt it first (openssl pkey)",
      );
    }
    throw new PkiError(
      property,
      "expected a PEM private key (PKCS#8 'PRIVATE KEY', PKCS#1 'RSA PRIVATE KEY' or SEC1 'EC PRIVATE KEY')",
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch {
    throw new PkiError(property, "the PEM private key could not be decoded");
  }
  keySpecOf(key, property);
  return key;
}

/** The spec of a key (private or public); throws for key types and sizes this library does not issue with. */
export function keySpecOf(key: KeyObject, property = "keyPem"): KeySpec {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "rsa": {
      const spec = `rsa-${details.modulusLength}`;
      if ((KEY_SPECS as readonly string[]).includes(spec)) return spec as KeySpec;
      throw new PkiError(property, `RSA keys must be 2048, 3072 or 4096 bits, got ${details.modulusLength}`);
    }
    case "ec":
      if (details.namedCurve === "prime256v1") return "ecdsa-p256";
      if (details.namedCurve === "secp384r1") return "ecdsa-p384";
      throw new PkiError(property, `EC keys must be on P-256 or P-384, got ${details.namedCurve}`);
    case "ed25519":
      return "ed25519";
    default:
      throw new PkiError(
        property,
        `unsupported key type ${key.asymmetricKeyType}; use RSA, ECDSA or Ed25519`,
      );
  }
}

/** PKCS#8 PEM of a private key. */
export function toPkcs8Pem(key: KeyObject): string {
  return key.export({ format: "pem", type: "pkcs8" }) as string;
}

/** DER SubjectPublicKeyInfo of a key (private keys give their public half). */
export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return pub.export({ format: "der", type: "spki" }) as Buffer;
}

/**
 * RFC 5280 section 4.2.1.2 method (1) key identifier: SHA-1 of the subjectPublicKey BIT STRING's bytes,
 * the same value certtool and OpenSSL put in subjectKeyIdentifier.
 */
export function keyIdentifier(spki: Buffer): Buffer {
  const bitString = der.children(der.fromDer(spki))[1];
  const bytes = Buffer.from((bitString.value as string).slice(1), "binary");
  return createHash("sha1").update(bytes).digest();
}

/** The signature algorithm a key of this spec signs with: its OID, and the digest Node uses. */
export interface SignatureAlgorithm {
  /** AlgorithmIdentifier OID. */
  readonly oid: string;
  /** Digest name for `crypto.sign`, or null for Ed25519 (which hashes internally). */
  readonly hash: "sha256" | "sha384" | null;
  /** Whether the AlgorithmIdentifier carries an explicit NULL parameter (RSA PKCS#1 v1.5). */
  readonly nullParams: boolean;
}

/** Picks the signature algorithm for a signing key: SHA-256 for RSA and P-256, SHA-384 for P-384. */
export function signatureAlgorithmFor(spec: KeySpec): SignatureAlgorithm {
  switch (spec) {
    case "ecdsa-p256":
      return { oid: "1.2.840.10045.4.3.2", hash: "sha256", nullParams: false };
    case "ecdsa-p384":
      return { oid: "1.2.840.10045.4.3.3", hash: "sha384", nullParams: false };
    case "ed25519":
      return { oid: "1.3.101.112", hash: null, nullParams: false };
    default:
      return { oid: "1.2.840.113549.1.1.11", hash: "sha256", nullParams: true };
  }
}

/** AlgorithmIdentifier node for a signature algorithm. */
export function algorithmIdentifier(alg: SignatureAlgorithm): der.Asn1 {
  return der.seq(alg.nullParams ? [der.oid(alg.oid), der.nul()] : [der.oid(alg.oid)]);
}

/**
 * Signs a to-be-signed structure and wraps it as `SEQUENCE { tbs, algorithm, BIT STRING signature }`,
 * the shape shared by certificates, CSRs and CRLs. Signing is native (OpenSSL inside Node).
 */
export function signStructure(tbs: der.Asn1, signer: KeyObject): Buffer {
  const alg = signatureAlgorithmFor(keySpecOf(signer, "issuer.keyPem"));
  const tbsDer = der.toDer(tbs);
  const signature = nodeSign(alg.hash, tbsDer, signer);
  return der.toDer(der.seq([tbs, algorithmIdentifier(alg), der.bits(signature.toString("binary"))]));
}
