/**
 * Reading the Prometheus text format (what /metrics serves): the edge reads its backends' load from it,
 * the benchmarks their latency histograms.
 */

/** One sample of a Prometheus text exposition: name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) {
      for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    }
    const value = m[4] === "+Inf" ? Infinity : m[4] === "-Inf" ? -Infinity : Number(m[4]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/** Sum of all samples named `name` (over all label sets). */
export function metricSum(samples: Sample[], name: string): number {
  let sum = 0;
  let found = false;
  for (const s of samples) {
    if (s.name === name) {
      sum += s.value;
      found = true;
    }
  }
  return found ? sum : NaN;
}
