/** The PreSharedKeys resource. */
import * as pulumi from "@pulumi/pulumi";
import { preSharedKeysProvider } from "./providers";
import { suspendStackTraces } from "./sdkStacks";

/** Arguments of PreSharedKeys. */
export interface PreSharedKeysArgs {
  /** PSK identities, one key each (QEMU clients default to `qemu`). */
  readonly usernames: pulumi.Input<pulumi.Input<string>[]>;
  /** Random bytes per key. @default 32 (as psktool) */
  readonly keyBytes?: pulumi.Input<number>;
}

/** QEMU TLS-PSK `keys.psk` content. Adding a user keeps the others' keys. */
export class PreSharedKeys extends pulumi.dynamic.Resource {
  /** `username:hexkey` lines, as psktool writes them. Secret. */
  declare readonly keysPsk: pulumi.Output<string>;

  constructor(name: string, args: PreSharedKeysArgs, opts?: pulumi.CustomResourceOptions) {
    // The SDK's per-property stack traces are this registration's largest cost (see sdkStacks.ts).
    const restoreStacks = suspendStackTraces();
    try {
      super(
        preSharedKeysProvider,
        name,
        { usernames: args.usernames, keyBytes: args.keyBytes, keysPsk: undefined },
        pulumi.mergeOptions(opts, { additionalSecretOutputs: ["keysPsk"] }),
        "virt-pki",
        "PreSharedKeys",
      );
    } finally {
      restoreStacks();
    }
  }
}
