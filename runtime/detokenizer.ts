/**
 * Incremental, UTF-8-safe detokenisation: push token ids one at a time and get back
 * only complete text. Partial multi-byte sequences (e.g. an emoji split across
 * byte-fallback tokens) are held back until they complete.
 *
 * SentencePiece-style tokenizers (addsDummyPrefix) encode text with a leading "▁"; the
 * space of the first piece after BOS (or of the very first piece when
 * `stripLeadingSpace` is set, i.e. when the pushed tokens begin the text) is dropped,
 * as llama2.c and the HF decoders do. BOS / EOS and other special tokens emit nothing.
 */
import type { Tokenizer } from "./types.ts";

export interface DetokenizerOptions {
  /** The first token pushed begins the text (drop its dummy-prefix space). Default false. */
  stripLeadingSpace?: boolean;
}

export class Detokenizer {
  readonly tokenizer: Tokenizer;
  #decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  #strip: boolean;
  #dummyPrefix: boolean;
  #text = "";
  #count = 0;

  constructor(tokenizer: Tokenizer, options: DetokenizerOptions = {}) {
    this.tokenizer = tokenizer;
    this.#dummyPrefix = (tokenizer as { addsDummyPrefix?: boolean }).addsDummyPrefix === true;
    this.#strip = this.#dummyPrefix && options.stripLeadingSpace === true;
  }

  /** Feed one token; returns the text it completes (possibly ""). */
  push(id: number): string {
    this.#count++;
    if (id === this.tokenizer.bosId) {
      this.#strip = this.#dummyPrefix;
      return "";
    }
    if (id === this.tokenizer.eosId) return "";
    let bytes = this.tokenizer.tokenBytes(id);
    if (bytes.length === 0) return "";
    if (this.#strip) {
      this.#strip = false;
      if (bytes[0] === 0x20) bytes = bytes.subarray(1);
      if (bytes.length === 0) return "";
    }
    const s = this.#decoder.decode(bytes, { stream: true });
    this.#text += s;
    return s;
  }

  /** Feed several tokens; returns the text they complete. */
  pushAll(ids: Iterable<number>): string {
    let s = "";
    for (const id of ids) s += this.push(id);
    return s;
  }

  /** End of stream: returns held-back bytes of an incomplete sequence as U+FFFD (or ""). */
  flush(): string {
    const s = this.#decoder.decode();
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
}
