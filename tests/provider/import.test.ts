/**
 * `pulumi import` (and the `import` resource option) cannot adopt a dynamic resource: the engine reads it
 * with the id alone (pkg/resource/deploy/step.go `ImportStep.Apply` builds a ReadRequest without state or
 * inputs; sdk/go/common/resource/plugin/provider_plugin.go `Read` then sends no `properties` Struct), and
 * the dynamic-provider host needs the resource's state to find its provider (sdk/nodejs/cmd/dynamic-provider
 * `read`: `req.getProperties().toJavaScript()`, then `getProvider(props)`, which compiles
 * `props.__provider`). These tests pin the host's errors the README quotes, and the way the README offers
 * instead: the CertificateAuthority's `import` input.
 */
import * as virtpki from "../../bin/index";
import {
  captureResources,
  ProviderHost,
  ProviderHostError,
  resourceUrn,
  startProviderHost,
} from "../support/pulumiHost";

const CA_TYPE = "pulumi-nodejs:dynamic/virt-pki:CertificateAuthority";
const urn = resourceUrn("ca", { type: CA_TYPE });

let host: ProviderHost;
beforeAll(async () => {
  host = await startProviderHost();
  await host.configure();
});
afterAll(async () => {
  await host?.stop();
});

const failure = (p: Promise<unknown>): Promise<ProviderHostError> =>
  p.then(
    () => {
      throw new Error("the read succeeded");
    },
    (e: unknown) => e as ProviderHostError,
  );

test("a read with the id alone, as the engine sends it for an import, fails in the host before our code", async () => {
  const err = await failure(host.read("some-ca-id", urn, undefined, undefined));
  expect(err).toBeInstanceOf(ProviderHostError);
  expect(err.codeName).toBe("UNKNOWN");
  expect(err.details).toBe("Cannot read properties of undefined (reading 'toJavaScript')");
});

test("with an empty state the host cannot find a provider either: there is no __provider to compile", async () => {
  const err = await failure(host.read("some-ca-id", urn, {}, {}));
  expect(err.codeName).toBe("UNKNOWN");
  expect(err.details).toBe("code must be a string, not undefined");
});

test("instead, the CertificateAuthority's import input adopts an existing CA as it is", async () => {
  const existing = await virtpki.pki.createCertificateAuthority({
    subject: { commonName: "Made Elsewhere" },
    keySpec: "ecdsa-p256",
  });
  const [ca] = await captureResources(() => {
    new virtpki.CertificateAuthority("ca", {
      import: { certPem: existing.certPem, keyPem: existing.keyPem! },
    });
  });
  const checked = await host.check(urn, {}, ca.inputs);
  expect(checked.failures).toEqual([]);
  const created = await host.create(urn, checked.inputs);
  expect(created.properties.certPem).toBe(existing.certPem);
  expect(created.properties.keyPem).toBe(existing.keyPem);
  expect(created.properties.subjectDn).toBe("CN=Made Elsewhere");
});
