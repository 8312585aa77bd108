/**
 * A circuit breaker per backend: a failed connect or health read opens it (no new sessions go there) for a
 * cooldown that doubles with each consecutive failure (1 s, 2 s, … up to 30 s); a success closes it. While
 * it is open the health reads go on, so a backend that comes back is used again within one interval.
 */
const FIRST_COOLDOWN_MS = 1000;
const MAX_COOLDOWN_MS = 30_000;

export class Breaker {
  #failures = 0;
  #openUntil = 0;

  /** Consecutive failures since the last success. */
  get failures(): number {
    return this.#failures;
  }

  /** Whether new work may go to the backend now. */
  closed(now = Date.now()): boolean {
    return now >= this.#openUntil;
  }

  success(): void {
    this.#failures = 0;
    this.#openUntil = 0;
  }

  failure(now = Date.now()): void {
    this.#failures++;
    this.#openUntil = now + Math.min(MAX_COOLDOWN_MS, FIRST_COOLDOWN_MS * 2 ** (this.#failures - 1));
  }
}
