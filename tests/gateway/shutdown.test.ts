/** Graceful shutdown: in-flight responses end with a final event, every sequence is freed. */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "./_gateway.ts";

Deno.test("shutdown: running realtime + SSE responses get final events, every sequence freed", async () => {
  const g = await startGateway();
  const c = await WsClient.open(g.ws);
  await c.next("session.created");
  c.send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text: "Tell me a long story" }] },
  });
  c.send({ type: "response.create", response: { max_output_tokens: "inf" } });
  await c.next("response.output_text.delta");
  const idle = await WsClient.open(g.ws);
  await idle.next("session.created");

  const sse = await fetch(`${g.http}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "Go" }], max_tokens: 100000, stream: true }),
  });
  const reader = sse.body!.getReader();
  await reader.read();

  const shutdown = g.gw.shutdown();
  const done = await c.next("response.done");
  assert.equal(done.response.status, "cancelled");
  assert.equal(done.response.status_details.reason, "server_shutdown");
  assert.equal((await c.closed).code, 1001);
  assert.equal((await idle.closed).code, 1001);
  let body = "";
  const dec = new TextDecoder();
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    body += dec.decode(value);
  }
  assert.ok(body.trimEnd().endsWith("data: [DONE]"));
  // Cut short by the shutdown: an error event before [DONE], not a quiet finish_reason "stop".
  assert.match(body, /"code":"server_shutting_down"/);
  assert.doesNotMatch(body, /"finish_reason":"stop"/);
  await shutdown;
  assert.equal(g.gw.scheduler.liveConversations, 0);
  assert.equal(g.gw.metrics.sequences.value, 0);
  assert.equal(g.gw.sessions.sessions.size, 0);
});
