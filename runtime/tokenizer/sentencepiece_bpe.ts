/**
 * A fast, exact path for SentencePiece-style BPE tokenizer.json files (Llama 2, TinyLlama, stories260K:
 * normalizer = Prepend "▁" then Replace " " -> "▁", no pre-tokenizer, BPE model). @huggingface/tokenizers
 * runs BPE over the whole normalized text as one word there: a 1 MB prompt is one 1M-symbol merge
 * (about 100 KB/s) and its word cache never hits.
 *
 * A merge joins a left symbol and a right symbol; at a "▁" whose preceding character x ends no left
 * half of a merge whose right half starts with "▁", no merge can ever join across. So the normalized
 * text is cut before every such "▁" and the model runs on the list of words (each a cache hit after
 * its first time): the same merges, in the same order within each word, as one run over the whole
 * (ranks order merges; ties go left to right in both). Any other tokenizer.json shape returns null
 * and the library's own encode is used.
 */
import type { Tokenizer as HfTokenizerImpl } from "@huggingface/tokenizers";

type Json = Record<string, unknown>;

const SPACE = "\u2581";

function isLlamaNormalizer(n: unknown): boolean {
  const seq = n as Json | null;
  if (!seq || seq.type !== "Sequence" || !Array.isArray(seq.normalizers) || seq.normalizers.length !== 2) {
    return false;
  }
  const [prepend, replace] = seq.normalizers as Json[];
  const pattern = replace?.pattern as Json | undefined;
  return prepend?.type === "Prepend" && prepend.prepend === SPACE && replace?.type === "Replace" &&
    pattern?.String === " " && replace.content === SPACE;
}

/** The BPE model object of the library, as far as this path uses it. */
interface BpeModel {
  (words: string[]): string[];
  merges: [string, string][];
  tokens_to_ids: Map<string, number>;
  unk_token_id?: number;
}

export class SentencePieceBpe {
  readonly #model: BpeModel;
  readonly #unk: number;
  /** Last characters x of left halves of merges whose right half starts with "▁". */
  readonly #joinsAcross: Set<string>;

  private constructor(model: BpeModel, unk: number) {
    this.#model = model;
    this.#unk = unk;
    this.#joinsAcross = new Set();
    for (const [a, b] of model.merges) {
      if (b.startsWith(SPACE) && a.length > 0) this.#joinsAcross.add(Array.from(a).at(-1)!);
    }
  }

  /**
   * The fast path for this tokenizer, or null when its shape is not the one it is exact for. `added`:
   * whether every added token is special and matched on the raw text (so no other splitting applies).
   */
  static detect(
    json: Json,
    config: Json,
    tok: HfTokenizerImpl,
    addedAllSpecialRaw: boolean,
  ): SentencePieceBpe | null {
    const m = json.model as Json | undefined;
    const model = tok.model as unknown as BpeModel | null;
    if (!m || m.type !== "BPE" || m.dropout != null || m.end_of_word_suffix || m.continuing_subword_prefix) {
      return null;
    }
    if (m.continuing_subword_suffix || m.ignore_merges === true) return null;
    if (json.pre_tokenizer != null || !isLlamaNormalizer(json.normalizer) || !addedAllSpecialRaw) return null;
    if (config.remove_space === true || config.do_lowercase_and_remove_accent === true) return null;
    if (!model || !Array.isArray(model.merges) || !model.tokens_to_ids.has(SPACE)) return null;
    if (model.unk_token_id === undefined) return null;
    return new SentencePieceBpe(model, model.unk_token_id);
  }

  /** Ids of one text section (no added tokens in it); appended to `out`. */
  encode(text: string, out: number[]): void {
    if (text.length === 0) return;
    const norm = SPACE + text.replaceAll(" ", SPACE);
    const words: string[] = [];
    let start = 0;
    for (let k = norm.indexOf(SPACE, 1); k > 0; k = norm.indexOf(SPACE, k + 1)) {
      const c = norm.charCodeAt(k - 1);
      const pair = c >= 0xdc00 && c < 0xe000 && k >= 2 && (norm.charCodeAt(k - 2) & 0xfc00) === 0xd800;
      if (this.#joinsAcross.has(norm.slice(pair ? k - 2 : k - 1, k))) continue;
      words.push(norm.slice(start, k));
      start = k;
    }
    words.push(norm.slice(start));
    const ids = this.#model.tokens_to_ids;
    for (const t of this.#model(words)) out.push(ids.get(t) ?? this.#unk);
  }
}
