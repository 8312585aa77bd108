/**
 * The token ids a conversation's cache can still hold, by stream index (the position of a token in
 * everything fed to the sequence): the first `sinks` ids for ever, and the last `capacity` ids in a ring.
 * Whatever the cache policy keeps (sinks + recent window, or a plain window) lies in one of the two, so
 * `Engine.cacheIndices` (stream indices in cache order) maps to the cached ids, which is what an edge
 * checkpoint needs to rebuild the cache elsewhere (docs/edge.md). Memory: (sinks + capacity) x 4 bytes.
 * Kept only for conversations relayed by an edge (Conversation.fed).
 */
export class FedTokens {
  readonly #head: Int32Array;
  readonly #ring: Int32Array;
  /** Tokens fed so far (the next stream index). */
  #count = 0;

  constructor(readonly sinks: number, readonly capacity: number) {
    this.#head = new Int32Array(sinks);
    this.#ring = new Int32Array(capacity);
  }

  get count(): number {
    return this.#count;
  }

  /** Record tokens as they are fed, in order (hot path: a decode step feeds one). */
  push(tokens: ArrayLike<number>): void {
    const head = this.#head, ring = this.#ring, cap = this.capacity;
    for (let i = 0; i < tokens.length; i++) {
      const at = this.#count++;
      if (at < head.length) head[at] = tokens[i];
      ring[at % cap] = tokens[i];
    }
  }

  /** The ids at these stream indices; throws when one was never fed or has left both the head and the ring. */
  idsAt(indices: readonly number[]): number[] {
    const out = new Array<number>(indices.length);
    const oldestInRing = this.#count - this.capacity;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      if (!Number.isInteger(i) || i < 0 || i >= this.#count) {
        throw new RangeError(`stream index ${i} was never fed (${this.#count} tokens fed)`);
      }
      if (i < this.#head.length) out[k] = this.#head[i];
      else if (i >= oldestInRing) out[k] = this.#ring[i % this.capacity];
      else throw new RangeError(`stream index ${i} is no longer remembered`);
    }
    return out;
  }
}
