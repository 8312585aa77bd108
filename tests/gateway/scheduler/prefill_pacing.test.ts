/**
 * Long prompts are fed in chunks sized by time (gateway/scheduler/prefill_pacing.ts, #12): with a measured cost
 * per token, a prompt with more left than one chunk gets what fits in --prefill-step-ms (at least
 * MIN_PACED_CHUNK), a short one is taken whole; with pacing off every chunk is --prefill-chunk.
 */
import assert from "node:assert/strict";
import { MIN_PACED_CHUNK, PrefillPacer } from "../../../gateway/scheduler/prefill_pacing.ts";
import { Conversation, Scheduler } from "../../../gateway/scheduler/scheduler.ts";
import { FakeCountingEngine } from "./_fake_engine.ts";

Deno.test("PrefillPacer: chunks from the measured cost per token, bounded both ways", () => {
  const p = new PrefillPacer(20, 128);
  assert.equal(p.chunk(1000), 128, "no cost measured yet: a whole chunk");
  p.observe(64, 128); // 0.5 ms per token
  assert.equal(p.msPerToken, 0.5);
  assert.equal(p.chunk(1000), 40, "20 ms at 0.5 ms per token");
  assert.equal(p.chunk(100), 100, "a rest that fits in one chunk is taken whole");
  p.observe(1000, 10); // a slow step: the average moves a fifth of the way to 100 ms per token
  assert.ok(Math.abs(p.msPerToken - (0.5 + 0.2 * (100 - 0.5))) < 1e-9);
  assert.equal(p.chunk(1000), MIN_PACED_CHUNK, "never below the minimum");
  const fast = new PrefillPacer(20, 128);
  fast.observe(1, 1000);
  assert.equal(fast.chunk(5000), 128, "never above --prefill-chunk");
  const off = new PrefillPacer(0, 128);
  off.observe(1000, 10);
  assert.equal(off.chunk(5000), 128, "0 turns pacing off");
  p.observe(Number.NaN, 10);
  p.observe(5, 0);
  assert.ok(Number.isFinite(p.msPerToken), "steps without tokens or time are ignored");
});

async function chunksOf(prefillStepMs: number): Promise<number[]> {
  const engine = new FakeCountingEngine();
  engine.maxBatchTokens = 512;
  engine.msPerToken = 1;
  const sched = new Scheduler(engine, { maxBatchTokens: 512, prefillChunk: 128, prefillStepMs });
  const conv = new Conversation({});
  const r = await sched.submit(conv, {
    prompt: Array(600).fill(7),
    maxTokens: 1,
    stopTokens: new Set(),
    onToken: () => {},
  }).done;
  assert.equal(r.promptTokens, 600);
  const chunks = engine.steps.map((s) => s.find((i) => i.seq === conv.seq)?.tokens.length ?? 0);
  sched.release(conv);
  await sched.close();
  return chunks;
}

Deno.test("scheduler: a long prompt's chunks take about --prefill-step-ms each once the cost is known", async () => {
  // 1 ms per token (or more, when timers fire late): after the first 128-token step, 20 ms fit at most 20.
  const paced = await chunksOf(20);
  assert.equal(paced[0], 128);
  assert.equal(paced.reduce((a, b) => a + b, 0), 600);
  for (const c of paced.slice(1, -1)) assert.ok(c >= MIN_PACED_CHUNK && c <= 20, `chunk ${c}`);
  assert.deepEqual(await chunksOf(0), [128, 128, 128, 128, 88], "pacing off: --prefill-chunk tokens a step");
});
