/**
 * Hugging Face tokenizer.json (+ tokenizer_config.json) via @huggingface/tokenizers.
 * encode() never adds special tokens by itself: pass { bos: true } for BOS (the
 * Tokenizer seam makes BOS/EOS explicit so both tokenizer kinds behave the same).
 *
 * encode() turns added-token text ("<s>", "</s>", ...) into its ids, as the library does;
 * encodeSegments() does so only inside markup segments, so message content can never produce
 * a control token. SentencePiece-style BPE files take an exact fast path
 * (sentencepiece_bpe.ts); other shapes run the library's encode.
 */
import { Tokenizer as HfTokenizerImpl } from "@huggingface/tokenizers";
import type { TextSegment, Tokenizer, TokenizerSource } from "../types.ts";
import { type AddedTokenInfo, AddedTokenSplitter } from "./added_tokens.ts";
import { byteLevelDecoder, parseBytePiece } from "./bytes.ts";
import { SentencePieceBpe } from "./sentencepiece_bpe.ts";
import { tokenizerSource } from "./source_args.ts";

type Json = Record<string, unknown>;

function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") {
    return (v as Json).content as string;
  }
  return undefined;
}

function containsType(node: unknown, type: string): boolean {
  if (!node || typeof node !== "object") return false;
  const n = node as Json;
  if (n.type === type) return true;
  for (const key of ["decoders", "normalizers", "pretokenizers"]) {
    const list = n[key];
    if (Array.isArray(list) && list.some((x) => containsType(x, type))) return true;
  }
  return false;
}

function prependsSpace(json: Json): boolean {
  const norm = json.normalizer as Json | null;
  const hasPrepend = (n: unknown): boolean => {
    if (!n || typeof n !== "object") return false;
    const o = n as Json;
    if (o.type === "Prepend" && o.prepend === "▁") return true;
    return Array.isArray(o.normalizers) && o.normalizers.some(hasPrepend);
  };
  if (hasPrepend(norm)) return true;
  const hasMetaspacePrefix = (n: unknown): boolean => {
    if (!n || typeof n !== "object") return false;
    const o = n as Json;
    if (o.type === "Metaspace") {
      if (typeof o.prepend_scheme === "string") return o.prepend_scheme !== "never";
      return o.add_prefix_space !== false;
    }
    return Array.isArray(o.pretokenizers) && o.pretokenizers.some(hasMetaspacePrefix);
  };
  return hasMetaspacePrefix(json.pre_tokenizer);
}

export interface HfTokenizerOptions {
  /** Fallback BOS / EOS ids (e.g. from config.json) when tokenizer_config.json names none. */
  bosId?: number;
  eosId?: number;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly chatTemplate?: string;
  readonly specialTokens: Record<string, string>;
  /** Whether tokenizer_config.json asks for BOS at the start of a prompt (add_bos_token). */
  readonly addBosToken: boolean;
  /** The tokenizer prepends "▁" to the text (SentencePiece-style dummy prefix). */
  readonly addsDummyPrefix: boolean;
  readonly config: Json;
  readonly #tok: HfTokenizerImpl;
  readonly #byteLevel: Map<string, number> | null;
  readonly #special: Set<number>;
  readonly #bytes: (Uint8Array | undefined)[];
  readonly #json: Json;
  /** Added tokens as the library matches them on raw text (all but normalized non-special ones). */
  readonly #added: AddedTokenSplitter;
  /** Special added tokens only: what must not be matched in content. */
  readonly #specialText: AddedTokenSplitter;
  readonly #fast: SentencePieceBpe | null;
  /** Which encoder runs: the exact fast path for SentencePiece-style BPE, or the library's own. */
  readonly encoder: "sentencepiece-bpe" | "library";
  /** The library without its special added tokens (built on first need): encodes content that holds their text. */
  #plain: HfTokenizerImpl | null = null;
  /** Set by load(): the file this tokenizer was read from. */
  source?: TokenizerSource = undefined;

  constructor(tokenizerJson: Json, tokenizerConfig: Json = {}, opts: HfTokenizerOptions = {}) {
    this.config = tokenizerConfig;
    this.#tok = new HfTokenizerImpl(tokenizerJson, tokenizerConfig);
    let maxId = -1;
    for (const id of this.#tok.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
    this.#special = new Set();
    for (const [id, t] of this.#tok.get_added_tokens_decoder()) if (t.special) this.#special.add(id);
    this.specialTokens = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
      const v = tokenContent(tokenizerConfig[key]);
      if (v !== undefined) this.specialTokens[key] = v;
    }
    const idOf = (key: string) => {
      const s = this.specialTokens[key];
      return s === undefined ? undefined : this.#tok.token_to_id(s);
    };
    this.bosId = idOf("bos_token") ?? opts.bosId ?? -1;
    this.eosId = idOf("eos_token") ?? opts.eosId ?? -1;
    const tpl = tokenizerConfig.chat_template;
    if (typeof tpl === "string") this.chatTemplate = tpl;
    else if (Array.isArray(tpl)) {
      const named = tpl as { name?: string; template?: string }[];
      this.chatTemplate = (named.find((t) => t.name === "default") ?? named[0])?.template;
    }
    this.addBosToken = tokenizerConfig.add_bos_token === true;
    this.#byteLevel = containsType(tokenizerJson.decoder, "ByteLevel") ? byteLevelDecoder() : null;
    this.addsDummyPrefix = prependsSpace(tokenizerJson);
    this.#bytes = new Array(this.vocabSize);
    this.#json = tokenizerJson;
    const added: AddedTokenInfo[] = [];
    let allSpecialRaw = true;
    for (const t of this.#tok.get_added_tokens_decoder().values()) {
      allSpecialRaw &&= t.special && !t.normalized;
      if (!t.normalized || t.special) added.push(t);
    }
    this.#added = new AddedTokenSplitter(added);
    this.#specialText = new AddedTokenSplitter(added.filter((t) => t.special));
    this.#fast = SentencePieceBpe.detect(tokenizerJson, tokenizerConfig, this.#tok, allSpecialRaw);
    this.encoder = this.#fast ? "sentencepiece-bpe" : "library";
  }

  /** Read `<dir>/tokenizer.json` (or a tokenizer.json path) and the tokenizer_config.json beside it. */
  static async load(path: string, opts: HfTokenizerOptions = {}): Promise<HfTokenizer> {
    let dir = path;
    let file = `${path}/tokenizer.json`;
    if (path.endsWith(".json")) {
      file = path;
      dir = path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".";
    }
    const json = JSON.parse(await Deno.readTextFile(file)) as Json;
    let config: Json = {};
    try {
      config = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)) as Json;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const t = new HfTokenizer(json, config, opts);
    t.source = tokenizerSource({ kind: "hf", path, options: opts });
    return t;
  }

  encode(text: string, options: { bos?: boolean; eos?: boolean } = {}): number[] {
    let ids: number[] = [];
    if (this.#fast) ids = this.#encodeSections([{ text, special: true }]);
    else if (text.length > 0) ids = this.#tok.encode(text, { add_special_tokens: false }).ids;
    if (options.bos) {
      if (this.bosId < 0) throw new Error("tokenizer has no BOS token");
      ids.unshift(this.bosId);
    }
    if (options.eos) {
      if (this.eosId < 0) throw new Error("tokenizer has no EOS token");
      ids.push(this.eosId);
    }
    return ids;
  }

  encodeSegments(segments: readonly TextSegment[]): number[] {
    if (this.#fast || !this.#added.specialsOnlyInMarkup(segments)) return this.#encodeSections(segments);
    return this.encode(segments.map((s) => s.text).join(""));
  }

  /** Added tokens from markup segments only; the text between them encoded with no special-token parsing. */
  #encodeSections(segments: readonly TextSegment[]): number[] {
    const ids: number[] = [];
    for (const s of this.#added.sections(segments)) {
      if (s.token) {
        // A non-special added token in markup is text (the section encoders find it again).
        if (s.token.special) ids.push(s.token.id);
        else this.#encodeText(s.token.content, ids);
      } else this.#encodeText(s.text, ids);
    }
    return ids;
  }

  /** Ids of text in which special-token text is plain text. */
  #encodeText(text: string, out: number[]): void {
    if (text.length === 0) return;
    if (this.#fast) return this.#fast.encode(text, out);
    const lib = this.#specialText.occursIn(text) ? this.#plainLibrary() : this.#tok;
    for (const id of lib.encode(text, { add_special_tokens: false }).ids) out.push(id);
  }

  #plainLibrary(): HfTokenizerImpl {
    if (!this.#plain) {
      const addedTokens = (this.#json.added_tokens as Json[] | undefined) ?? [];
      const json = { ...this.#json, added_tokens: addedTokens.filter((t) => t.special !== true) };
      this.#plain = new HfTokenizerImpl(json, this.config);
    }
    return this.#plain;
  }

  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return "";
    return this.#tok.decode(Array.from(ids), { skip_special_tokens: true });
  }

  /** The vocabulary string of a token (e.g. "▁the", "<0x0A>", "Ġthe"). */
  piece(id: number): string | undefined {
    return this.#tok.id_to_token(id);
  }

  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} out of range (vocab ${this.vocabSize})`);
    }
    let b = this.#bytes[id];
    if (b) return b;
    const piece = this.#tok.id_to_token(id);
    if (piece === undefined || this.#special.has(id)) {
      b = new Uint8Array(0);
    } else if (this.#byteLevel) {
      const out: number[] = [];
      let ok = true;
      for (const ch of piece) {
        const v = this.#byteLevel.get(ch);
        if (v === undefined) {
          ok = false;
          break;
        }
        out.push(v);
      }
      // Added (non-special) tokens are stored as plain text, not byte-level characters.
      b = ok ? Uint8Array.from(out) : new TextEncoder().encode(piece);
    } else {
      const byte = parseBytePiece(piece);
      b = byte !== null ? Uint8Array.of(byte) : new TextEncoder().encode(piece.replaceAll("▁", " "));
    }
    this.#bytes[id] = b;
    return b;
  }
}
