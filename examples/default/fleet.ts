/**
 * The embedded default program: the PKI of a three-host libvirt/QEMU fleet and one operator client,
 * as in the libvirt and QEMU TLS guides. Kept as a function so tests can run it through the engine
 * test harness; index.ts calls it and exports the stack outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import {
  CertificateAuthority,
  CertificateRevocationList,
  ClientCertificate,
  PreSharedKeys,
  ServerCertificate,
} from "../../index";

/** One host of the default fleet. */
export interface DefaultHost {
  readonly name: string;
  readonly fqdn: string;
  readonly ip: string;
}

/** The three hosts of the default fleet (loopback addresses, so nothing points at a real network). */
export const DEFAULT_HOSTS: readonly DefaultHost[] = [
  { name: "compute1", fqdn: "compute1.virt.example", ip: "127.0.0.11" },
  { name: "compute2", fqdn: "compute2.virt.example", ip: "127.0.0.12" },
  { name: "compute3", fqdn: "compute3.virt.example", ip: "127.0.0.13" },
];

/** Declares the fleet's CA, one server+client certificate per host (migration needs both), an operator client, a CRL and QEMU PSKs. */
export function declareFleet(hosts: readonly DefaultHost[] = DEFAULT_HOSTS) {
  const ca = new CertificateAuthority("fleet-ca", {
    subject: { organization: "Example Virt", commonName: "Example Virt CA" },
  });
  const servers = hosts.map(
    (h) =>
      new ServerCertificate(`${h.name}-server`, {
        ca,
        subject: { organization: "Example Virt", commonName: h.fqdn },
        dnsNames: [h.name],
        ipAddresses: [h.ip],
        alsoClient: true,
      }),
  );
  const operator = new ClientCertificate("operator-client", {
    ca,
    subject: {
      country: "GB",
      state: "London",
      locality: "London",
      organization: "Example Virt",
      commonName: "operator",
    },
  });
  const crl = new CertificateRevocationList("fleet-crl", { ca });
  const psk = new PreSharedKeys("fleet-psk", { usernames: ["qemu"] });
  return {
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    crlPem: crl.crlPem,
    keysPsk: psk.keysPsk,
    tlsAllowedDnList: pulumi.all([operator.distinguishedName, ...servers.map((s) => s.subjectDn)]),
    hosts: Object.fromEntries(
      hosts.map((h, i) => [
        h.name,
        { fingerprintSha256: servers[i].fingerprintSha256, notAfter: servers[i].notAfter },
      ]),
    ),
    earliestRenewAt: pulumi.all(servers.map((s) => s.renewAt)).apply((t) => [...t].sort()[0]),
  };
}
