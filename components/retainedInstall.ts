/**
 * `RetainedInstall`: what stands in for a {@link HostCredentialInstall} whose target can no longer be
 * reached (a lost, stolen or scrapped workstation). It registers the same component and command, so the
 * same URNs, with every command input ignored and `retainOnDelete`: Pulumi keeps the command as it is in
 * the state (no step runs against the target), and removing it from the program later only drops it
 * from the state (the engine skips the delete of a retained resource).
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

/** Every input of a `@pulumi/command` Command: all of them keep their stored values. */
const COMMAND_INPUTS = [
  "create",
  "update",
  "delete",
  "stdin",
  "triggers",
  "connection",
  "interpreter",
  "dir",
  "environment",
  "logging",
  "addPreviousOutputInEnv",
];

/** Where the retained install was: the same target its HostCredentialInstall had. */
export interface RetainedInstallArgs {
  /** The SSH connection it used (ignored: the stored one stays). */
  connection?: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /** Or the local folder it used. */
  root?: string;
}

/**
 * A {@link HostCredentialInstall} frozen in the state: `name` must be the install's name, so that its
 * command `<name>-files` is the one already in the state. Meant for an install that exists; registered
 * first without one, it creates a command that runs nothing.
 */
export class RetainedInstall extends pulumi.ComponentResource {
  /** The retained command. */
  readonly command: command.remote.Command | command.local.Command;

  constructor(name: string, args: RetainedInstallArgs, opts?: pulumi.ComponentResourceOptions) {
    // The type of HostCredentialInstall: the URNs of the component and its command stay the same.
    super("virt-pki:index:HostCredentialInstall", name, {}, opts);
    const commandOpts = {
      parent: this,
      retainOnDelete: true,
      ignoreChanges: COMMAND_INPUTS,
      additionalSecretOutputs: ["stdin"],
    };
    this.command =
      args.connection !== undefined
        ? new command.remote.Command(`${name}-files`, { connection: args.connection }, commandOpts)
        : new command.local.Command(`${name}-files`, { interpreter: ["/bin/sh", "-c"] }, commandOpts);
    this.registerOutputs({});
  }
}
