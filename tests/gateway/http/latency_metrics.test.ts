/**
 * Latency instrumentation in /metrics: engine step time, per-token gateway-added latency (step
 * resolved -> frame handed to the socket), scheduler overhead per iteration. Counts must match
 * what happened: one step-time and one overhead observation per step, one latency observation per
 * delta frame sent (WebSocket) or per SSE content chunk.
 */
import assert from "node:assert/strict";
import { parsePrometheus, type Sample } from "../../../bench/lib.ts";
import { startGateway, WsClient } from "../_gateway.ts";

function value(samples: Sample[], name: string): number {
  const s = samples.find((x) => x.name === name && Object.keys(x.labels).length === 0);
  return s ? s.value : NaN;
}

Deno.test("metrics: engine_step_seconds, gateway_token_latency_seconds, scheduler_overhead_seconds", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    const done = await c.turn("Once upon a time", { max_output_tokens: 12 });
    assert.equal(done.response.status, "incomplete");
    const deltas = c.events.filter((e) => e.type === "response.output_text.delta").length;
    const text = await (await fetch(`${g.http}/metrics`)).text();
    for (
      const fam of [
        "sinkstream:engine_step_seconds histogram",
        "sinkstream:gateway_token_latency_seconds histogram",
        "sinkstream:scheduler_overhead_seconds histogram",
      ]
    ) assert.ok(text.includes(`# TYPE ${fam}`), fam);
    const m = parsePrometheus(text);
    const steps = value(m, "sinkstream:engine_steps_total");
    assert.ok(steps >= 12);
    assert.equal(value(m, "sinkstream:engine_step_seconds_count"), steps);
    assert.equal(value(m, "sinkstream:scheduler_overhead_seconds_count"), steps);
    // One observation per delta frame (stories260K's tokens are whole characters, so the end-of-response
    // flush, which is not tied to a step and not observed, sends nothing).
    assert.equal(value(m, "sinkstream:gateway_token_latency_seconds_count"), deltas);
    const stepSum = value(m, "sinkstream:engine_step_seconds_sum");
    assert.ok(stepSum > 0);
    // What the gateway adds per token is far below a step on this tiny model... but is measured.
    const lat = value(m, "sinkstream:gateway_token_latency_seconds_sum") / deltas;
    assert.ok(lat > 0 && lat < 0.05, `gateway latency ${lat}`);
    // Fine buckets around 10 us .. 10 ms.
    const les = m.filter((s) => s.name === "sinkstream:gateway_token_latency_seconds_bucket").map((s) =>
      Number(s.labels.le)
    );
    assert.ok(les.includes(1e-5) && les.includes(0.001) && les.includes(0.01));
    assert.ok(les.filter((x) => x >= 1e-5 && x <= 0.01).length >= 20);

    // SSE: one observation per content chunk written.
    const before = value(m, "sinkstream:gateway_token_latency_seconds_count");
    const r = await fetch(`${g.http}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 6, stream: true }),
    });
    const body = await r.text();
    const chunks = body.split("\n\n").filter((l) => l.startsWith("data: {")).map((l) =>
      JSON.parse(l.slice(6))
    );
    const content = chunks.filter((ch) => ch.choices?.[0]?.delta?.content).length;
    const m2 = parsePrometheus(await (await fetch(`${g.http}/metrics`)).text());
    const added = value(m2, "sinkstream:gateway_token_latency_seconds_count") - before;
    assert.ok(added >= content - 1 && added <= content, `added ${added}, content chunks ${content}`);
    await c.close();
  } finally {
    await g.close();
  }
});
