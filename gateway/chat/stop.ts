/**
 * Stop-string matching over streamed text. Text that could still turn into
 * a stop string is held back until it cannot.
 */
export class StopMatcher {
  #held = "";
  stopped = false;
  constructor(readonly stops: readonly string[]) {}

  /** Feed a delta; returns the text safe to emit now. After a match `stopped` is true. */
  push(delta: string): string {
    if (this.stopped) return "";
    if (this.stops.length === 0) return delta;
    const text = this.#held + delta;
    let cut = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.#held = "";
      return text.slice(0, cut);
    }
    // Hold back the longest suffix that is a prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, text.length); k > keep; k--) {
        if (text.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    this.#held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** End of generation: release what was held. */
  flush(): string {
    const s = this.stopped ? "" : this.#held;
    this.#held = "";
    return s;
  }
}
