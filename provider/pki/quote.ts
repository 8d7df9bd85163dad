/**
 * Quoting input text in error messages without ever repeating key material. Error messages reach
 * previews, logs and CI output in clear text, so a value is repeated only when it is short and does not
 * look like PEM or base64 data (a private key pasted into the wrong field, or a line of one); otherwise the
 * message says what kind of value it was and how long, never its text. Pure.
 */

/** The longest text repeated in an error message; longer text is cut, with its length given. */
export const MAX_QUOTED = 48;

/** A PEM armour line, or the label of a private key. */
const PEM_MARK = /-----(BEGIN|END)|PRIVATE KEY/;
/** A run of base64 characters long enough to be part of a key's encoding. */
const BASE64_RUN = /[A-Za-z0-9+/]{20,}/g;

/**
 * Whether a text looks like key material: PEM armour, or a run of at least 20 base64 characters mixing
 * two or more of upper case, lower case, digits and `+/` (the lines of a base64 body are such runs of up
 * to 64 characters, also once lower-cased; keywords, user names and most host names are lower-case words
 * or have separators). Long mixed-case words are withheld too: the cost is a less helpful message.
 */
export function looksLikeKeyMaterial(text: string): boolean {
  if (PEM_MARK.test(text)) return true;
  for (const run of text.match(BASE64_RUN) ?? []) {
    if ([/[A-Z]/, /[a-z]/, /[0-9]/, /[+/]/].filter((c) => c.test(run)).length >= 2) return true;
  }
  return false;
}

/** Whether a line of text is a PEM armour line or a line of a base64 body (nothing else on it). */
export function isPemOrBase64Line(line: string): boolean {
  const bare = line.trim();
  return /-----(BEGIN|END) /.test(bare) || (/^[A-Za-z0-9+/]+=*$/.test(bare) && looksLikeKeyMaterial(bare));
}

/**
 * A value for an error message: strings JSON-quoted (cut after {@link MAX_QUOTED} characters), numbers,
 * booleans and null as JSON, other values by their type only. Text that {@link looksLikeKeyMaterial} is
 * never repeated: the message gets `<N characters that look like PEM or base64 data, not repeated>`.
 */
export function quoteInput(value: unknown): string {
  if (typeof value === "string") {
    if (looksLikeKeyMaterial(value)) {
      return `<${value.length} characters that look like PEM or base64 data, not repeated>`;
    }
    if (value.length > MAX_QUOTED) {
      return `${JSON.stringify(value.slice(0, MAX_QUOTED))}... (${value.length} characters)`;
    }
    return JSON.stringify(value);
  }
  if (typeof value === "number" || typeof value === "boolean" || value === null) return JSON.stringify(value);
  if (value === undefined) return "undefined";
  return Array.isArray(value) ? "a list" : `a value of type ${typeof value}`;
}
