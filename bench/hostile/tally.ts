/**
 * What one hostile client saw: counts by outcome ("close 1008", "error input_too_large", "http 408", ...)
 * and the largest value of a few measurements (bytes waiting for a client that did not read).
 */
export interface TallyJson {
  counts: Record<string, number>;
  maxima: Record<string, number>;
}

export class Tally {
  readonly counts = new Map<string, number>();
  readonly maxima = new Map<string, number>();

  add(outcome: string, n = 1): void {
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + n);
  }

  max(what: string, value: number): void {
    if (Number.isFinite(value) && !(value <= (this.maxima.get(what) ?? -Infinity))) {
      this.maxima.set(what, value);
    }
  }

  /** Outcomes sorted by name, so that two runs print alike. */
  toJSON(): TallyJson {
    const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort(([a], [b]) => a < b ? -1 : 1));
    return { counts: sorted(this.counts), maxima: sorted(this.maxima) };
  }
}

/** "close 1008, error send_buffer_full x 12": the counts of a TallyJson on one line, most frequent first. */
export function describeCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts).sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1));
  return entries.length === 0 ? "nothing" : entries.map(([k, n]) => n === 1 ? k : `${k} x ${n}`).join(", ");
}
