/**
 * Pure unit test of the scheduler's batching / fairness logic with a FAKE engine
 * (FakeCountingEngine records each step; it computes nothing). Integration tests
 * elsewhere use the real engine.
 */
import assert from "node:assert/strict";
import { FakeCountingEngine } from "./_fake_engine.ts";
import { Conversation, Scheduler } from "../../../gateway/scheduler/scheduler.ts";

Deno.test("scheduler: decode never stalls behind a long prompt; prefill is chunked; all jobs progress", async () => {
  const engine = new FakeCountingEngine();
  const sched = new Scheduler(engine, { maxBatchTokens: 16, prefillChunk: 8 });
  const a = new Conversation({});
  const b = new Conversation({});
  const c = new Conversation({});
  const never = new Set<number>();
  const ja = sched.submit(a, { prompt: [5], maxTokens: 20, stopTokens: never, onToken: () => {} });
  // Let A start decoding, then a long prompt arrives for B and a medium one for C.
  while (engine.steps.length < 2) await new Promise((r) => setTimeout(r, 0));
  const jb = sched.submit(b, {
    prompt: Array(100).fill(7),
    maxTokens: 3,
    stopTokens: never,
    onToken: () => {},
  });
  const jc = sched.submit(c, {
    prompt: Array(20).fill(7),
    maxTokens: 3,
    stopTokens: never,
    onToken: () => {},
  });
  const [ra, rb, rc] = await Promise.all([ja.done, jb.done, jc.done]);
  assert.equal(ra.reason, "length");
  assert.equal(ra.outputTokens, 20);
  assert.equal(rb.promptTokens, 100);
  assert.equal(rc.promptTokens, 20);
  // While A decoded, every step carried its token, even when B's prompt was being prefilled.
  const aSteps = engine.steps.filter((s) => s.some((i) => i.seq === a.seq));
  assert.equal(aSteps.length, 20);
  for (const s of engine.steps) for (const i of s) assert.ok(i.tokens.length <= 8, "chunked");
  // C's shorter prompt was not queued behind all of B's: it finished prefilling before B did.
  const lastPrefill = (seq: number) =>
    engine.steps.findLastIndex((s) => s.some((i) => i.seq === seq && i.sample));
  assert.ok(lastPrefill(c.seq!) < engine.steps.findIndex((s) => s.some((i) => i.seq === b.seq && i.sample)));
  sched.release(a);
  sched.release(b);
  sched.release(c);
  await sched.close();
});

Deno.test("scheduler: cancel finishes at once when idle, pending token carried to the next turn", async () => {
  const engine = new FakeCountingEngine();
  const sched = new Scheduler(engine, { maxBatchTokens: 16 });
  const a = new Conversation({});
  const r1 = await sched.submit(a, { prompt: [3, 4], maxTokens: 2, stopTokens: new Set(), onToken: () => {} })
    .done;
  assert.equal(r1.reason, "length");
  assert.deepEqual(a.pending, [10]);
  const j = sched.submit(a, { prompt: [5], maxTokens: 100, stopTokens: new Set([10]), onToken: () => {} });
  const r2 = await j.done;
  assert.equal(r2.reason, "stop");
  assert.equal(r2.promptTokens, 2, "pending token + the new prompt");
  const jc = sched.submit(a, { prompt: [6], maxTokens: 100, stopTokens: new Set(), onToken: () => {} });
  jc.cancel("client");
  const r3 = await jc.done;
  assert.equal(r3.reason, "cancelled");
  assert.equal(r3.outputTokens, 0);
  await sched.close();
  assert.equal(sched.liveConversations, 0);
});
