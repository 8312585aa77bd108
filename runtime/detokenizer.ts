/**
 * Incremental, UTF-8-safe detokenisation: push token ids one at a time and get back only
 * complete text. Partial multi-byte sequences (e.g. an emoji split across byte-fallback tokens)
 * are held back until they complete. The text is the same as a streaming TextDecoder fed the
 * tokens' bytes one token at a time (invalid bytes become U+FFFD; a few invalid sequences, e.g.
 * E0 80, come out one token later than such a decoder would emit them).
 *
 * Leading space: SentencePiece-style tokenizers (addsDummyPrefix) encode text with a leading
 * "▁", so the space of the first piece after BOS is dropped, as llama2.c and the HF decoders do.
 * With `stripLeadingSpace` the first piece's leading space is dropped too (the pushed tokens
 * begin a text, e.g. an answer after "Assistant:"). BOS / EOS and other special tokens emit
 * nothing.
 *
 * Hot path (once per streamed token, e.g. in the gateway): when no partial sequence is held back,
 * a token's text comes from a per-tokenizer cache (decoded once, no allocation).
 */
import type { Tokenizer } from "./types.ts";

export interface DetokenizerOptions {
  /** Drop the leading space of the first piece pushed (the tokens begin a text). Default false. */
  stripLeadingSpace?: boolean;
}

/**
 * Length of the longest prefix of `b` that does not end inside an incomplete UTF-8 sequence (a
 * lead byte followed by fewer continuation bytes than it announces). What follows may complete it.
 */
function completeLength(b: Uint8Array): number {
  const n = b.length;
  let i = n - 1;
  while (i >= 0 && i >= n - 4 && (b[i] & 0xc0) === 0x80) i--;
  if (i < 0 || i < n - 4) return n;
  const lead = b[i];
  const need = lead >= 0xf0 && lead < 0xf8 ? 4 : lead >= 0xe0 && lead < 0xf0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return n - i < need ? i : n;
}

const UTF8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * Per tokenizer: each token's text when its bytes are complete UTF-8 on their own (decoded once,
 * on first use), null when they end inside a multi-byte sequence, undefined until looked up.
 */
const TOKEN_TEXT = new WeakMap<Tokenizer, (string | null | undefined)[]>();

export class Detokenizer {
  readonly tokenizer: Tokenizer;
  #dummyPrefix: boolean;
  #strip: boolean;
  #carry: Uint8Array | null = null;
  #cache: (string | null | undefined)[];
  #text = "";
  #count = 0;

  constructor(tokenizer: Tokenizer, options: DetokenizerOptions = {}) {
    this.tokenizer = tokenizer;
    this.#dummyPrefix = (tokenizer as { addsDummyPrefix?: boolean }).addsDummyPrefix === true;
    this.#strip = options.stripLeadingSpace === true;
    let cache = TOKEN_TEXT.get(tokenizer);
    if (!cache) TOKEN_TEXT.set(tokenizer, cache = []);
    this.#cache = cache;
  }

  /** Feed one token; returns the text it completes (possibly ""). */
  push(id: number): string {
    this.#count++;
    if (id === this.tokenizer.bosId) {
      this.#strip = this.#dummyPrefix;
      return "";
    }
    let s: string | null | undefined = null;
    if (this.#carry === null) {
      s = this.#cache[id];
      if (s === undefined) {
        const bytes = this.tokenizer.tokenBytes(id);
        s = this.#cache[id] = completeLength(bytes) === bytes.length ? UTF8.decode(bytes) : null;
      }
    }
    if (s === null) s = this.#slow(this.tokenizer.tokenBytes(id));
    if (this.#strip && s !== "") {
      this.#strip = false;
      if (s.startsWith(" ")) s = s.slice(1);
    }
    this.#text += s;
    return s;
  }

  /** Feed several tokens; returns the text they complete. */
  pushAll(ids: Iterable<number>): string {
    let s = "";
    for (const id of ids) s += this.push(id);
    return s;
  }

  /** End of stream: held-back bytes of an incomplete sequence come out as U+FFFD (or ""). */
  flush(): string {
    const c = this.#carry;
    this.#carry = null;
    const s = c === null ? "" : UTF8.decode(c);
    this.#text += s;
    return s;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.#text;
  }

  /** Tokens pushed so far. */
  get tokenCount(): number {
    return this.#count;
  }

  #slow(bytes: Uint8Array): string {
    let buf = bytes;
    if (this.#carry !== null) {
      buf = new Uint8Array(this.#carry.length + bytes.length);
      buf.set(this.#carry);
      buf.set(bytes, this.#carry.length);
    }
    const cut = completeLength(buf);
    this.#carry = cut < buf.length ? buf.slice(cut) : null;
    return cut > 0 ? UTF8.decode(buf.subarray(0, cut)) : "";
  }
}
