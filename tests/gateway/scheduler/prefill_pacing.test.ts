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
  assert.equal(p.chunk(1000, 10), 30, "less the tokens already in the step");
  assert.equal(p.chunk(1000, 35), MIN_PACED_CHUNK, "but at least the minimum");
  assert.ok(p.paces(1000) && !p.paces(100));
  p.observe(1000, 10); // a slow step: the average moves a fifth of the way to 100 ms per token
  assert.ok(Math.abs(p.msPerToken - (0.5 + 0.2 * (100 - 0.5))) < 1e-9);
  assert.equal(p.chunk(1000), MIN_PACED_CHUNK, "never below the minimum");
  const fast = new PrefillPacer(20, 128);
  fast.observe(1, 1000);
  assert.equal(fast.chunk(5000), 128, "never above --prefill-chunk");
  const small = new PrefillPacer(20, 4);
  small.observe(1000, 10);
  assert.equal(small.chunk(5000), 4, "the minimum never goes past --prefill-chunk");
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

Deno.test("scheduler: a short prompt goes first in its step and the long one gets only what time is left", async () => {
  const engine = new FakeCountingEngine();
  engine.maxBatchTokens = 512;
  engine.msPerToken = 1;
  const sched = new Scheduler(engine, { maxBatchTokens: 512, prefillChunk: 128, prefillStepMs: 40 });
  const long = new Conversation({});
  const short = new Conversation({});
  const req = (n: number) => ({
    prompt: Array(n).fill(7),
    maxTokens: 1,
    stopTokens: new Set<number>(),
    onToken() {},
  });
  const jl = sched.submit(long, req(2000));
  while (engine.steps.length < 3) await new Promise((r) => setTimeout(r, 1));
  const js = sched.submit(short, req(30));
  await Promise.all([jl.done, js.done]);
  const shared = engine.steps.find((s) => s.some((i) => i.seq === short.seq))!;
  assert.equal(shared[0].seq, short.seq, "the short prompt is planned first");
  assert.equal(shared[0].tokens.length, 30, "and taken whole");
  const longItem = shared.find((i) => i.seq === long.seq)!;
  // At >= 1 ms per token 40 ms fit at most 40 tokens; 30 are the short prompt's: the long one gets the minimum.
  assert.equal(longItem.tokens.length, MIN_PACED_CHUNK);
  sched.release(long);
  sched.release(short);
  await sched.close();
});
