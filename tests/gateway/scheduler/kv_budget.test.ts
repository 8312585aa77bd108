/**
 * KV budget from the engine's own bytes per token (Engine.kvBytesPerToken), not an f32 guess:
 *  - the native engine's figure (from the C backend) is what a full cache really holds per token:
 *    the KV memory a sequence filled to capacity reports, divided by its capacity;
 *  - the scheduler uses the engine's figure: with an engine that stores f16 (as the CUDA backend
 *    does: half the bytes) the same budget admits twice as many sequences, and the next one gets
 *    server_busy (WebSocket and HTTP 429).
 */
import assert from "node:assert/strict";
import { createApp } from "../../../gateway/app.ts";
import { ConfigSchema } from "../../../gateway/config/config.ts";
import { Scheduler } from "../../../gateway/scheduler/scheduler.ts";
import { sharedEngine, WsClient } from "../_gateway.ts";
import { DelegatingEngine } from "./_delegating_engine.ts";

/** The real engine, reporting another KV element size (what a CUDA fp16 engine would). */
class HalfKvEngine extends DelegatingEngine {
  override get kvBytesPerToken() {
    return this.inner.kvBytesPerToken! / 2;
  }
}

Deno.test("kv budget: the engine's KV bytes per token is what a full cache holds; the scheduler uses it", async () => {
  const { engine } = await sharedEngine();
  const capacity = 48;
  const seq = engine.createSequence({ policy: "window", capacity });
  try {
    const [r] = await engine.step([{
      seq,
      tokens: Array.from({ length: capacity + 5 }, (_, k) => 3 + k),
      sample: false,
    }]);
    assert.equal(r.error, undefined);
    const st = engine.stats(seq);
    assert.equal(st.cached, capacity);
    assert.ok(st.bytes > 0);
    assert.equal(engine.kvBytesPerToken, st.bytes / capacity);
  } finally {
    engine.freeSequence(seq);
  }
  const i = engine.info;
  assert.equal(engine.kvBytesPerToken, 2 * i.nLayers * i.nKvHeads * i.headDim * 4); // CPU cache: f32 K and V
  const sched = new Scheduler(new HalfKvEngine(engine));
  assert.equal(sched.bytesPerToken, engine.kvBytesPerToken! / 2);
  await sched.close();
});

Deno.test("kv budget: sessions over the budget get server_busy (budget from the engine's figure)", async () => {
  const { engine, tokenizer } = await sharedEngine();
  const half = new HalfKvEngine(engine);
  const perSession = engine.info.maxSeqLen * half.kvBytesPerToken; // default window = maxSeqLen
  const budgetMb = 1;
  const fit = Math.floor((budgetMb * 1024 * 1024) / perSession);
  // With an f32 assumption only half as many would fit: the test tells the two apart.
  assert.ok(fit >= 2 && Math.floor((budgetMb * 1024 * 1024) / (2 * perSession)) < fit, `fit ${fit}`);
  const config = ConfigSchema.parse({ port: 0, modelName: "stories260K", kvBudgetMb: budgetMb });
  const gw = createApp({ engine: half, tokenizer, config, web: false });
  const server = gw.serve({ hostname: "127.0.0.1", port: 0 });
  const ws = `ws://127.0.0.1:${server.addr.port}/v1/realtime`;
  const clients: WsClient[] = [];
  try {
    for (let k = 0; k < fit + 1; k++) {
      const c = await WsClient.open(ws);
      await c.next("session.created");
      clients.push(c);
    }
    for (let k = 0; k < fit; k++) {
      const d = await clients[k].turn("Hello", { max_output_tokens: 2 });
      assert.equal(d.response.status, "incomplete", `session ${k}`);
    }
    assert.equal(gw.scheduler.reservedBytes, fit * perSession);
    const over = clients[fit];
    over.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hi" }] },
    });
    over.send({ type: "response.create" });
    assert.equal((await over.next("error")).error.code, "server_busy");
    const r = await fetch(`http://127.0.0.1:${server.addr.port}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "x" }], max_tokens: 2 }),
    });
    assert.equal(r.status, 429);
    assert.equal((await r.json()).error.code, "server_busy");
  } finally {
    for (const c of clients) await c.close();
    await gw.shutdown();
  }
});
