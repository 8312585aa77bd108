/**
 * Cancel during prefill: the user item was added, so it stays part of the conversation. The unfed
 * rest of the prompt is kept pending and fed first next turn (like a cut-off response's last token):
 * the next turn's input_tokens and the cache's seen_tokens account for the whole first prompt.
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";

Deno.test("realtime: a cancel mid-prompt keeps the rest of the prompt pending for the next turn", async () => {
  // Small prefill chunks: the long prompt takes hundreds of steps, so the cancel lands mid-prefill.
  const g = await startGateway({ prefillChunk: 4 });
  try {
    const renderer = g.gw.ctx.renderer;
    const long = "Once upon a time there was a little girl named Lily who liked to play outside. ".repeat(30);
    const next = "The end.";
    const p1 = renderer.encodeTurn([{ role: "user", content: long }], true).length;
    const p2 = renderer.encodeTurn([{ role: "user", content: next }], false).length;
    assert.ok(p1 > 400, `prompt of ${p1} tokens`);

    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: long }] },
    });
    c.send({ type: "response.create", response: { max_output_tokens: 8 } });
    await c.next("response.created");
    await new Promise((r) => setTimeout(r, 3));
    c.send({ type: "response.cancel" });
    const d1 = await c.next("response.done");
    assert.equal(d1.response.status, "cancelled");
    const in1 = d1.response.usage.input_tokens;
    assert.equal(d1.response.usage.output_tokens, 0, "cancelled before the prompt was fed");
    assert.ok(in1 < p1, `cancel landed after the prefill (${in1} of ${p1} fed)`);
    console.log(`cancelled after ${in1} of ${p1} prompt tokens`);
    assert.equal(d1.response.usage.sinkstream.seen_tokens, in1);

    const d2 = await c.turn(next, { max_output_tokens: 3 });
    assert.equal(d2.response.status, "incomplete");
    const u2 = d2.response.usage;
    // The unfed rest of turn 1 is fed first, then turn 2.
    assert.equal(u2.input_tokens, p1 - in1 + p2);
    // Everything is in the cache's stream: whole prompt 1, prompt 2, the answer but its last token
    // (delivered, fed first next turn).
    assert.equal(u2.sinkstream.seen_tokens, p1 + p2 + u2.output_tokens - 1);
    await c.close();
  } finally {
    await g.close();
  }
});
