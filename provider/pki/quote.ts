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
/** The shortest run of base64 characters that counts as part of a key's encoding. */
const BASE64_RUN = 20;

/** 1 upper case, 2 lower case, 4 digit, 8 `+` or `/`, 0 otherwise (not base64). */
function base64Class(code: number): number {
  if (code >= 65 && code <= 90) return 1;
  if (code >= 97 && code <= 122) return 2;
  if (code >= 48 && code <= 57) return 4;
  return code === 43 || code === 47 ? 8 : 0;
}

/**
 * Whether a text looks like key material: PEM armour, or a run of at least 20 base64 characters mixing
 * two or more of upper case, lower case, digits and `+/` (the lines of a base64 body are such runs of up
 * to 64 characters, also once lower-cased; keywords, user names and most host names are lower-case words
 * or have separators). Long mixed-case words are withheld too: the cost is a less helpful message. One
 * linear pass without a regex over the runs (a 10 MB run overflowed V8's regex stack).
 */
export function looksLikeKeyMaterial(text: string): boolean {
  if (PEM_MARK.test(text)) return true;
  let run = 0;
  let classes = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? base64Class(text.charCodeAt(i)) : 0;
    if (c !== 0) {
      run++;
      classes |= c;
      continue;
    }
    if (run >= BASE64_RUN && (classes & (classes - 1)) !== 0) return true;
    run = 0;
    classes = 0;
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
