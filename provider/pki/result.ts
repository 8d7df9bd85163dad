/** The common shape every issuing function returns, and how it is filled from a signed certificate. */
import * as der from "./asn1";
import { fingerprintSha256 } from "./certificate";
import { compatDistinguishedName, nameFromAsn1, rfc4514DistinguishedName } from "./names";
import { KeySpec } from "./keys";
import { ParsedCertificate } from "./x509";

/** A signed certificate and the facts about it that resources expose as outputs. */
export interface CertificateFacts {
  /** The certificate, PEM. */
  readonly certPem: string;
  /** Serial number, lower-case hex. */
  readonly serialNumber: string;
  /** Start of validity, ISO 8601. */
  readonly notBefore: string;
  /** End of validity, ISO 8601. */
  readonly notAfter: string;
  /** SHA-256 fingerprint, `AB:CD:...`. */
  readonly fingerprintSha256: string;
  /** Subject DN in GnuTLS compat form (encoded order), what `tls_allowed_dn_list` matches. */
  readonly subjectDn: string;
  /** Subject DN in RFC 4514 form (reversed), as `certtool -i` prints it. */
  readonly subjectDnRfc4514: string;
  /** Issuer DN in GnuTLS compat form. */
  readonly issuerDn: string;
  /** The subject key's type and size. */
  readonly keySpec: KeySpec;
}

/** Facts of a parsed certificate. */
export function factsOf(cert: ParsedCertificate, keySpec: KeySpec): CertificateFacts {
  const subject = nameFromAsn1(cert.subject);
  return {
    certPem: der.derToPem(cert.der, "CERTIFICATE"),
    serialNumber: cert.serialNumber,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    fingerprintSha256: fingerprintSha256(cert.der),
    subjectDn: compatDistinguishedName(subject),
    subjectDnRfc4514: rfc4514DistinguishedName(subject),
    issuerDn: compatDistinguishedName(nameFromAsn1(cert.issuer)),
    keySpec,
  };
}
