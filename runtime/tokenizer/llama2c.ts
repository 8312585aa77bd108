/**
 * The llama2.c tokenizer format (tokenizer.bin, tok512.bin...):
 *   int32 max_token_length, then per token: float32 score, int32 len, len bytes (UTF-8 piece).
 * Pieces use " " where SentencePiece uses "▁"; byte-fallback pieces are "<0xXX>".
 *
 * Encoding follows llama2.c's encode(): optional BOS, a dummy-prefix " " token when the
 * text is not empty, one token per UTF-8 code point (or one byte-fallback token per byte
 * when the code point is not in the vocabulary), then repeatedly merge the adjacent pair
 * whose concatenation is the best-scoring vocabulary entry (leftmost on ties) until no
 * pair merges. Merging uses a heap, so long prompts stay O(n log n).
 */
import type { Tokenizer } from "../types.ts";
import { bytesToBinary, concatBytes, parseBytePiece } from "./bytes.ts";

export interface Llama2cTokenizerOptions {
  bosId?: number;
  eosId?: number;
  /** Number of vocabulary entries to read (default: until end of file). */
  vocabSize?: number;
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId = 0;
  readonly maxTokenLength: number;
  readonly chatTemplate?: string = undefined;
  readonly specialTokens: Record<string, string>;
  /** The tokenizer prepends a dummy " " to the text (SentencePiece add_dummy_prefix). */
  readonly addsDummyPrefix = true;
  readonly #pieces: Uint8Array[];
  readonly #scores: Float32Array;
  /** binary string (one char per byte) of each piece -> id (first occurrence wins, like str_lookup). */
  readonly #lookup = new Map<string, number>();
  readonly #byteIds = new Int32Array(256).fill(-1);
  readonly #bytes: Uint8Array[];
  readonly #strs: string[];

  constructor(data: Uint8Array, opts: Llama2cTokenizerOptions = {}) {
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data.byteLength < 4) throw new Error("llama2.c tokenizer: file too short");
    this.maxTokenLength = dv.getInt32(0, true);
    const pieces: Uint8Array[] = [];
    const scores: number[] = [];
    let off = 4;
    while (off < data.byteLength && (opts.vocabSize === undefined || pieces.length < opts.vocabSize)) {
      if (off + 8 > data.byteLength) throw new Error(`llama2.c tokenizer: truncated entry ${pieces.length}`);
      const score = dv.getFloat32(off, true);
      const len = dv.getInt32(off + 4, true);
      off += 8;
      if (len < 0 || off + len > data.byteLength) {
        throw new Error(`llama2.c tokenizer: entry ${pieces.length} has bad length ${len}`);
      }
      pieces.push(data.slice(off, off + len));
      scores.push(score);
      off += len;
    }
    if (opts.vocabSize !== undefined && pieces.length < opts.vocabSize) {
      throw new Error(`llama2.c tokenizer: ${pieces.length} entries, model vocabulary is ${opts.vocabSize}`);
    }
    this.vocabSize = pieces.length;
    this.#pieces = pieces;
    this.#scores = Float32Array.from(scores);
    this.bosId = opts.bosId ?? 1;
    this.eosId = opts.eosId ?? 2;
    this.#bytes = new Array(pieces.length);
    const dec = new TextDecoder();
    this.#strs = pieces.map(bytesToBinary);
    for (let i = 0; i < pieces.length; i++) {
      const key = this.#strs[i];
      if (!this.#lookup.has(key)) this.#lookup.set(key, i);
      const b = parseBytePiece(dec.decode(pieces[i]));
      if (b !== null) {
        if (this.#byteIds[b] < 0) this.#byteIds[b] = i;
        this.#bytes[i] = Uint8Array.of(b);
      } else if (i === this.bosId || i === this.eosId || (i === this.unkId && key === "<unk>")) {
        this.#bytes[i] = new Uint8Array(0);
      } else {
        this.#bytes[i] = pieces[i];
      }
    }
    this.specialTokens = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" };
  }

  /** Read a llama2.c tokenizer file. */
  static async load(path: string, opts: Llama2cTokenizerOptions = {}): Promise<Llama2cTokenizer> {
    return new Llama2cTokenizer(await Deno.readFile(path), opts);
  }

  /** The piece of a token as stored in the file (e.g. " the", "<0x0A>"). */
  piece(id: number): string {
    this.#checkId(id);
    return new TextDecoder().decode(this.#pieces[id]);
  }

  score(id: number): number {
    this.#checkId(id);
    return this.#scores[id];
  }

  /** Token id of an exact piece, or undefined. */
  pieceToId(piece: string): number | undefined {
    return this.#lookup.get(bytesToBinary(new TextEncoder().encode(piece)));
  }

  #checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} out of range (vocab ${this.vocabSize})`);
    }
  }

  encode(text: string, options: { bos?: boolean; eos?: boolean } = {}): number[] {
    const out: number[] = [];
    if (options.bos) out.push(this.bosId);
    if (text.length > 0) {
      // Initial tokens: dummy prefix, then one per code point (byte fallback when unknown).
      const ids: number[] = [];
      const space = this.#lookup.get(" ");
      if (space !== undefined) ids.push(space);
      const enc = new TextEncoder();
      for (const cp of text) {
        const bytes = enc.encode(cp);
        const id = this.#lookup.get(bytesToBinary(bytes));
        if (id !== undefined) {
          ids.push(id);
        } else {
          for (const b of bytes) {
            const bid = this.#byteIds[b];
            ids.push(bid >= 0 ? bid : this.unkId);
          }
        }
      }
      for (const id of this.#merge(ids)) out.push(id);
    }
    if (options.eos) out.push(this.eosId);
    return out;
  }

  /** Greedy best-score pair merging (same result as llama2.c's O(n^2) loop). */
  #merge(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    const tok = Int32Array.from(ids);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const strs = this.#strs;
    const heap = new PairHeap();
    const consider = (l: number) => {
      const r = next[l];
      if (r < 0) return;
      const id = this.#lookup.get(strs[tok[l]] + strs[tok[r]]);
      if (id === undefined) return;
      const score = this.#scores[id];
      if (!(score > -1e10)) return;
      heap.push({ score, left: l, right: r, lv: version[l], rv: version[r], id });
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    for (;;) {
      const c = heap.pop();
      if (!c) break;
      const l = c.left;
      const r = next[l];
      if (!alive[l] || r !== c.right || version[l] !== c.lv || version[r] !== c.rv) continue;
      tok[l] = c.id;
      version[l]++;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      if (prev[l] >= 0) consider(prev[l]);
      consider(l);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]);
    return out;
  }

  tokenBytes(id: number): Uint8Array {
    this.#checkId(id);
    return this.#bytes[id];
  }

  decode(ids: ArrayLike<number>): string {
    const chunks: Uint8Array[] = [];
    let atStart = true;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === this.bosId) {
        atStart = true;
        continue;
      }
      if (id === this.eosId) continue;
      let b = this.tokenBytes(id);
      if (b.length === 0) continue;
      if (atStart && b[0] === 0x20) b = b.subarray(1);
      atStart = false;
      chunks.push(b);
    }
    return new TextDecoder().decode(concatBytes(chunks));
  }
}

interface Candidate {
  score: number;
  left: number;
  right: number;
  lv: number;
  rv: number;
  id: number;
}

/** Max-heap by score, then min by left position (the leftmost pair wins ties, as in llama2.c). */
class PairHeap {
  #a: Candidate[] = [];
  #before(x: Candidate, y: Candidate): boolean {
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }
  push(c: Candidate): void {
    const a = this.#a;
    a.push(c);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#before(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): Candidate | undefined {
    const a = this.#a;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.#before(a[l], a[m])) m = l;
        if (r < a.length && this.#before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}
