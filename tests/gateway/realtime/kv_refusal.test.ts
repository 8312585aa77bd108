/**
 * Over the KV budget, a Realtime `response.create` gets a `server_busy` error event and the session
 * stays open (unlike a connection over `--max-sessions`, closed with 1013): the client keeps its
 * items and may retry once memory frees up, and the retry answers the items it added before.
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";

Deno.test("realtime kv budget: a refused response keeps the session open and its items; a retry answers them", async () => {
  // Room for one conversation of the model's full context (512 tokens x 1280 B = 640 KiB < 1 MiB).
  const g = await startGateway({ kvBudgetMb: 1, sessionTtl: 0 });
  try {
    const a = await WsClient.open(g.ws);
    await a.next("session.created");
    assert.equal((await a.turn("Hello", { max_output_tokens: 2 })).response.status, "incomplete");

    const b = await WsClient.open(g.ws);
    await b.next("session.created");
    b.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hi" }] },
    });
    b.send({ type: "response.create", event_id: "evt_busy" });
    const e = await b.next("error");
    assert.equal(e.error.code, "server_busy");
    assert.equal(e.error.type, "server_error");
    assert.equal(e.error.event_id, "evt_busy");
    b.send({ type: "session.update", session: { instructions: "" } });
    await b.next("session.updated");
    assert.equal(b.ws.readyState, WebSocket.OPEN, "still open");

    await a.close(); // frees A's reservation (TTL 0)
    while (g.gw.scheduler.reservedBytes > 0) await new Promise((r) => setTimeout(r, 2));
    b.send({ type: "response.create", response: { max_output_tokens: 3 } });
    const d = await b.next("response.done");
    assert.equal(d.response.status, "incomplete");
    const hi = g.gw.ctx.renderer.encodeTurn([{ role: "user", content: "Hi" }], true).length;
    assert.equal(d.response.usage.input_tokens, hi, "the retry answers the item added before the refusal");
    await b.close();
  } finally {
    await g.close();
  }
});
