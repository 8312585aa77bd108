/**
 * A chat completion cut short by a shutdown says so: 503 `server_shutting_down` (JSON), or that
 * error object as the last event before `[DONE]` (SSE); never a quiet `finish_reason: "stop"`.
 * Greedy stories260K does not emit EOS in thousands of tokens, so the completions are still
 * running when `gw.shutdown()` is called.
 */
import assert from "node:assert/strict";
import { startGateway, type TestGateway } from "../_gateway.ts";

function post(g: TestGateway, stream: boolean): Promise<Response> {
  return fetch(`${g.http}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: "Tell me a very long story" }],
      max_tokens: 1_000_000,
      temperature: 0,
      stream,
    }),
  });
}

async function generating(g: TestGateway): Promise<void> {
  while (g.gw.metrics.generationTokens.value < 10) await new Promise((r) => setTimeout(r, 2));
}

Deno.test("http shutdown: a JSON completion cut short gets 503 server_shutting_down", async () => {
  const g = await startGateway();
  const res = post(g, false);
  await generating(g);
  const shutdown = g.gw.shutdown();
  const r = await res;
  assert.equal(r.status, 503);
  const { error } = await r.json();
  assert.equal(error.code, "server_shutting_down");
  assert.equal(error.type, "server_error");
  await shutdown;
});

Deno.test("http shutdown: an SSE completion cut short ends with an error event, then [DONE]", async () => {
  const g = await startGateway();
  const r = await post(g, true);
  assert.equal(r.status, 200);
  const body = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  // Shut down once the client has read a few chunks (tokens counted by the scheduler may not all be
  // text yet: the detokenizer holds back partial characters).
  let text = "";
  while (text.split("data: ").length <= 12) text += (await body.read()).value ?? "";
  const shutdown = g.gw.shutdown();
  for (let part = await body.read(); !part.done; part = await body.read()) text += part.value;
  await shutdown;
  const events = text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
  assert.equal(events.at(-1), "[DONE]");
  const last = JSON.parse(events.at(-2)!);
  assert.equal(last.error?.code, "server_shutting_down", events.at(-2));
  const chunks = events.slice(0, -2).map((e) => JSON.parse(e));
  assert.ok(chunks.length > 10, "text was streamed before the shutdown");
  assert.ok(chunks.every((ch) => ch.choices[0].finish_reason === null), "no finish_reason");
});
