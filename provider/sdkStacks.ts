/**
 * Registering a resource, the Pulumi SDK captures a stack trace for each of the four promises of each of its
 * properties (@pulumi/pulumi runtime/rpc.js `transferProperties` -> runtime/debuggable.js `debuggablePromise`:
 * `new Error().stack`), read only to report leaked promises when `PULUMI_DEBUG_PROMISE_LEAKS` is set, plus one for
 * the resource's source position (runtime/resource.js). For a fleet that is the largest single cost of the
 * program: registering 1000 hosts under the SDK's mocks took 14.6 s with the stacks and 9.0 s without (README:
 * Speed). This package's own registrations run with `Error.stackTraceLimit` at 0, set and restored around the
 * synchronous SDK call, unless `PULUMI_DEBUG_PROMISE_LEAKS` is set. What is lost: the source position of this
 * package's resources (it would point into this package, not the program) and their promises' stacks in a leak
 * report made without that variable (which prints none).
 */

/** Lowers `Error.stackTraceLimit` to 0 until the returned function is called (nesting-safe). */
export function suspendStackTraces(): () => void {
  if (process.env.PULUMI_DEBUG_PROMISE_LEAKS) return () => undefined;
  const saved = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  return () => {
    Error.stackTraceLimit = saved;
  };
}

/** Runs `register` (a resource's construction) with stack traces suspended; see {@link suspendStackTraces}. */
export function withoutStackTraces<T>(register: () => T): T {
  const restore = suspendStackTraces();
  try {
    return register();
  } finally {
    restore();
  }
}
