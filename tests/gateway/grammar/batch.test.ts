/**
 * A constrained and an unconstrained response in the same batched steps: the unconstrained one's greedy
 * tokens are exactly those it gives alone (masks are per item), the constrained one's text is valid JSON
 * under its schema, and the two really shared steps (one item with a mask, one without).
 */
import assert from "node:assert/strict";
import type { StepItem, StepResult } from "../../../runtime/types.ts";
import { Grammars } from "../../../gateway/grammar/grammars.ts";
import { Conversation, Scheduler } from "../../../gateway/scheduler/scheduler.ts";
import { sharedEngine } from "../_gateway.ts";
import { DelegatingEngine } from "../scheduler/_delegating_engine.ts";
import { assertValid, PET_SCHEMA } from "./_schemas.ts";

/** Counts the steps that held both a masked and an unmasked sampling item. */
class MixCountingEngine extends DelegatingEngine {
  mixed = 0;
  override step(items: StepItem[]): Promise<StepResult[]> {
    const sampling = items.filter((it) => it.sample !== false);
    if (sampling.some((it) => it.mask) && sampling.some((it) => !it.mask)) this.mixed++;
    return this.inner.step(items);
  }
}

Deno.test("batch: an unconstrained neighbour of a constrained response gives its greedy tokens unchanged", async () => {
  const { engine, tokenizer } = await sharedEngine();
  const counting = new MixCountingEngine(engine);
  const sched = new Scheduler(counting);
  const grammars = await Grammars.create(tokenizer, engine.info.vocabSize);
  const encode = (text: string) => [tokenizer.bosId, ...tokenizer.encode(text, { bos: false })];
  const free = (conv: Conversation, out: number[]) =>
    sched.submit(conv, {
      prompt: encode("Lily went to the park."),
      maxTokens: 60,
      sampling: { temperature: 0 },
      stopTokens: new Set([tokenizer.eosId]),
      onToken: (t) => void out.push(t),
    });
  try {
    const alone: number[] = [];
    const soloConv = new Conversation({});
    await free(soloConv, alone).done;
    sched.release(soloConv);
    assert.ok(alone.length > 20);

    for (const temperature of [0, 1]) {
      const constraint = await grammars.constraint({
        type: "json_schema",
        name: "pet",
        schema: PET_SCHEMA,
        strict: true,
      });
      const json: number[] = [];
      const a = new Conversation({});
      const b = new Conversation({});
      const together: number[] = [];
      const before = counting.mixed;
      const [ra, rb] = await Promise.all([
        sched.submit(a, {
          prompt: encode("Tom had a red ball."),
          maxTokens: 400,
          sampling: { temperature, seed: 9 },
          stopTokens: new Set([tokenizer.eosId]),
          mask: () => constraint.nextMask(Infinity),
          onToken: (t) => {
            json.push(t);
            return constraint.accept(t);
          },
        }).done,
        free(b, together).done,
      ]);
      constraint.dispose();
      sched.release(a);
      sched.release(b);
      assert.equal(ra.reason, "stop", "the constrained response ended when its JSON was complete");
      assertValid(
        tokenizer.decode(json).trim(),
        PET_SCHEMA,
        `constrained output (temperature ${temperature})`,
      );
      assert.equal(rb.reason, alone.length < 60 ? "stop" : "length");
      assert.deepEqual(together, alone, "the unconstrained tokens are those of the run alone");
      assert.ok(counting.mixed - before >= 10, `steps shared by both: ${counting.mixed - before}`);
    }
  } finally {
    grammars.close();
    await sched.close();
  }
});
