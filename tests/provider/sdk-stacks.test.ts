/**
 * This package registers its resources with `Error.stackTraceLimit` at 0 (provider/sdkStacks.ts): the limit is
 * restored right after, also when the registration throws, and left alone when PULUMI_DEBUG_PROMISE_LEAKS asks
 * for the SDK's leak stacks. The gain is measured by `npm run bench:fleet`, not here.
 */
import { suspendStackTraces, withoutStackTraces } from "../../provider/sdkStacks";
import { HostIdentities } from "../../index";
import { captureResources } from "../support/pulumiHost";

const saved = process.env.PULUMI_DEBUG_PROMISE_LEAKS;
afterEach(() => {
  if (saved === undefined) delete process.env.PULUMI_DEBUG_PROMISE_LEAKS;
  else process.env.PULUMI_DEBUG_PROMISE_LEAKS = saved;
});

test("suspended during the call, restored after it, also after a throw, and nesting-safe", () => {
  delete process.env.PULUMI_DEBUG_PROMISE_LEAKS;
  const before = Error.stackTraceLimit;
  let inside = -1;
  let nested = -1;
  withoutStackTraces(() => {
    inside = Error.stackTraceLimit;
    const restore = suspendStackTraces();
    nested = Error.stackTraceLimit;
    restore();
    expect(Error.stackTraceLimit).toBe(0);
  });
  expect([inside, nested, Error.stackTraceLimit]).toEqual([0, 0, before]);
  expect(() =>
    withoutStackTraces(() => {
      throw new Error("registration failed");
    }),
  ).toThrow("registration failed");
  expect(Error.stackTraceLimit).toBe(before);
});

test("PULUMI_DEBUG_PROMISE_LEAKS keeps the SDK's stacks", () => {
  process.env.PULUMI_DEBUG_PROMISE_LEAKS = "1";
  const before = Error.stackTraceLimit;
  expect(withoutStackTraces(() => Error.stackTraceLimit)).toBe(before);
});

test("registering a resource leaves the limit as it was", async () => {
  delete process.env.PULUMI_DEBUG_PROMISE_LEAKS;
  const before = Error.stackTraceLimit;
  let during = -1;
  await captureResources(
    () => {
      new HostIdentities("h", {
        ca: { certPem: "x", keyPem: "y" },
        subject: { commonName: "h.example.org" },
        dnsNames: ["h.example.org"],
      });
      during = Error.stackTraceLimit;
    },
    { preview: true },
  );
  expect([during, Error.stackTraceLimit]).toEqual([before, before]);
  expect(new Error("x").stack).toContain("sdk-stacks.test");
});
