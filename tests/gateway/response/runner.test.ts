/**
 * The response runner's stages against a real gateway's scheduler and engine: a turn that cannot be
 * rendered, a refusal, and a failure of the runner's own caller (a sink that throws) all end the run
 * with a typed outcome instead of a rejected promise, and leave no job running.
 */
import assert from "node:assert/strict";
import { type ChatMessage, EncoderBusyError } from "../../../gateway/chat/template.ts";
import { ResponseRun, type ResponseSink, type TurnRenderer } from "../../../gateway/response/runner.ts";
import { Conversation } from "../../../gateway/scheduler/scheduler.ts";
import { startGateway, type TestGateway } from "../_gateway.ts";

const MESSAGES: ChatMessage[] = [{ role: "user", content: "Once upon a time" }];

function run(g: TestGateway, sink: ResponseSink, renderer: TurnRenderer = g.gw.ctx.renderer) {
  const conv = new Conversation({});
  const r = new ResponseRun({ ...g.gw.ctx, renderer }, {
    conv,
    messages: MESSAGES,
    first: true,
    maxTokens: 1000,
    sampling: { temperature: 0 },
  }, sink);
  return { conv, r };
}

Deno.test("response runner: render failure, refusal and a throwing sink end as typed outcomes", async () => {
  const g = await startGateway();
  try {
    // The render stage fails: `invalid`, nothing submitted.
    const real = g.gw.ctx.renderer;
    const failing: TurnRenderer = {
      usesTemplate: real.usesTemplate,
      encodeTurn: () => {
        throw new Error("template raised");
      },
      encodeTurnAsync: () => Promise.reject(new Error("template raised")),
      close: () => {},
    };
    const bad = run(g, { onText: () => true }, failing);
    assert.deepEqual(await bad.r.started, { kind: "invalid", message: "template raised" });
    assert.equal((await bad.r.done).kind, "invalid");
    assert.equal(bad.conv.started, false);

    // The off-thread encoder has no room: a refusal the client may retry (server_busy), nothing taken.
    const full: TurnRenderer = {
      ...failing,
      encodeTurnAsync: () => Promise.reject(new EncoderBusyError("the tokenizer worker queue is full")),
    };
    const busy = run(g, { onText: () => true }, full);
    const refused = await busy.r.started;
    assert.equal(refused?.kind === "refused" && refused.code, "server_busy");
    assert.equal(busy.conv.started, false);

    // The sink throws when the response starts: the job is cancelled, the run ends failed.
    const texts: string[] = [];
    const thrown = run(g, {
      onStart: () => {
        throw new Error("sink broke");
      },
      onText: (t) => texts.push(t) > 0,
    });
    assert.equal(await thrown.r.started, null);
    const o = await thrown.r.done;
    assert.equal(o.kind, "finished");
    assert.equal(o.kind === "finished" && o.reason, "error");
    assert.equal(o.kind === "finished" && o.error?.message, "sink broke");
    while (thrown.conv.job !== null) await new Promise((r) => setTimeout(r, 2));
    assert.ok(texts.length <= 1, "the job ended within a step");
    g.gw.scheduler.release(thrown.conv);

    // After close, a submit is refused as shutting down.
    await g.gw.scheduler.close();
    const late = run(g, { onText: () => true });
    const why = await late.r.started;
    assert.equal(why?.kind === "refused" && why.code, "server_shutting_down");
  } finally {
    await g.close();
  }
});
