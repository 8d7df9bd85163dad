/**
 * An invalid input to a `pki` function. `property` names the argument at fault (a dotted path such as
 * `subject.commonName` or `template:3`), so Pulumi `check` can report it against the right input.
 * Messages never contain key material.
 */
export class PkiError extends Error {
  /** The argument (or template line) the error is about. */
  readonly property: string;

  constructor(property: string, message: string) {
    super(`${property}: ${message}`);
    this.name = "PkiError";
    this.property = property;
  }
}
