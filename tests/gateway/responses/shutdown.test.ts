/**
 * A shutdown while a streamed Responses API response runs: its stream ends with `response.failed` (the
 * server shut down), every sequence is freed, nothing is left running (the test's sanitizers would say).
 */
import assert from "node:assert/strict";
import { startGateway } from "../_gateway.ts";

Deno.test("responses: shutdown during a stream ends it with response.failed and frees every sequence", async () => {
  const g = await startGateway();
  const r = await fetch(`${g.http}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ input: "Once upon a time", max_output_tokens: 100_000, stream: true }),
  });
  const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("response.output_text.delta")) text += (await reader.read()).value ?? "";
  const closing = g.close();
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  await closing;
  const last = JSON.parse(text.trim().split("\n").at(-1)!.replace(/^data: /, ""));
  assert.equal(last.type, "response.failed");
  assert.equal(last.response.status, "failed");
  assert.match(last.response.error.message, /shut down/);
  assert.equal(g.gw.scheduler.liveConversations, 0);
  assert.equal(g.gw.responses.liveChains, 0);
});
