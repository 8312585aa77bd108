/**
 * A token bucket over bytes: `take(n)` resolves at once while the bucket holds n, else after the time the
 * rate needs to refill what is missing. One reader per bucket (a socket's read loop), so takes never
 * overlap. A take larger than the bucket waits until it is full, then leaves it in debt (at most one
 * frame of the frame limit): the rate holds on average, a frame is never refused.
 */
export class ReadBucket {
  #level: number;
  #at = performance.now();

  constructor(readonly bytesPerSecond: number, readonly capacity: number) {
    this.#level = capacity;
  }

  /** Bytes available now (negative while in debt). */
  get level(): number {
    this.#refill();
    return this.#level;
  }

  async take(n: number): Promise<void> {
    this.#refill();
    const need = Math.min(n, this.capacity);
    if (this.#level < need) {
      const ms = ((need - this.#level) / this.bytesPerSecond) * 1000;
      await new Promise((r) => setTimeout(r, Math.ceil(ms)));
      this.#refill();
    }
    this.#level -= n;
  }

  #refill(): void {
    const now = performance.now();
    this.#level = Math.min(this.capacity, this.#level + ((now - this.#at) / 1000) * this.bytesPerSecond);
    this.#at = now;
  }
}
