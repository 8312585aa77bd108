/**
 * A job's life in the scheduler with the real engine: its one status (queued -> prefilling ->
 * decoding -> done), and cancel as a request: a job outside the running step ends at once, one in
 * the running step when the step returns (its token dropped). Whatever the moment of the cancel,
 * the cache plus the pending tokens hold exactly the prompt and the tokens delivered (D8). The
 * wrapper only holds a computed step open until the test lets it return.
 */
import assert from "node:assert/strict";
import type { StepItem, StepResult } from "../../../runtime/types.ts";
import { Conversation, type GenerateResult, Scheduler } from "../../../gateway/scheduler/scheduler.ts";
import { sharedEngine } from "../_gateway.ts";
import { DelegatingEngine, Gate } from "./_delegating_engine.ts";

class HeldStepEngine extends DelegatingEngine {
  hold = true;
  #held: Gate | null = null;
  #arrival = new Gate();

  override async step(items: StepItem[]): Promise<StepResult[]> {
    const results = await this.inner.step(items);
    if (this.hold) {
      this.#held = new Gate();
      this.#arrival.open();
      await this.#held.wait();
    }
    return results;
  }

  /** Resolves once a step is held: computed, not returned yet. */
  async nextHeld(): Promise<void> {
    await this.#arrival.wait();
    this.#arrival = new Gate();
  }

  get holding(): boolean {
    return this.#held !== null;
  }

  release(): void {
    const g = this.#held!;
    this.#held = null;
    g.open();
  }
}

async function setup() {
  const { engine, tokenizer } = await sharedEngine();
  const held = new HeldStepEngine(engine);
  const sched = new Scheduler(held);
  const prompt = [tokenizer.bosId, ...tokenizer.encode("Once upon a time", { bos: false })];
  const start = (conv: Conversation, delivered: number[], onToken?: (n: number) => void, paused = false) =>
    sched.submit(conv, {
      prompt,
      maxTokens: 40,
      sampling: { temperature: 0 },
      stopTokens: new Set(),
      isPaused: () => paused,
      onToken: (t) => {
        delivered.push(t);
        onToken?.(delivered.length);
      },
    });
  /** The cache and the pending tokens hold the prompt and every delivered token, nothing twice. */
  const accounted = (conv: Conversation, delivered: number[]) =>
    assert.equal(engine.stats(conv.seq!).seen + conv.pending.length, prompt.length + delivered.length);
  return { engine, held, sched, prompt, start, accounted };
}

const settledWithin = (p: Promise<GenerateResult>, ms: number) =>
  Promise.race([p, new Promise<null>((r) => setTimeout(() => r(null), ms))]);

Deno.test("scheduler lifecycle: one status per job; cancel in the running step ends it when the step returns, token dropped", async () => {
  const { engine, held, sched, prompt, start, accounted } = await setup();
  try {
    const conv = new Conversation({});
    const delivered: number[] = [];
    const job = start(conv, delivered);
    assert.equal(conv.job!.status, "queued");
    await held.nextHeld(); // the prefill step
    assert.equal(conv.job!.status, "prefilling");
    held.release();
    await held.nextHeld(); // the first decode step
    assert.equal(conv.job!.status, "decoding");
    assert.equal(delivered.length, 1);
    job.cancel("client");
    assert.equal(await settledWithin(job.done, 30), null, "still in the running step");
    held.release();
    const r = await job.done;
    assert.equal(r.reason, "cancelled");
    assert.equal(r.detail, "client");
    assert.equal(delivered.length, 1, "the token of the cancelled step is dropped");
    assert.equal(r.outputTokens, 1);
    assert.equal(r.promptTokens, prompt.length);
    assert.equal(conv.job, null);
    assert.deepEqual(conv.pending, [], "the step fed the delivered token");
    assert.equal(engine.stats(conv.seq!).seen, prompt.length + 1);
    accounted(conv, delivered);
    sched.release(conv);
  } finally {
    held.hold = false;
    if (held.holding) held.release();
    await sched.close();
  }
});

Deno.test("scheduler lifecycle: a job outside the running step (paused, or queued) is cancelled at once", async () => {
  const { held, sched, prompt, start } = await setup();
  const convs = [new Conversation({}), new Conversation({}), new Conversation({})];
  try {
    const running = start(convs[0], []);
    const paused = start(convs[1], [], undefined, true);
    await held.nextHeld();
    const queued = start(convs[2], []); // submitted while the step runs
    assert.equal(convs[2].job!.status, "queued");
    paused.cancel("client");
    queued.cancel("client");
    for (const j of [paused, queued]) {
      const r = await settledWithin(j.done, 2000);
      assert.equal(r?.reason, "cancelled", "ended while the step is still held");
      assert.equal(r.promptTokens, 0);
    }
    assert.ok(held.holding);
    assert.deepEqual(convs[2].pending, prompt, "the queued prompt stays pending");
    running.cancel("client");
    held.release();
    assert.equal((await running.done).reason, "cancelled");
  } finally {
    held.hold = false;
    if (held.holding) held.release();
    for (const c of convs) sched.release(c);
    await sched.close();
  }
});

Deno.test("scheduler lifecycle: cancels from token callbacks, routed or not yet routed, lose and repeat nothing", async () => {
  const { held, sched, start, accounted } = await setup();
  held.hold = false;
  try {
    // A and B decode in the same steps; at its third token each cancels the other, so the one routed
    // first in that step cancels the other before its item is routed. C cancels itself (routed).
    const [a, b, c] = [new Conversation({}), new Conversation({}), new Conversation({})];
    const da: number[] = [], db: number[] = [], dc: number[] = [];
    const handles: { cancel(d?: string): void }[] = [];
    const ja = start(a, da, (n) => n === 3 && handles[1].cancel("by a"));
    const jb = start(b, db, (n) => n === 3 && handles[0].cancel("by b"));
    handles.push(ja, jb);
    const jc = start(c, dc, (n) => n === 3 && jc.cancel("self"));
    const [ra, rb, rc] = await Promise.all([ja.done, jb.done, jc.done]);
    const reasons = [ra.reason, rb.reason].sort();
    assert.deepEqual(reasons, ["cancelled", "length"], "exactly one of A and B was cancelled");
    const [cancelled, d] = ra.reason === "cancelled" ? [a, da] : [b, db];
    assert.equal(d.length, 2, "its third token was dropped");
    assert.deepEqual(cancelled.pending, [], "its second token was fed by the cancelled step");
    assert.equal(rc.reason, "cancelled");
    assert.equal(dc.length, 3);
    assert.deepEqual(c.pending, [dc[2]], "a delivered token not fed yet stays pending");
    accounted(a, da);
    accounted(b, db);
    accounted(c, dc);
    for (const conv of [a, b, c]) sched.release(conv);
  } finally {
    await sched.close();
  }
});
