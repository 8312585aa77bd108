/** bench/lib.ts: quantiles estimated from Prometheus histogram buckets (between two scrapes). */
import assert from "node:assert/strict";
import { histogramQuantile, parsePrometheus } from "../../bench/lib.ts";
import { Histogram } from "../../gateway/metrics/metrics.ts";

Deno.test("histogramQuantile: interpolates inside the bucket, only counts what happened between scrapes", () => {
  const h = new Histogram("t_seconds", "test", [0.001, 0.002, 0.004]);
  for (let i = 0; i < 50; i++) h.observe(0.003); // before the first scrape: must not count
  const before = parsePrometheus(h.render());
  for (let i = 0; i < 90; i++) h.observe(0.0005); // (0, 1 ms]
  for (let i = 0; i < 10; i++) h.observe(0.0015); // (1, 2 ms]
  const after = parsePrometheus(h.render());
  // 100 observations: p50 is the 50th of 90 in the first bucket -> 50/90 of the way to 1 ms.
  assert.ok(Math.abs(histogramQuantile(before, after, "t_seconds", 0.5) - 0.001 * 50 / 90) < 1e-12);
  // p99 is the 9th of 10 in (1, 2 ms].
  assert.ok(Math.abs(histogramQuantile(before, after, "t_seconds", 0.99) - 0.0019) < 1e-12);
  assert.ok(Number.isNaN(histogramQuantile(after, after, "t_seconds", 0.5)), "no new observations");
  assert.ok(Number.isNaN(histogramQuantile(before, after, "missing_seconds", 0.5)));
  // Above the last finite bound: reported as that bound.
  for (let i = 0; i < 1000; i++) h.observe(1);
  assert.equal(histogramQuantile(after, parsePrometheus(h.render()), "t_seconds", 0.99), 0.004);
});

Deno.test("Histogram: cumulative bucket counts, +Inf, sum and count in the text format", () => {
  const h = new Histogram("x", "x", [1, 2]);
  for (const v of [0.5, 1, 1.5, 3]) h.observe(v);
  const s = h.samples();
  assert.deepEqual(s.slice(0, 3), ['x_bucket{le="1"} 2', 'x_bucket{le="2"} 3', 'x_bucket{le="+Inf"} 4']);
  assert.equal(h.count, 4);
  assert.equal(h.sum, 6);
});
