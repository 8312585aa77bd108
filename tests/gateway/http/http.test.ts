/** HTTP surface: health, readiness, metrics, errors, auth, origin, limits. */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";

Deno.test("http: healthz, readyz, models, metrics families", async () => {
  const g = await startGateway();
  try {
    assert.deepEqual(await (await fetch(`${g.http}/healthz`)).json(), { status: "ok" });
    const ready = await fetch(`${g.http}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((await ready.json()).model, "stories260K");
    // Some traffic so histograms have samples.
    const r = await fetch(`${g.http}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 5 }),
    });
    assert.equal(r.status, 200);
    await r.json();
    const res = await fetch(`${g.http}/metrics`);
    assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
    const text = await res.text();
    for (
      const fam of [
        "sinkstream:num_requests_running gauge",
        "sinkstream:num_requests_waiting gauge",
        "sinkstream:prompt_tokens_total counter",
        "sinkstream:generation_tokens_total counter",
        "sinkstream:time_to_first_token_seconds histogram",
        "sinkstream:inter_token_latency_seconds histogram",
        "sinkstream:kv_cache_usage_perc gauge",
        "sinkstream:cache_evictions_total counter",
        "sinkstream:iteration_tokens histogram",
        "sinkstream:batch_size gauge",
      ]
    ) assert.ok(text.includes(`# TYPE ${fam}`), fam);
    assert.match(text, /^sinkstream:generation_tokens_total 5$/m);
    assert.match(text, /^sinkstream:time_to_first_token_seconds_count 1$/m);
    assert.match(text, /^sinkstream:inter_token_latency_seconds_count 4$/m);
  } finally {
    await g.close();
  }
});

Deno.test("http: bad requests get 4xx JSON errors in OpenAI's shape", async () => {
  const g = await startGateway();
  try {
    const post = (body: string) =>
      fetch(`${g.http}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
    const cases: [string, number, string][] = [
      ["{", 400, "invalid_json"],
      [JSON.stringify({ messages: [] }), 400, "invalid_value"],
      [
        JSON.stringify({ messages: [{ role: "user", content: "x" }], temperature: "warm" }),
        400,
        "invalid_value",
      ],
      [JSON.stringify({ messages: [{ role: "user", content: "x" }], max_tokens: 0 }), 400, "invalid_value"],
      [
        JSON.stringify({ model: "gpt-9", messages: [{ role: "user", content: "x" }] }),
        404,
        "model_not_found",
      ],
      // Over --max-body-bytes (default 1 MiB): refused before parsing, nothing generated.
      [
        JSON.stringify({ messages: [{ role: "user", content: "a".repeat(2 << 20) }] }),
        413,
        "request_too_large",
      ],
    ];
    for (const [body, status, code] of cases) {
      const r = await post(body);
      assert.equal(r.status, status, body);
      const j = await r.json();
      assert.equal(j.error.code, code, body);
      assert.equal(typeof j.error.message, "string");
    }
    const nf = await fetch(`${g.http}/v1/nothing`);
    assert.equal(nf.status, 404);
    assert.equal((await nf.json()).error.code, "not_found");
    const plain = await fetch(`${g.http}/v1/realtime`);
    assert.equal(plain.status, 426);
    await plain.body?.cancel();
  } finally {
    await g.close();
  }
});

Deno.test("auth and origin: bearer header, realtime subprotocol key, bad origin", async () => {
  const g = await startGateway({ apiKeys: ["k1", "k2"], allowedOrigins: ["https://chat.example"] });
  try {
    const models = (h: Record<string, string>) => fetch(`${g.http}/v1/models`, { headers: h });
    let r = await models({});
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.code, "invalid_api_key");
    r = await models({ authorization: "Bearer nope" });
    assert.equal(r.status, 401);
    await r.body?.cancel();
    r = await models({ authorization: "Bearer k2" });
    assert.equal(r.status, 200);
    await r.body?.cancel();
    r = await models({ authorization: "Bearer k1", origin: "https://evil.example" });
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error.code, "origin_not_allowed");
    r = await models({ authorization: "Bearer k1", origin: "https://chat.example" });
    assert.equal(r.status, 200);
    await r.body?.cancel();

    // WebSocket: the key as a subprotocol (what browsers and the SDK send); a bad key fails the handshake.
    const ok = await WsClient.open(g.ws, ["realtime", "openai-insecure-api-key.k1"]);
    assert.equal(ok.ws.protocol, "realtime");
    await ok.next("session.created");
    await ok.close();
    await assert.rejects(() => WsClient.open(g.ws, ["realtime", "openai-insecure-api-key.bad"]));
    await assert.rejects(() => WsClient.open(g.ws, ["realtime"]));
    // Health stays open without a key.
    assert.equal((await fetch(`${g.http}/healthz`)).status, 200);
  } finally {
    await g.close();
  }
});

Deno.test("limits: over max sessions a clear busy error, never a hang; KV budget busy", async () => {
  const g = await startGateway({ maxSessions: 2 });
  try {
    const a = await WsClient.open(g.ws);
    const b = await WsClient.open(g.ws);
    await a.next("session.created");
    await b.next("session.created");
    const c = await WsClient.open(g.ws);
    const e = await c.next("error");
    assert.equal(e.error.code, "server_busy");
    assert.equal((await c.closed).code, 1013);
    const r = await fetch(`${g.http}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "x" }] }),
    });
    assert.equal(r.status, 429);
    assert.equal((await r.json()).error.code, "server_busy");
    await a.close();
    await b.close();
  } finally {
    await g.close();
  }
  // KV budget: room for one 512-token sequence (5 layers * 4 kv heads * 8 dims * 2 * 4 B = 1280 B/token).
  const g2 = await startGateway({ kvBudgetMb: 1 });
  try {
    const clients = [];
    for (let i = 0; i < 2; i++) {
      const c = await WsClient.open(g2.ws);
      await c.next("session.created");
      clients.push(c);
    }
    const d = await clients[0].turn("Hello", { max_output_tokens: 2 });
    assert.equal(d.response.status, "incomplete");
    clients[1].send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hi" }] },
    });
    clients[1].send({ type: "response.create" });
    assert.equal((await clients[1].next("error")).error.code, "server_busy");
    for (const c of clients) await c.close();
  } finally {
    await g2.close();
  }
});
