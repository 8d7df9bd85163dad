/** The HostIdentities resource: one host's TLS identities, each with its own key, in one resource. */
import * as pulumi from "@pulumi/pulumi";
import type { HostRole } from "./handlers/hostIdentities";
import { DEFAULT_LEAF_RENEW_BEFORE_HOURS } from "./handlers/certificate";
import { LeafCertificateArgs, leafInputs, leafOptions, renewAtOutput } from "./leafCertificate";
import type { Subject } from "./pki/names";
import { hostIdentitiesProvider } from "./providers";
import { suspendStackTraces } from "./sdkStacks";

export type { HostRole } from "./handlers/hostIdentities";

/**
 * Arguments of {@link HostIdentities}: a server certificate's, given as subject and names (no certtool template,
 * no CSR: every identity's key is generated), plus roles.
 */
export interface HostIdentitiesArgs extends Omit<
  LeafCertificateArgs,
  "template" | "csrPem" | "autoRenew" | "revoked" | "subject" | "dnsNames" | "ipAddresses"
> {
  /**
   * The libvirt server identity's subject DN; its CN is the host's FQDN. Each role's DN is this one with the
   * role's OU (`OU=libvirt-client`, `OU=qemu`) in place of any OU given.
   */
  readonly subject: pulumi.Input<Subject>;
  /**
   * DNS names clients use, in the server and QEMU certificates (which also get the CN; the libvirt client
   * certificate gets no names). Normalised: case and order do not matter.
   * @default none besides the CN
   */
  readonly dnsNames?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * IPv4/IPv6 addresses clients use, in the server and QEMU certificates. Normalised to canonical form.
   * @default none
   */
  readonly ipAddresses?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * Identities besides the libvirt server identity, each with its OWN key: `client` (libvirt client for
   * migration and peer connections, DN `...,OU=libvirt-client,CN=<fqdn>`, clientAuth only) and `qemu`
   * (QEMU's TLS endpoints, DN `...,OU=qemu,CN=<fqdn>`, serverAuth + clientAuth, the host's SANs).
   * @default [] (the server identity only)
   */
  readonly roles?: pulumi.Input<HostRole[]>;
}

/**
 * A host's TLS identities, issued together: the libvirt server identity (`certPem`/`keyPem`, serverAuth,
 * subject as given, the host's names as SANs) and, per role, its own key and certificate. No two roles
 * share a key: the QEMU group's key cannot log in to any libvirtd (its DN is in no `tls_allowed_dn_list`),
 * and the libvirt client key (which `tls_allowed_dn_list` admits) never needs to be readable by QEMU. The
 * QEMU identity is a TLS server for the host's names under the same CA (QEMU migration and NBD peers check
 * them), so whoever holds it can still pose as a TLS server of this host to a client that trusts the CA.
 * One resource per host however many roles: the fleet pays the Pulumi per-resource cost once. Replaced
 * (all identities re-issued, create before delete) when the subject, names, key type, validity, CA or
 * roles change, or when renewal is due.
 */
export class HostIdentities extends pulumi.dynamic.Resource {
  /** The libvirt server certificate (PEM): `servercert.pem`. */
  declare readonly certPem: pulumi.Output<string>;
  /** The libvirt server key (PKCS#8 PEM). Secret. */
  declare readonly keyPem: pulumi.Output<string>;
  /** The issuing CA's certificate (PEM). */
  declare readonly caCertPem: pulumi.Output<string>;
  /** The issuing CA's chain up to the root (PEM). */
  declare readonly caChainPem: pulumi.Output<string>;
  /** The server certificate's serial number, hex. */
  declare readonly serialNumber: pulumi.Output<string>;
  /** Start of validity (all identities), ISO 8601. */
  declare readonly notBefore: pulumi.Output<string>;
  /** End of validity of all identities (one planned end), ISO 8601. */
  declare readonly notAfter: pulumi.Output<string>;
  /** When the next `pulumi up` re-issues them all: notAfter minus renewBeforeHours (computed, not stored). */
  declare readonly renewAt: pulumi.Output<string>;
  /** SHA-256 fingerprint of the server certificate. */
  declare readonly fingerprintSha256: pulumi.Output<string>;
  /** The server identity's DN in GnuTLS compat form. */
  declare readonly subjectDn: pulumi.Output<string>;
  /** The server identity's DN as `tls_allowed_dn_list` would take it (it is not listed there). */
  declare readonly distinguishedName: pulumi.Output<string>;
  /**
   * The libvirt client certificate (`clientcert.pem`). Typed as a string so it passes straight to a layout;
   * undefined without the `client` role (an install given it then fails with `certPem: is required`).
   */
  declare readonly clientCertPem: pulumi.Output<string>;
  /** The libvirt client key. Secret. Undefined without the `client` role, as `clientCertPem`. */
  declare readonly clientKeyPem: pulumi.Output<string>;
  /** The libvirt client identity's DN: what peers' `tls_allowed_dn_list` lists. */
  declare readonly clientDistinguishedName: pulumi.Output<string | undefined>;
  /** The client certificate's serial number, hex. */
  declare readonly clientSerialNumber: pulumi.Output<string | undefined>;
  /** SHA-256 fingerprint of the client certificate. */
  declare readonly clientFingerprintSha256: pulumi.Output<string | undefined>;
  /** End of the client certificate's validity, ISO 8601. */
  declare readonly clientNotAfter: pulumi.Output<string | undefined>;
  /**
   * The QEMU certificate (`server-cert.pem` and `client-cert.pem`). Typed as a string so it passes straight
   * to a layout; undefined without the `qemu` role, as `clientCertPem`.
   */
  declare readonly qemuCertPem: pulumi.Output<string>;
  /** The QEMU key, readable by the QEMU group on the host. Secret. Undefined without the `qemu` role. */
  declare readonly qemuKeyPem: pulumi.Output<string>;
  /** The QEMU identity's DN (never in any `tls_allowed_dn_list`). */
  declare readonly qemuDistinguishedName: pulumi.Output<string | undefined>;
  /** The QEMU certificate's serial number, hex. */
  declare readonly qemuSerialNumber: pulumi.Output<string | undefined>;
  /** SHA-256 fingerprint of the QEMU certificate. */
  declare readonly qemuFingerprintSha256: pulumi.Output<string | undefined>;
  /** End of the QEMU certificate's validity, ISO 8601. */
  declare readonly qemuNotAfter: pulumi.Output<string | undefined>;

  constructor(name: string, args: HostIdentitiesArgs, opts?: pulumi.CustomResourceOptions) {
    const { profile, ...base } = leafInputs(args, "server");
    void profile;
    const outputs = Object.fromEntries(
      ["client", "qemu"].flatMap((role) =>
        ["CertPem", "KeyPem", "SerialNumber", "NotAfter", "FingerprintSha256", "DistinguishedName"].map(
          (k) => [`${role}${k}`, undefined],
        ),
      ),
    );
    // The SDK's per-property stack traces are this registration's largest cost (see sdkStacks.ts).
    const restoreStacks = suspendStackTraces();
    try {
      super(
        hostIdentitiesProvider,
        name,
        { ...base, roles: args.roles, ...outputs },
        pulumi.mergeOptions(leafOptions(opts), { additionalSecretOutputs: ["clientKeyPem", "qemuKeyPem"] }),
        "virt-pki",
        "HostIdentities",
      );
    } finally {
      restoreStacks();
    }
    this.renewAt = renewAtOutput(this.notAfter, args.renewBeforeHours, DEFAULT_LEAF_RENEW_BEFORE_HOURS);
  }
}
