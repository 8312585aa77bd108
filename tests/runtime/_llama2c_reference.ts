/**
 * A reference llama2.c encoder for tests: the O(n^2) loop of llama2.c's encode() written out plainly
 * (dummy-prefix " ", one token per UTF-8 code point or one byte-fallback token per byte, then merge the
 * best-scoring adjacent pair, leftmost on ties, until none merges). Slow on purpose: it is the
 * definition the fast encoder in runtime/tokenizer/llama2c.ts must reproduce id for id.
 */

export class ReferenceLlama2cEncoder {
  readonly #ids = new Map<string, number>();
  readonly #scores: number[] = [];
  /** Piece of each id, one char per byte. */
  readonly #keys: string[] = [];
  readonly #byteIds = new Map<number, number>();

  constructor(data: Uint8Array) {
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const latin1 = new TextDecoder("latin1");
    for (let off = 4, id = 0; off < data.byteLength; id++) {
      const score = dv.getFloat32(off, true);
      const len = dv.getInt32(off + 4, true);
      const piece = data.subarray(off + 8, off + 8 + len);
      off += 8 + len;
      // One char per byte (latin1 maps 0x80..0x9F to cp1252 in TextDecoder, so build it by hand).
      let key = "";
      for (const b of piece) key += String.fromCharCode(b);
      if (!this.#ids.has(key)) this.#ids.set(key, id);
      this.#scores.push(score);
      this.#keys.push(key);
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(latin1.decode(piece));
      if (m && !this.#byteIds.has(parseInt(m[1], 16))) this.#byteIds.set(parseInt(m[1], 16), id);
    }
  }

  static async load(path: string): Promise<ReferenceLlama2cEncoder> {
    return new ReferenceLlama2cEncoder(await Deno.readFile(path));
  }

  encode(text: string): number[] {
    if (text.length === 0) return [];
    const toks: string[] = [];
    const ids: number[] = [];
    const push = (key: string, id: number) => {
      toks.push(key);
      ids.push(id);
    };
    if (this.#ids.has(" ")) push(" ", this.#ids.get(" ")!);
    const enc = new TextEncoder();
    for (const cp of text) {
      let key = "";
      for (const b of enc.encode(cp)) key += String.fromCharCode(b);
      const id = this.#ids.get(key);
      if (id !== undefined) push(key, id);
      else {
        for (let i = 0; i < key.length; i++) {
          const bid = this.#byteIds.get(key.charCodeAt(i)) ?? 0;
          // A byte token merges by its piece text, as in llama2.c.
          push(this.#keys[bid], bid);
        }
      }
    }
    for (;;) {
      let best = -1e10, at = -1, bestId = -1;
      for (let i = 0; i + 1 < toks.length; i++) {
        const id = this.#ids.get(toks[i] + toks[i + 1]);
        if (id !== undefined && this.#scores[id] > best) {
          best = this.#scores[id];
          at = i;
          bestId = id;
        }
      }
      if (at < 0) break;
      toks.splice(at, 2, toks[at] + toks[at + 1]);
      ids.splice(at, 2, bestId);
    }
    return ids;
  }
}
