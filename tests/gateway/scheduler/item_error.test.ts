/**
 * Per-item failures (StepResult.error): an item the engine failed alone (e.g. a dense conversation
 * that outgrew its capacity) finishes only its own job, with that error; the other items of the
 * step are routed as usual. The failure source is simulated: the real engine runs every step
 * without the failing item and the wrapper reports that item failed, as the engine contract says
 * (nothing of it fed, its sequence unchanged).
 */
import assert from "node:assert/strict";
import { ContextFullError } from "../../../runtime/errors.ts";
import type { StepItem, StepResult } from "../../../runtime/types.ts";
import { Conversation, Scheduler } from "../../../gateway/scheduler/scheduler.ts";
import { sharedEngine } from "../_gateway.ts";
import { DelegatingEngine } from "./_delegating_engine.ts";

class FailingItemEngine extends DelegatingEngine {
  readonly error = new ContextFullError("the sequence has no room left (simulated)");
  /** Fails the items it says true for. */
  failIf: (item: StepItem) => boolean = () => false;
  /** Items that shared the step with each failed item. */
  neighbours: number[] = [];

  override async step(items: StepItem[]): Promise<StepResult[]> {
    const failed = items.map((it) => this.failIf(it));
    for (const f of failed) if (f) this.neighbours.push(items.length - 1);
    const ran = await this.inner.step(items.filter((_, i) => !failed[i]));
    let k = 0;
    return items.map((_, i) => failed[i] ? { token: -1, error: this.error } : ran[k++]);
  }
}

const MAX = 24;

for (const failAt of [1, 4]) {
  const what = failAt === 1 ? "its prefill chunk" : "a decode token";
  Deno.test(`scheduler: when ${what} fails alone, only that job ends (error), the others are unchanged`, async () => {
    const { engine, tokenizer } = await sharedEngine();
    const wrapped = new FailingItemEngine(engine);
    const sched = new Scheduler(wrapped);
    const encode = (text: string) => [tokenizer.bosId, ...tokenizer.encode(text, { bos: false })];
    const promptA = encode("Tom had a red ball.");
    const promptB = encode("Lily went to the park.");
    const submit = (conv: Conversation, prompt: number[], out: number[]) =>
      sched.submit(conv, {
        prompt,
        maxTokens: MAX,
        sampling: { temperature: 0 },
        stopTokens: new Set(),
        onToken: (t) => void out.push(t),
      });
    try {
      // B alone: the reference.
      const solo = new Conversation({});
      const soloTokens: number[] = [];
      assert.equal((await submit(solo, promptB, soloTokens).done).reason, "length");
      sched.release(solo);

      // A and B together; A's item fails in A's `failAt`-th step (1: the prefill, 4: the third decode).
      const a = new Conversation({});
      const b = new Conversation({});
      let aSteps = 0;
      wrapped.failIf = (it) => it.seq === a.seq && ++aSteps === failAt;
      const tokensA: number[] = [], tokensB: number[] = [];
      const [ra, rb] = await Promise.all([
        submit(a, promptA, tokensA).done,
        submit(b, promptB, tokensB).done,
      ]);

      assert.deepEqual(wrapped.neighbours, [1], "the failing item shared its step with B's");
      assert.equal(ra.reason, "error");
      assert.equal(ra.error, wrapped.error);
      const delivered = failAt - 1;
      assert.equal(ra.outputTokens, delivered);
      assert.equal(tokensA.length, delivered);
      // Nothing of the failed item was fed: what it carried is still pending.
      const fedPrompt = failAt === 1 ? 0 : promptA.length;
      assert.equal(ra.promptTokens, fedPrompt);
      assert.deepEqual(a.pending, failAt === 1 ? promptA : [tokensA.at(-1)]);
      assert.equal(engine.stats(a.seq!).seen, fedPrompt + Math.max(0, delivered - 1));

      assert.equal(rb.reason, "length");
      assert.equal(rb.error, undefined);
      assert.deepEqual(tokensB, soloTokens, "B's greedy tokens are those it gets alone");
      sched.release(a);
      sched.release(b);
    } finally {
      await sched.close();
    }
  });
}
