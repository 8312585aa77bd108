/** Realtime protocol over a raw WebSocket against the real engine (stories260K). */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";

Deno.test("realtime: session.created, a round of text, bad input gets typed errors and the session goes on", async () => {
  const g = await startGateway({ maxFrameBytes: 4096 });
  try {
    const c = await WsClient.open(g.ws);
    assert.equal(c.ws.protocol, "realtime");
    const created = await c.next("session.created");
    assert.match(created.session.sinkstream.session_id, /^sess_/);
    assert.equal(created.session.sinkstream.resume_token.length, 48);

    const bad: [unknown, string][] = [
      ["{not json", "invalid_json"],
      [JSON.stringify({ type: "nope.nope", event_id: "e1" }), "unknown_event"],
      [
        JSON.stringify({ type: "input_audio_buffer.append", audio: "AAAA", event_id: "e2" }),
        "unsupported_event",
      ],
      [
        JSON.stringify({ type: "session.update", session: { temperature: "hot" }, event_id: "e3" }),
        "invalid_value",
      ],
      [
        JSON.stringify({ type: "conversation.item.create", item: { type: "message", role: "user" } }),
        "invalid_value",
      ],
      [JSON.stringify({ foo: 1 }), "invalid_event"],
      [JSON.stringify([1, 2]), "invalid_event"],
      // An oversized frame ends the socket (error event + close 1009): tests/gateway/server/ws_limits.test.ts.
      [JSON.stringify({ type: "response.cancel", event_id: "e4" }), "response_cancel_not_active"],
      [JSON.stringify({ type: "session.update", session: { sinkstream: { sinks: -1 } } }), "invalid_value"],
      [JSON.stringify({ type: "session.update", session: { sinkstream: { bogus: 1 } } }), "invalid_value"],
    ];
    for (const [frame, code] of bad) {
      c.send(frame as string);
      const e = await c.next("error");
      assert.equal(e.error.code, code, `frame ${String(frame).slice(0, 60)}`);
    }
    c.ws.send(new Uint8Array([1, 2, 3]));
    assert.equal((await c.next("error")).error.code, "binary_not_supported");
    // The offending client event_id comes back.
    c.send({ type: "nope", event_id: "evt_client_7" });
    assert.equal((await c.next("error")).error.event_id, "evt_client_7");

    // The session still works.
    c.send({
      type: "session.update",
      session: { type: "realtime", instructions: "Tell a story.", temperature: 0 },
    });
    const upd = await c.next("session.updated");
    assert.equal(upd.session.instructions, "Tell a story.");
    const done = await c.turn("Once upon a time", { max_output_tokens: 12 });
    assert.equal(done.response.status, "incomplete");
    assert.equal(done.response.status_details.reason, "max_output_tokens");
    assert.equal(done.response.usage.output_tokens, 12);
    const deltas = c.events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join(
      "",
    );
    const textDone = c.events.find((e) => e.type === "response.output_text.done");
    assert.equal(textDone!.text, deltas);
    assert.ok(deltas.length > 0);
    for (
      const t of [
        "conversation.item.added",
        "conversation.item.created",
        "response.created",
        "response.output_item.added",
        "response.output_item.done",
      ]
    ) assert.ok(c.events.some((e) => e.type === t), t);
    // A second response.create while one runs is refused.
    c.send({ type: "response.create", response: { max_output_tokens: 200 } });
    c.send({ type: "response.create" });
    assert.equal((await c.next("error")).error.code, "conversation_already_has_active_response");
    await c.next("response.done", 20_000);
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("realtime: multi-round keeps one sequence and prefills only the new turn", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send({ type: "session.update", session: { temperature: 0 } });
    const r1 = await c.turn("Lily had a red ball.", { max_output_tokens: 10 });
    const u1 = r1.response.usage;
    const renderer = g.gw.ctx.renderer;
    const t1 = renderer.encodeTurn([{ role: "user", content: "Lily had a red ball." }], true).length;
    assert.equal(u1.input_tokens, t1);
    assert.equal(u1.sinkstream.cached_tokens, t1 + 10 - 1); // the last token is delivered, fed next turn
    const r2 = await c.turn("Tom came to play.", { max_output_tokens: 10 });
    const u2 = r2.response.usage;
    const t2 = renderer.encodeTurn([{ role: "user", content: "Tom came to play." }], false).length;
    // Only the new turn (+ the pending last token of round 1) is prefilled: history is never re-read.
    assert.equal(u2.input_tokens, t2 + 1);
    assert.equal(u2.sinkstream.seen_tokens, u1.sinkstream.seen_tokens + t2 + 1 + 9);
    assert.equal(g.gw.scheduler.liveConversations, 1);
    assert.equal(g.gw.metrics.sequences.value, 1);
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("realtime: a conversation longer than the window keeps going, sinks kept", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send({ type: "session.update", session: { sinkstream: { window: 48, sinks: 4, seed: 1 } } });
    assert.equal((await c.next("session.updated")).session.sinkstream.window, 48);
    let last: Record<string, number> = {};
    for (let i = 0; i < 4; i++) {
      const d = await c.turn(`Round ${i}: tell me more about the park.`, { max_output_tokens: 30 });
      assert.notEqual(d.response.status, "failed");
      last = d.response.usage.sinkstream;
    }
    assert.ok(last.evicted_tokens > 0, "evictions happened");
    assert.equal(last.sinks, 4);
    assert.ok(last.cached_tokens <= 48);
    assert.equal(last.seen_tokens - last.evicted_tokens, last.cached_tokens);
    const conv = [...g.gw.sessions.sessions.values()][0].conv;
    const idx = g.gw.scheduler.engine.cacheIndices(conv.seq!);
    assert.deepEqual(idx.slice(0, 4), [0, 1, 2, 3]);
    // Cache settings are locked after the first turn.
    c.send({ type: "session.update", session: { sinkstream: { window: 64 } } });
    assert.equal((await c.next("error")).error.code, "session_settings_locked");
    assert.ok((await fetchMetric(g.http, "sinkstream:cache_evictions_total")) > 0);
    await c.close();
  } finally {
    await g.close();
  }
});

async function fetchMetric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

Deno.test("realtime: response.cancel stops generation within one step", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Go on forever" }] },
    });
    c.send({ type: "response.create", response: { max_output_tokens: "inf" } });
    await c.next("response.output_text.delta");
    await c.next("response.output_text.delta");
    // Count on the server side: frames already in flight to the client when it cancels say nothing
    // about the server (counting them client-side made this test flaky under parallel load).
    const session = [...g.gw.sessions.sessions.values()][0];
    const handle = session.handleFrame.bind(session);
    let generatedAtCancel = -1;
    session.handleFrame = (data: unknown) => {
      if (typeof data === "string" && data.includes('"response.cancel"')) {
        generatedAtCancel = g.gw.metrics.generationTokens.value;
      }
      handle(data);
    };
    c.send({ type: "response.cancel" });
    const done = await c.next("response.done");
    assert.equal(done.response.status, "cancelled");
    assert.equal(done.response.status_details.reason, "client_cancelled");
    // At most the token of the step in flight when the cancel was handled is generated after it.
    assert.ok(generatedAtCancel >= 2);
    const late = g.gw.metrics.generationTokens.value - generatedAtCancel;
    assert.ok(late <= 1, `tokens generated after the cancel: ${late}`);
    assert.equal(done.response.usage.output_tokens, g.gw.metrics.generationTokens.value);
    // The conversation goes on after a cancel.
    const d2 = await c.turn("And then?", { max_output_tokens: 5 });
    assert.equal(d2.response.status, "incomplete");
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("realtime: reconnect with the resume token reattaches to the same cache; TTL frees it", async () => {
  const g = await startGateway({ sessionTtl: 0.4 });
  try {
    const c = await WsClient.open(g.ws);
    const { session } = await c.next("session.created");
    const { session_id, resume_token } = session.sinkstream;
    const d1 = await c.turn("Hello there.", { max_output_tokens: 6 });
    const cached1 = d1.response.usage.sinkstream.cached_tokens;
    await c.close();
    await new Promise((r) => setTimeout(r, 50));

    // Wrong token: refused.
    const bad = await WsClient.open(`${g.ws}?session_id=${session_id}&resume_token=${"0".repeat(48)}`);
    assert.equal((await bad.next("error")).error.code, "session_not_found");
    await bad.closed;

    const c2 = await WsClient.open(`${g.ws}?session_id=${session_id}&resume_token=${resume_token}`);
    const again = await c2.next("session.created");
    assert.equal(again.session.sinkstream.session_id, session_id);
    assert.equal(again.session.sinkstream.cached_tokens, cached1);
    const d2 = await c2.turn("More.", { max_output_tokens: 4 });
    assert.ok(d2.response.usage.sinkstream.seen_tokens > d1.response.usage.sinkstream.seen_tokens);
    await c2.close();
    assert.equal(g.gw.scheduler.liveConversations, 1);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(g.gw.scheduler.liveConversations, 0, "freed after the TTL");
    assert.equal(g.gw.sessions.sessions.size, 0);
    const late = await WsClient.open(`${g.ws}?session_id=${session_id}&resume_token=${resume_token}`);
    assert.equal((await late.next("error")).error.code, "session_not_found");
    await late.closed;
  } finally {
    await g.close();
  }
});
