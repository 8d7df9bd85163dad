/**
 * A small bounded memo for what a fleet's checks ask again and again about the same few texts (a CA file, an
 * issuer): at most `size` entries, the oldest dropped first. Keys are digests of the texts, never the texts (a
 * text may hold a key by mistake). Pure.
 */
import { createHash } from "node:crypto";

/** A bounded map from a key to a value made once. */
export class Memo<V> {
  private readonly map = new Map<string, V>();

  /** At most `size` entries. */
  constructor(private readonly size: number) {}

  /** The value of `key`, made by `make` the first time (a thrown error is not remembered). */
  get(key: string, make: () => V): V {
    if (this.map.has(key)) return this.map.get(key) as V;
    const value = make();
    if (this.map.size >= this.size) this.map.delete(this.map.keys().next().value as string);
    this.map.set(key, value);
    return value;
  }
}

/** The key of one or more texts: sha256 of them, NUL-separated. */
export function digestKey(...texts: string[]): string {
  return createHash("sha256").update(texts.join("\0")).digest("hex");
}
