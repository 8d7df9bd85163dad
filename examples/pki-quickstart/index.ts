/**
 * The libvirt TLS guide's PKI, made with the `pki` core and written to a staging folder in the layouts
 * libvirt and QEMU read: a CA from the guide's ca.info, a server certificate from its server.info, a
 * client certificate from its client.info, an empty CRL and a QEMU keys.psk. Run with `npm start`
 * (`STAGING_DIR` picks the folder, default ./staging). Keys are written mode 0600 before any byte lands.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { pki } from "../../index";

const root = resolve(process.env.STAGING_DIR ?? "staging");

function put(path: string, content: string, mode: number): void {
  const full = join(root, path);
  mkdirSync(join(full, ".."), { recursive: true, mode: 0o755 });
  // Create the temp file with its final mode before writing, then rename over the old file atomically.
  const tmp = `${full}.tmp-${process.pid}`;
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, full);
  console.log(`  ${mode.toString(8).padStart(4, "0")} ${path}`);
}

async function main(): Promise<void> {
  const ca = await pki.createCertificateAuthority({
    template: "cn = Libvirt Project\nca\ncert_signing_key\n",
  });
  const server = await pki.issueCertificate({
    issuer: ca,
    template: [
      "organization = Libvirt Project",
      "cn = compute1.libvirt.org",
      "dns_name = compute1",
      "dns_name = compute1.libvirt.org",
      "ip_address = 10.0.0.74",
      "ip_address = 2001:cafe::74",
      "tls_www_server",
      "encryption_key",
      "signing_key",
    ].join("\n"),
  });
  const client = await pki.issueCertificate({
    issuer: ca,
    template:
      "country = GB\nstate = London\nlocality = London\norganization = Libvirt Project\ncn = client1\n" +
      "tls_www_client\nencryption_key\nsigning_key\n",
  });
  const crl = pki.createCrl({ issuer: ca });
  const psk = pki.createPreSharedKeys(["qemu"]);

  console.log(`staging the libvirt/QEMU PKI under ${root}`);
  put("etc/pki/CA/cacert.pem", ca.certPem, 0o644);
  put("etc/pki/CA/cacrl.pem", crl.crlPem, 0o644);
  put("etc/pki/libvirt/servercert.pem", server.certPem, 0o644);
  put("etc/pki/libvirt/private/serverkey.pem", server.keyPem!, 0o600);
  put("etc/pki/libvirt/clientcert.pem", client.certPem, 0o644);
  put("etc/pki/libvirt/private/clientkey.pem", client.keyPem!, 0o600);
  put("etc/pki/qemu/ca-cert.pem", ca.certPem, 0o644);
  put("etc/pki/qemu/server-cert.pem", server.certPem, 0o644);
  put("etc/pki/qemu/server-key.pem", server.keyPem!, 0o600);
  put("etc/pki/qemu-psk/keys.psk", psk.keysPsk, 0o600);

  const check = pki.verifyChain(server.certPem, ca.certPem);
  console.log(`server ${server.subjectDn} serial ${server.serialNumber} valid until ${server.notAfter}`);
  console.log(
    `  chain: ${check.ok ? "ok" : check.reason}; serves compute1: ${pki.matchesHost(server.certPem, "compute1")}`,
  );
  console.log(`client DN for tls_allowed_dn_list: ${client.distinguishedName}`);
  console.log(`renewal: ${pki.renewal(server.certPem, new Date(), 30 * 24).reason}`);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
