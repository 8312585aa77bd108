/**
 * Pacing long prefills by time (#12: a long prompt in flight must not hold up other sessions' first tokens).
 *
 * The engine runs one step at a time, so a session that arrives waits for the step in flight, then for
 * its own step, which also carries the other prompts' chunks. With a fixed chunk in tokens (--prefill-chunk)
 * the length of such a step depends on the model and the cache: 128 tokens take 8 ms on stories260K with an
 * empty cache and 45-110 ms against a full 512-token one (head dimension 8: per-(query, key) overhead
 * dominates). So a prompt with more tokens left than one chunk gets, per step, only as many tokens as fit in
 * --prefill-step-ms at the measured cost per token, less the tokens already in the step (never fewer than
 * MIN_PACED_CHUNK, never more than --prefill-chunk); a prompt whose rest fits in one chunk takes it whole, as
 * before, and is planned before the paced ones, so that a short turn's step is not lengthened by a long one.
 *
 * The cost per token is a moving average over the steps that fed a prefill chunk: step time / tokens fed.
 */

/** The least a paced prefill gets per step (unless --prefill-chunk is smaller), so that a slow model still makes progress. */
export const MIN_PACED_CHUNK = 16;
/** Weight of the newest step in the moving average of the cost per token. */
const EWMA_WEIGHT = 0.2;

export class PrefillPacer {
  readonly targetMs: number;
  readonly maxChunk: number;
  #msPerToken = 0;

  /** `targetMs` 0 turns pacing off (every chunk is `maxChunk` tokens, or the rest of the prompt). */
  constructor(targetMs: number, maxChunk: number) {
    this.targetMs = Math.max(0, targetMs);
    this.maxChunk = Math.max(1, maxChunk);
  }

  /** The measured cost of a token in a step, ms (0 until a step with a prefill chunk was seen). */
  get msPerToken(): number {
    return this.#msPerToken;
  }

  /** A step that fed a prefill chunk took `stepMs` for `tokens` tokens in all. */
  observe(stepMs: number, tokens: number): void {
    if (tokens <= 0 || !(stepMs >= 0)) return;
    const sample = stepMs / tokens;
    this.#msPerToken = this.#msPerToken === 0
      ? sample
      : this.#msPerToken + EWMA_WEIGHT * (sample - this.#msPerToken);
  }

  /** Whether a prefill with `left` tokens to feed is paced (more than one chunk left, pacing on). */
  paces(left: number): boolean {
    return left > this.maxChunk && this.targetMs > 0 && this.#msPerToken > 0;
  }

  /**
   * Tokens a prefill with `left` tokens to feed gets this step (before the step's token budget), when
   * `planned` tokens are already in the step (decode tokens and short prompts, which are planned first).
   */
  chunk(left: number, planned = 0): number {
    if (!this.paces(left)) return Math.min(left, this.maxChunk);
    const fit = Math.floor(this.targetMs / this.#msPerToken) - planned;
    return Math.min(this.maxChunk, Math.max(MIN_PACED_CHUNK, fit));
  }
}
