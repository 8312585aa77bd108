/**
 * Log-probabilities of generated tokens, as OpenAI's APIs return them (`logprobs` / `top_logprobs` on chat
 * completions, `include: ["message.output_text.logprobs"]` + `top_logprobs` on the Responses API): for each
 * generated token, its log-probability under the model's next-token distribution and the `top` most likely
 * tokens with theirs.
 *
 * The distribution is the model's own: log-softmax of the raw logits the engine returns for the step that
 * sampled the token (StepItem.logits), before temperature, top_p or top_k, so the values are the same at every
 * temperature (OpenAI's reference describes them as the model's log probability of the token; vLLM's default
 * "raw" mode is the same; decisions.md). The value is exact for every token (OpenAI reports -9999.0 for a token
 * outside the top 20; we do only where the value is not a finite number).
 *
 * Cost, only for requests that ask: one pass over the vocabulary per token (max, sum of exp) plus a top-`top`
 * selection (top <= 20, an insertion into a short sorted list), on the vocab floats the engine copies for the
 * item anyway.
 */
import type { Tokenizer } from "../../runtime/types.ts";

/** OpenAI's bound on `top_logprobs`. */
export const MAX_TOP_LOGPROBS = 20;
/** What OpenAI reports for a token whose log probability it does not give. */
const VERY_UNLIKELY = -9999.0;

export interface TopLogprob {
  token: string;
  logprob: number;
  /** The token's UTF-8 bytes (a token may hold part of a character). */
  bytes: number[];
}

export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

const UTF8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

function finite(x: number): number {
  return Number.isFinite(x) ? x : VERY_UNLIKELY;
}

/** Computes the entries of one response; `top` alternatives per token (0..MAX_TOP_LOGPROBS). */
export class LogprobReader {
  readonly #top: number;
  readonly #ids: Int32Array;
  readonly #vals: Float64Array;
  readonly #names = new Map<number, { token: string; bytes: number[] }>();

  constructor(readonly tokenizer: Tokenizer, top: number) {
    this.#top = Math.max(0, Math.min(MAX_TOP_LOGPROBS, Math.floor(top)));
    this.#ids = new Int32Array(this.#top);
    this.#vals = new Float64Array(this.#top);
  }

  #name(id: number): { token: string; bytes: number[] } {
    let n = this.#names.get(id);
    if (!n) {
      const b = this.tokenizer.tokenBytes(id);
      n = { token: UTF8.decode(b), bytes: Array.from(b) };
      this.#names.set(id, n);
    }
    return n;
  }

  /** The entry of `token`, sampled from the distribution whose raw logits (one per vocab id) are given. */
  read(token: number, logits: ArrayLike<number>): TokenLogprob {
    const n = logits.length;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(logits[i] - max);
    const logZ = max + Math.log(sum);
    const k = this.#top;
    const ids = this.#ids, vals = this.#vals;
    let have = 0;
    // The k largest logits, kept sorted in descending order (ties: the lower id first).
    for (let i = 0; i < n && k > 0; i++) {
      const v = logits[i];
      if (have === k && v <= vals[k - 1]) continue;
      let j = have < k ? have++ : k - 1;
      while (j > 0 && vals[j - 1] < v) {
        vals[j] = vals[j - 1];
        ids[j] = ids[j - 1];
        j--;
      }
      vals[j] = v;
      ids[j] = i;
    }
    const top: TopLogprob[] = new Array(have);
    for (let j = 0; j < have; j++) top[j] = { ...this.#name(ids[j]), logprob: finite(vals[j] - logZ) };
    return { ...this.#name(token), logprob: finite(logits[token] - logZ), top_logprobs: top };
  }
}
