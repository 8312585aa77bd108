/** bench/soak_summary.ts: the soak's comparison of two runs, its figures and its verdict. */
import assert from "node:assert/strict";
import type { RoundRecord } from "../../bench/soak_normal.ts";
import {
  compareOutputs,
  failures,
  formatText,
  MAX_TTFT_P99_RATIO,
  rssStats,
  type RunSummary,
  summarizeRounds,
  ttftStats,
} from "../../bench/soak_summary.ts";

function round(session: number, r: number, text: string, ttftMs = 10, status = "incomplete"): RoundRecord {
  return { session, round: r, text, ttftMs, status };
}

function run(label: string, rounds: RoundRecord[], over: Partial<RunSummary> = {}): RunSummary {
  return {
    label,
    wallS: 60,
    sessions: 2,
    sessionErrors: [],
    ...summarizeRounds(rounds),
    rssMb: rssStats([100 << 20, 200 << 20]),
    aliveThroughout: true,
    healthyAtEnd: true,
    hostile: [],
    ...over,
  };
}

Deno.test("compareOutputs: only rounds both runs finished normally count; a different text is a mismatch", () => {
  const a = [round(0, 0, "x"), round(0, 1, "y"), round(1, 0, "p"), round(1, 1, "q", NaN, "failed")];
  const b = [round(0, 0, "x"), round(0, 1, "Y"), round(1, 0, "p"), round(1, 1, "q")];
  const c = compareOutputs(a, b);
  assert.equal(c.compared, 3, "(1, 1) failed in A: not compared");
  assert.equal(c.mismatches, 1);
  assert.deepEqual(c.firstMismatch, { session: 0, round: 1, a: "y", b: "Y" });
  // A round B never ran (it completed fewer) is not compared either.
  assert.deepEqual(compareOutputs(a, b.slice(0, 1)), { compared: 1, mismatches: 0, firstMismatch: null });
});

Deno.test("ttftStats: nearest-rank percentiles over rounds that finished and streamed", () => {
  const rounds = Array.from({ length: 100 }, (_, i) => round(0, i, "", i + 1));
  rounds.push(round(1, 0, "", 5000, "failed"), round(1, 1, "", NaN, "completed"));
  assert.deepEqual(ttftStats(rounds), { n: 100, p50: 50, p99: 99 });
  assert.ok(Number.isNaN(ttftStats([]).p99));
});

Deno.test("rssStats: first, max, last in MB; samples of a gone process skipped", () => {
  assert.deepEqual(rssStats([50 << 20, 300 << 20, NaN, 120 << 20]), {
    startMb: 50,
    maxMb: 300,
    endMb: 120,
    samples: 3,
  });
  assert.ok(Number.isNaN(rssStats([NaN]).maxMb));
});

Deno.test("failures: each exit criterion, and none for a good pair of runs", () => {
  const a = run("A", [round(0, 0, "x", 100), round(0, 1, "y", 100)]);
  const good = run("B", [round(0, 0, "x", 150), round(0, 1, "y", MAX_TTFT_P99_RATIO * 100)]);
  const cmp = { compared: 2, mismatches: 0, firstMismatch: null };
  assert.deepEqual(failures(a, good, cmp, 1000), [], "a ratio of exactly 2 passes");

  const slow = run("B", [round(0, 0, "x", 100), round(0, 1, "y", MAX_TTFT_P99_RATIO * 100 + 1)]);
  const fat = run("B", [round(0, 0, "x")], { rssMb: rssStats([2000 << 20]) });
  const dead = run("B", [round(0, 0, "x")], { aliveThroughout: false, healthyAtEnd: false });
  const failed = run("B", [round(0, 0, "x"), round(0, 1, "", NaN, "error server_busy")]);
  assert.match(failures(a, slow, cmp, 1000).join(), /p99 TTFT B\/A 2\.01 over 2/);
  assert.match(failures(a, fat, cmp, 1000).join(), /run B: max RSS 2000\.0 MB over the ceiling of 1000 MB/);
  assert.match(failures(a, dead, cmp, 1000).join(), /run B: the gateway died/);
  assert.match(failures(a, failed, cmp, 1000).join(), /run B: 1 normal rounds failed \(error server_busy\)/);
  assert.match(failures(a, good, { ...cmp, mismatches: 1 }, 1000).join(), /1 of 2 rounds' outputs differ/);
  assert.match(failures(a, good, { ...cmp, compared: 0 }, 1000).join(), /nothing to compare/);
});

Deno.test("formatText: one line per run and hostile client, then the verdict", () => {
  const a = run("A", [round(0, 0, "x")]);
  const b = run("B", [round(0, 0, "x")], {
    hostile: [{ kind: "flooder", counts: { "close 1008": 3, cycles: 3 }, maxima: { "events received": 9 } }],
  });
  const text = formatText({
    title: "soak",
    runs: [a, b],
    outputs: { compared: 1, mismatches: 0, firstMismatch: null },
    ttftP99Ratio: 1,
    failures: [],
  });
  assert.match(text, /^soak\nrun A: 60 s, 2 sessions, 1\/1 rounds ok\n/);
  assert.match(text, /\n {2}flooder: close 1008 x 3, cycles x 3; max events received 9\n/);
  assert.match(text, /\nPASS$/);
});
