/**
 * The llama2.c tokenizer format (tokenizer.bin, tok512.bin...):
 *   int32 max_token_length, then per token: float32 score, int32 len, len bytes (UTF-8 piece).
 * Pieces use " " where SentencePiece uses "▁"; byte-fallback pieces are "<0xXX>".
 *
 * Encoding follows llama2.c's encode(): optional BOS, a dummy-prefix " " token when the
 * text is not empty, one token per UTF-8 code point (or one byte-fallback token per byte
 * when the code point is not in the vocabulary), then repeatedly merge the adjacent pair
 * whose concatenation is the best-scoring vocabulary entry (leftmost on ties) until no
 * pair merges (runtime/tokenizer/score_merge.ts: linear in practice, O(n log n) at worst).
 */
import type { TextSegment, Tokenizer, TokenizerSource } from "../types.ts";
import { bytesToBinary, concatBytes, parseBytePiece } from "./bytes.ts";
import { ScoreMerger } from "./score_merge.ts";
import { tokenizerSource } from "./source_args.ts";

/** The initial tokens of this many distinct non-ASCII code points are cached. */
const CODE_POINT_CACHE_ENTRIES = 1 << 14;

export interface Llama2cTokenizerOptions {
  bosId?: number;
  eosId?: number;
  /** Number of vocabulary entries to read (default: until end of file). */
  vocabSize?: number;
}

/** A SentencePiece-style vocabulary: pieces (UTF-8, " " for SentencePiece's "▁") and their scores. */
export interface ScoredVocab {
  pieces: Uint8Array[];
  scores: Float32Array;
  /** Longest piece in bytes (the llama2.c header field). */
  maxTokenLength: number;
  /** Ids that decode to nothing (control tokens: BOS, EOS, unknown). Default: bos, eos and an "<unk>" 0. */
  control?: ReadonlySet<number>;
  /** SentencePiece add_dummy_prefix (default true). */
  addDummyPrefix?: boolean;
  chatTemplate?: string;
  /** The unknown token's id (default 0). */
  unkId?: number;
}

/** Parse a llama2.c tokenizer file. */
export function parseLlama2cVocab(data: Uint8Array, opts: Llama2cTokenizerOptions = {}): ScoredVocab {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.byteLength < 4) throw new Error("llama2.c tokenizer: file too short");
  const maxTokenLength = dv.getInt32(0, true);
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
  return { pieces, scores: Float32Array.from(scores), maxTokenLength };
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly maxTokenLength: number;
  readonly chatTemplate?: string = undefined;
  readonly specialTokens: Record<string, string>;
  /** The tokenizer prepends a dummy " " to the text (SentencePiece add_dummy_prefix). */
  readonly addsDummyPrefix: boolean;
  readonly #pieces: Uint8Array[];
  readonly #scores: Float32Array;
  /** binary string (one char per byte) of each piece -> id (first occurrence wins, like str_lookup). */
  readonly #lookup = new Map<string, number>();
  readonly #byteIds = new Int32Array(256).fill(-1);
  readonly #bytes: Uint8Array[];
  /** Initial token of each ASCII character (its piece, else its byte-fallback token, else unk). */
  readonly #asciiIds = new Int32Array(128);
  readonly #cpCache = new Map<string, readonly number[]>();
  readonly #chunks: ScoreMerger;
  /** Set by load(): the file this tokenizer was read from. */
  source?: TokenizerSource = undefined;

  /** From a llama2.c tokenizer file's bytes, or a vocabulary read elsewhere (a GGUF file's). */
  constructor(data: Uint8Array | ScoredVocab, opts: Llama2cTokenizerOptions = {}) {
    const vocab = data instanceof Uint8Array ? parseLlama2cVocab(data, opts) : data;
    const pieces = vocab.pieces;
    this.maxTokenLength = vocab.maxTokenLength;
    this.unkId = vocab.unkId ?? 0;
    this.addsDummyPrefix = vocab.addDummyPrefix ?? true;
    if (vocab.chatTemplate !== undefined) this.chatTemplate = vocab.chatTemplate;
    this.vocabSize = pieces.length;
    this.#pieces = pieces;
    this.#scores = vocab.scores;
    this.bosId = opts.bosId ?? 1;
    this.eosId = opts.eosId ?? 2;
    this.#bytes = new Array(pieces.length);
    const dec = new TextDecoder();
    const strs = pieces.map(bytesToBinary);
    for (let i = 0; i < pieces.length; i++) {
      const key = strs[i];
      if (!this.#lookup.has(key)) this.#lookup.set(key, i);
      const b = parseBytePiece(dec.decode(pieces[i]));
      if (b !== null) {
        if (this.#byteIds[b] < 0) this.#byteIds[b] = i;
        this.#bytes[i] = Uint8Array.of(b);
      } else if (
        vocab.control
          ? vocab.control.has(i)
          : i === this.bosId || i === this.eosId || (i === this.unkId && key === "<unk>")
      ) {
        this.#bytes[i] = new Uint8Array(0);
      } else {
        this.#bytes[i] = pieces[i];
      }
    }
    const pieceText = (id: number, fallback: string) =>
      id >= 0 && id < pieces.length && vocab.control ? dec.decode(pieces[id]).trim() : fallback;
    this.specialTokens = {
      bos_token: pieceText(this.bosId, "<s>"),
      eos_token: pieceText(this.eosId, "</s>"),
      unk_token: pieceText(this.unkId, "<unk>"),
    };
    for (let c = 0; c < 128; c++) {
      const id = this.#lookup.get(String.fromCharCode(c));
      this.#asciiIds[c] = id ?? (this.#byteIds[c] >= 0 ? this.#byteIds[c] : this.unkId);
    }
    this.#chunks = new ScoreMerger(strs, this.#lookup, this.#scores);
  }

  /** Read a llama2.c tokenizer file. */
  static async load(path: string, opts: Llama2cTokenizerOptions = {}): Promise<Llama2cTokenizer> {
    const t = new Llama2cTokenizer(await Deno.readFile(path), opts);
    t.source = tokenizerSource({ kind: "llama2c", path, options: opts });
    return t;
  }

  /** The piece of a token as stored in the file (e.g. " the", "<0x0A>"). */
  piece(id: number): string {
    this.#checkId(id);
    return new TextDecoder().decode(this.#pieces[id]);
  }

  /** The raw bytes of a piece as stored (" " for spaces). */
  pieceBytes(id: number): Uint8Array {
    this.#checkId(id);
    return this.#pieces[id];
  }

  score(id: number): number {
    this.#checkId(id);
    return this.#scores[id];
  }

  /** What kind of token `id` is (SentencePiece's token types, as GGUF's tokenizer.ggml.token_type names them). */
  tokenType(id: number): "normal" | "unknown" | "control" | "byte" {
    this.#checkId(id);
    if (parseBytePiece(new TextDecoder().decode(this.#pieces[id])) !== null) return "byte";
    if (id === this.unkId && this.#bytes[id].length === 0) return "unknown";
    return this.#bytes[id].length === 0 ? "control" : "normal";
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
    if (text.length > 0) this.#chunks.encode(this.#initialTokens(text), out);
    if (options.eos) out.push(this.eosId);
    return out;
  }

  /** This tokenizer parses no special-token text (see Tokenizer.encodeSegments): the pieces are one text. */
  encodeSegments(segments: readonly TextSegment[]): number[] {
    return this.encode(segments.map((s) => s.text).join(""));
  }

  /** Dummy prefix, then one token per code point (byte-fallback tokens when it is not in the vocabulary). */
  #initialTokens(text: string): number[] {
    const ids: number[] = [];
    const space = this.#lookup.get(" ");
    if (space !== undefined && this.addsDummyPrefix) ids.push(space);
    const ascii = this.#asciiIds;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x80) {
        ids.push(ascii[c]);
        continue;
      }
      const pair = c >= 0xd800 && c < 0xdc00 && i + 1 < text.length &&
        (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
      const cp = pair ? text.slice(i, i + 2) : text[i];
      if (pair) i++;
      for (const id of this.#codePointIds(cp)) ids.push(id);
    }
    return ids;
  }

  /** Initial tokens of one non-ASCII code point (a lone surrogate encodes as U+FFFD, as TextEncoder does). */
  #codePointIds(cp: string): readonly number[] {
    let ids = this.#cpCache.get(cp);
    if (ids) return ids;
    const bytes = new TextEncoder().encode(cp);
    const id = this.#lookup.get(bytesToBinary(bytes));
    if (id !== undefined) ids = [id];
    else ids = Array.from(bytes, (b) => this.#byteIds[b] >= 0 ? this.#byteIds[b] : this.unkId);
    if (this.#cpCache.size >= CODE_POINT_CACHE_ENTRIES) this.#cpCache.clear();
    this.#cpCache.set(cp, ids);
    return ids;
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
