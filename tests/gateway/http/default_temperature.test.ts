/**
 * One default temperature for both front ends (`--temperature`, SINKSTREAM_TEMPERATURE, config key
 * `temperature`; default 0 = greedy): a chat completion and a Realtime response that set none
 * sample at that temperature, and the same prompt gives the same text on both.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../../gateway/config/config.ts";
import { startGateway, type TestGateway, WsClient } from "../_gateway.ts";

const PROMPT = "Once upon a time";

async function completion(g: TestGateway, extra: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${g.http}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: PROMPT }], max_tokens: 16, ...extra }),
  });
  assert.equal(r.status, 200);
  return (await r.json()).choices[0].message.content;
}

async function realtime(g: TestGateway, sinkstream: Record<string, unknown>) {
  const c = await WsClient.open(g.ws);
  const created = await c.next("session.created");
  c.send({ type: "session.update", session: { sinkstream } });
  await c.next("session.updated");
  const done = await c.turn(PROMPT, { max_output_tokens: 16 });
  await c.close();
  return { temperature: created.session.temperature, text: done.response.output[0].content[0].text };
}

Deno.test("default temperature: flag, environment and config key; default 0", () => {
  assert.equal(loadConfig({}).config.temperature, 0);
  assert.equal(loadConfig({ args: ["--temperature", "0.7"] }).config.temperature, 0.7);
  assert.equal(loadConfig({ env: { SINKSTREAM_TEMPERATURE: "1" } }).config.temperature, 1);
  assert.equal(
    loadConfig({ args: ["--config", "c.json"], readFile: () => '{"temperature": 1.2}' }).config.temperature,
    1.2,
  );
  assert.throws(() => loadConfig({ args: ["--temperature", "3"] }), /--temperature/);
});

Deno.test("default temperature: 0 on both front ends; a completion without one is greedy, like a Realtime response", async () => {
  const g = await startGateway();
  try {
    const greedy = await completion(g, { temperature: 0 });
    assert.equal(await completion(g, {}), greedy);
    const rt = await realtime(g, {});
    assert.equal(rt.temperature, 0);
    assert.equal(rt.text, greedy);
  } finally {
    await g.close();
  }
});

Deno.test("default temperature: the configured one applies to both front ends", async () => {
  const g = await startGateway({ temperature: 1.5 });
  try {
    const greedy = await completion(g, { temperature: 0 });
    const sampled = await completion(g, { seed: 7 });
    assert.notEqual(sampled, greedy);
    assert.equal(await completion(g, { seed: 7, temperature: 1.5 }), sampled);
    const rt = await realtime(g, { seed: 7 });
    assert.equal(rt.temperature, 1.5);
    assert.equal(rt.text, sampled);
  } finally {
    await g.close();
  }
});
