/**
 * A client that goes away cancels its /v1/chat/completions generation (the request's AbortSignal),
 * streaming or not: real fetch + AbortController against the real gateway; the scheduler's state
 * and /metrics show the job ended long before max_tokens. Greedy stories260K does not emit EOS in
 * thousands of tokens, so without the abort these would run for minutes.
 */
import assert from "node:assert/strict";
import { startGateway, type TestGateway } from "../_gateway.ts";

const MAX = 1_000_000;

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function metric(g: TestGateway, name: string): Promise<number> {
  const text = await (await fetch(`${g.http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

function post(g: TestGateway, stream: boolean, signal: AbortSignal): Promise<Response> {
  return fetch(`${g.http}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: "Tell me a very long story" }],
      max_tokens: MAX,
      temperature: 0,
      stream,
    }),
    signal,
  });
}

for (const stream of [false, true]) {
  Deno.test(`http: dropping a ${stream ? "streaming" : "non-streaming"} completion cancels it`, async () => {
    const g = await startGateway();
    const m = g.gw.metrics;
    try {
      const ac = new AbortController();
      const res = post(g, stream, ac.signal).catch((e) => e);
      if (stream) {
        const r = await res as Response;
        assert.equal(r.status, 200);
        const reader = r.body!.getReader();
        await reader.read(); // the role chunk: generation is under way
      }
      await until(() => m.generationTokens.value > 20, "generation to start");
      assert.equal(g.gw.ctx.admission.completions, 1);
      assert.equal(m.running.value, 1);
      ac.abort();
      if (!stream) assert.ok((await res) instanceof Error, "the fetch rejects on abort");
      await until(() => g.gw.ctx.admission.completions === 0, "the job to end after the abort");
      assert.equal(m.cancelled.value, 1);
      assert.equal(g.gw.scheduler.liveConversations, 0);
      const generated = await metric(g, "sinkstream:generation_tokens_total");
      assert.ok(generated < MAX, `generated ${generated}`);
      assert.equal(await metric(g, "sinkstream:requests_cancelled_total"), 1);
      assert.equal(await metric(g, "sinkstream:num_requests_running"), 0);
      // Nothing more is generated once it ended.
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(m.generationTokens.value, generated);
    } finally {
      await g.close();
    }
  });
}
