/**
 * The soak's arithmetic and verdict, apart from any I/O: TTFT percentiles of a run, the comparison of two
 * runs' greedy outputs round by round, RSS figures from the samples, the list of failures (the exit
 * criteria of bench/soak.ts) and the one-screen text summary.
 */
import { describeCounts, type TallyJson } from "./hostile/tally.ts";
import { fmt, percentile } from "./lib.ts";
import { roundOk, type RoundRecord } from "./soak_normal.ts";

const MiB = 1 << 20;
/** The soak fails when run B's p99 time to first token is more than this times run A's. */
export const MAX_TTFT_P99_RATIO = 2;

export interface RssStats {
  /** First sample (the gateway just started), highest, last; MB. NaN without samples. */
  startMb: number;
  maxMb: number;
  endMb: number;
  samples: number;
}

/** RSS figures from samples in bytes (NaN samples, taken when the process was gone, are skipped). */
export function rssStats(samplesBytes: number[]): RssStats {
  const s = samplesBytes.filter(Number.isFinite);
  const mb = (b: number | undefined) => b === undefined ? NaN : Number((b / MiB).toFixed(1));
  return {
    startMb: mb(s[0]),
    maxMb: s.length === 0 ? NaN : mb(Math.max(...s)),
    endMb: mb(s.at(-1)),
    samples: s.length,
  };
}

export interface TtftStats {
  n: number;
  p50: number;
  p99: number;
}

/** Nearest-rank p50 / p99 (ms) of the rounds that finished normally and streamed text. */
export function ttftStats(rounds: RoundRecord[]): TtftStats {
  const t = rounds.filter((r) => roundOk(r) && Number.isFinite(r.ttftMs)).map((r) => r.ttftMs);
  return { n: t.length, p50: percentile(t, 50), p99: percentile(t, 99) };
}

export interface OutputComparison {
  /** Rounds (session, round) that finished normally in both runs. */
  compared: number;
  mismatches: number;
  firstMismatch: { session: number; round: number; a: string; b: string } | null;
}

/** Greedy outputs of the rounds both runs finished normally: any difference is a mismatch. */
export function compareOutputs(a: RoundRecord[], b: RoundRecord[]): OutputComparison {
  const key = (r: RoundRecord) => `${r.session}:${r.round}`;
  const inB = new Map(b.filter(roundOk).map((r) => [key(r), r]));
  const out: OutputComparison = { compared: 0, mismatches: 0, firstMismatch: null };
  const sorted = a.filter(roundOk).sort((x, y) => x.session - y.session || x.round - y.round);
  for (const ra of sorted) {
    const rb = inB.get(key(ra));
    if (!rb) continue;
    out.compared++;
    if (ra.text !== rb.text) {
      out.mismatches++;
      out.firstMismatch ??= { session: ra.session, round: ra.round, a: ra.text, b: rb.text };
    }
  }
  return out;
}

export interface HostileSummary extends TallyJson {
  kind: string;
}

/** What one run of the soak measured. */
export interface RunSummary {
  label: string;
  wallS: number;
  sessions: number;
  sessionErrors: string[];
  rounds: number;
  okRounds: number;
  /** Rounds that did not finish normally, by status. */
  failedRounds: Record<string, number>;
  ttftMs: TtftStats;
  rssMb: RssStats;
  /** The gateway had not exited when the run ended. */
  aliveThroughout: boolean;
  /** GET /healthz answered 200 at the end. */
  healthyAtEnd: boolean;
  hostile: HostileSummary[];
  /** Why the hostile clients' process gave no report, when it did not. */
  hostileError?: string;
  /** The gateway's stderr, when it died. */
  stderrTail?: string;
}

export function summarizeRounds(rounds: RoundRecord[]) {
  const failedRounds: Record<string, number> = {};
  for (const r of rounds) if (!roundOk(r)) failedRounds[r.status] = (failedRounds[r.status] ?? 0) + 1;
  return {
    rounds: rounds.length,
    okRounds: rounds.filter(roundOk).length,
    failedRounds,
    ttftMs: ttftStats(rounds),
  };
}

/** B's p99 TTFT over A's. */
export function ttftRatio(a: RunSummary, b: RunSummary): number {
  return b.ttftMs.p99 / a.ttftMs.p99;
}

/** Every exit criterion that failed, in words; empty when the soak passed. */
export function failures(a: RunSummary, b: RunSummary, outputs: OutputComparison, rssCeilingMb: number) {
  const out: string[] = [];
  for (const r of [a, b]) {
    if (!r.aliveThroughout) out.push(`run ${r.label}: the gateway died`);
    else if (!r.healthyAtEnd) out.push(`run ${r.label}: /healthz did not answer 200 at the end`);
    if (r.sessionErrors.length > 0) {
      out.push(
        `run ${r.label}: ${r.sessionErrors.length} normal sessions did not start (${r.sessionErrors[0]})`,
      );
    }
    const failed = Object.values(r.failedRounds).reduce((x, y) => x + y, 0);
    if (failed > 0) {
      out.push(`run ${r.label}: ${failed} normal rounds failed (${describeCounts(r.failedRounds)})`);
    }
    if (r.okRounds === 0) out.push(`run ${r.label}: no normal round finished`);
    if (!(r.rssMb.maxMb <= rssCeilingMb)) {
      out.push(`run ${r.label}: max RSS ${fmt(r.rssMb.maxMb, 1)} MB over the ceiling of ${rssCeilingMb} MB`);
    }
  }
  if (outputs.mismatches > 0) out.push(`${outputs.mismatches} of ${outputs.compared} rounds' outputs differ`);
  if (outputs.compared === 0) out.push("no round finished in both runs: nothing to compare");
  const ratio = ttftRatio(a, b);
  if (!(ratio <= MAX_TTFT_P99_RATIO)) {
    out.push(
      `p99 TTFT B/A ${fmt(ratio)} over ${MAX_TTFT_P99_RATIO} (${fmt(b.ttftMs.p99)} / ${
        fmt(a.ttftMs.p99)
      } ms)`,
    );
  }
  return out;
}

/** The one-screen text summary. */
export function formatText(
  s: {
    runs: RunSummary[];
    outputs: OutputComparison;
    ttftP99Ratio: number;
    failures: string[];
    title: string;
  },
): string {
  const lines = [s.title];
  for (const r of s.runs) {
    lines.push(
      `run ${r.label}: ${fmt(r.wallS, 0)} s, ${r.sessions} sessions, ${r.okRounds}/${r.rounds} rounds ok` +
        (r.okRounds < r.rounds ? ` (${describeCounts(r.failedRounds)})` : ""),
      `  TTFT ms p50 ${fmt(r.ttftMs.p50)} p99 ${fmt(r.ttftMs.p99)} (n=${r.ttftMs.n}); RSS MB start ${
        fmt(r.rssMb.startMb, 0)
      } max ${fmt(r.rssMb.maxMb, 0)} end ${fmt(r.rssMb.endMb, 0)}; ` +
        `alive ${r.aliveThroughout ? "yes" : "NO"}, /healthz ${r.healthyAtEnd ? "200" : "NO"}`,
    );
    for (const h of r.hostile) {
      const maxima = Object.entries(h.maxima).map(([k, v]) => `${k} ${v}`).join(", ");
      lines.push(`  ${h.kind}: ${describeCounts(h.counts)}${maxima ? `; max ${maxima}` : ""}`);
    }
    if (r.hostileError) lines.push(`  hostile clients: ${r.hostileError}`);
  }
  lines.push(
    `outputs: ${s.outputs.mismatches} mismatches in ${s.outputs.compared} rounds run in both; ` +
      `p99 TTFT B/A ${fmt(s.ttftP99Ratio)} (at most ${MAX_TTFT_P99_RATIO})`,
  );
  if (s.outputs.firstMismatch) {
    const m = s.outputs.firstMismatch;
    lines.push(
      `  first: session ${m.session} round ${m.round}: ${JSON.stringify(m.a)} vs ${JSON.stringify(m.b)}`,
    );
  }
  lines.push(s.failures.length === 0 ? "PASS" : `FAIL: ${s.failures.join("; ")}`);
  return lines.join("\n");
}
