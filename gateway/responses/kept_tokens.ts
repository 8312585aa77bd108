/**
 * The token ids a stored Responses API chain keeps to rebuild its cache when its live sequence is gone: the
 * whole transcript (everything fed to the sequence, plus its pending tokens) while it fits the cache's
 * capacity W, else what a full cache holds: the first `head` ids (the attention sinks under `streaming`, none
 * under `window`) and the newest W - head. Feeding them to a fresh sequence gives the same cache exactly while
 * the chain fits its window; past it, the window is recomputed from its tokens (as an edge restore does,
 * docs/edge.md: the evicted history no longer shapes it). At most W ids (4 bytes each) per stored response.
 *
 * kept(kept(a) + b) = kept(a + b): the sinks of a are the sinks of a + b, and the newest W - head ids of a + b
 * lie in the newest W - head of a followed by b. So each response keeps kept(parent's kept + its own tokens).
 */
import type { SequenceOptions } from "../../runtime/types.ts";

export interface KeepShape {
  /** Ids kept from the start (attention sinks). */
  head: number;
  /** The cache capacity W in tokens. */
  capacity: number;
}

export function keepShape(options: SequenceOptions, capacity: number): KeepShape {
  const head = options.policy === "window" ? 0 : Math.min(options.sinks ?? 0, capacity);
  return { head: options.policy === "dense" ? 0 : head, capacity };
}

/** kept(parts joined), see above. */
export function keptTokens(parts: readonly ArrayLike<number>[], shape: KeepShape): Int32Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const w = Math.max(1, shape.capacity);
  const n = Math.min(total, w);
  const out = new Int32Array(n);
  // Index i of the joined parts goes to slot i (head) or n - (total - i) (tail); the rest is skipped.
  const head = total <= w ? total : shape.head;
  const tailFrom = total - (n - head);
  let i = 0;
  for (const p of parts) {
    for (let j = 0; j < p.length; j++, i++) {
      if (i < head) out[i] = p[j];
      else if (i >= tailFrom) out[n - (total - i)] = p[j];
    }
  }
  return out;
}
