/** The HostProbe resource: the drift of one host's installed files, seen at preview (see handlers/hostProbe.ts). */
import * as pulumi from "@pulumi/pulumi";
import type { ExpectedFile, ProbeConnection } from "./drift";
import { hostProbeProvider } from "./providers";
import { suspendStackTraces } from "./sdkStacks";

/** Arguments of HostProbe. */
export interface HostProbeArgs {
  /** What to call the host in the resource's id. */
  readonly label: string;
  /** How to reach the host (as the install's command reaches it; the private key stays a secret). */
  readonly connection: pulumi.Input<ProbeConnection>;
  /** The files the install placed, with their plain sha256 (made secret here). */
  readonly files: pulumi.Input<ExpectedFile[]>;
}

/**
 * Reads a host's installed files over SSH at every preview and up, and shows how they differ from what
 * the install placed as its input `drift`; its `token` changes with each drift found, and the install
 * re-runs when it does. Made by `HostCredentialInstall` (`checkDrift`).
 */
export class HostProbe extends pulumi.dynamic.Resource {
  /** Why the host differs from what was installed (`<path>: <what>`, or `host unreachable: <why>`); empty when it does not. */
  declare readonly drift: pulumi.Output<string[]>;
  /** Changes with each drift found. */
  declare readonly token: pulumi.Output<string>;

  constructor(name: string, args: HostProbeArgs, opts?: pulumi.CustomResourceOptions) {
    const restoreStacks = suspendStackTraces();
    try {
      super(
        hostProbeProvider,
        name,
        {
          label: args.label,
          connection: pulumi.secret(args.connection),
          files: pulumi.secret(args.files),
          drift: undefined,
          token: undefined,
        },
        opts,
        "virt-pki",
        "HostProbe",
      );
    } finally {
      restoreStacks();
    }
  }
}
