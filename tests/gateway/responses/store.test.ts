/**
 * The bounds of stored Responses API responses: the TTL, the count and byte caps (oldest first), the cap on
 * idle live chains (past it a continuation is rebuilt), the KV budget (idle chains are freed before a new
 * conversation is refused), and a chain longer than its window (rebuilt from the sinks and the newest ids).
 */
import assert from "node:assert/strict";
import { startGateway } from "../_gateway.ts";
import { call, post } from "./_client.ts";

Deno.test("responses store: a response expires after --responses-ttl", async () => {
  const g = await startGateway({ responsesTtl: 0.2 });
  try {
    const a = (await post(g, { input: "Hi", max_output_tokens: 2 })).json;
    assert.equal((await call(g, "GET", a.id)).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await call(g, "GET", a.id)).status, 404);
    const r = await post(g, { input: "Hi", previous_response_id: a.id });
    assert.equal(r.json.error.code, "previous_response_not_found");
    assert.equal(g.gw.responses.liveChains, 0, "its live chain was freed with it");
  } finally {
    await g.close();
  }
});

Deno.test("responses store: --responses-max and --responses-max-mb drop the oldest first", async () => {
  const g = await startGateway({ responsesMax: 2 });
  try {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await post(g, { input: `Hi ${i}`, max_output_tokens: 2 })).json.id);
    assert.deepEqual(
      await Promise.all(ids.map(async (id) => (await call(g, "GET", id)).status)),
      [404, 200, 200],
    );
    assert.equal(g.gw.responses.size, 2);
  } finally {
    await g.close();
  }
  // One record is about 1-3 KB here (object + kept ids); 0.004 MiB holds one or two.
  const h = await startGateway({ responsesMaxMb: 0.004 });
  try {
    for (let i = 0; i < 6; i++) await post(h, { input: `Hi ${i}`, max_output_tokens: 4 });
    assert.ok(h.gw.responses.bytes <= 0.004 * 1024 * 1024, `${h.gw.responses.bytes} bytes held`);
    assert.ok(h.gw.responses.size >= 1 && h.gw.responses.size < 6, `${h.gw.responses.size} records`);
  } finally {
    await h.close();
  }
});

Deno.test("responses store: past --responses-live a chain is rebuilt; the KV budget frees idle chains first", async () => {
  const g = await startGateway({ responsesLive: 1 });
  try {
    const a = (await post(g, { input: "Lily had a ball.", max_output_tokens: 5 })).json;
    const b = (await post(g, { input: "Tom had a kite.", max_output_tokens: 5 })).json;
    assert.equal(g.gw.responses.liveChains, 1);
    const fromA = (await post(g, { input: "Then?", previous_response_id: a.id, max_output_tokens: 3 })).json;
    assert.equal(fromA.usage.sinkstream.cache, "rebuilt");
    const fromB = (await post(g, { input: "Then?", previous_response_id: b.id, max_output_tokens: 3 })).json;
    assert.equal(fromB.usage.sinkstream.cache, "rebuilt", "b's chain was freed for a's continuation");
  } finally {
    await g.close();
  }
  // Room for one conversation's worst case (a full window of 512 tokens) only.
  const { engine } = await import("../_gateway.ts").then((m) => m.sharedEngine());
  const oneConv = (512 * engine.kvBytesPerToken) / (1024 * 1024);
  const h = await startGateway({ kvBudgetMb: oneConv * 1.5 });
  try {
    const a = (await post(h, { input: "Lily had a ball.", max_output_tokens: 5 })).json;
    assert.equal(h.gw.responses.liveChains, 1);
    const other = await post(h, { input: "Tom had a kite.", max_output_tokens: 5 });
    assert.equal(other.status, 200, "the idle chain gave its KV to a new conversation");
    const cont = (await post(h, { input: "Then?", previous_response_id: a.id, max_output_tokens: 3 })).json;
    assert.equal(cont.usage.sinkstream.cache, "rebuilt");
  } finally {
    await h.close();
  }
});

Deno.test("responses store: a chain longer than its window goes on, rebuilt from the sinks and the newest ids", async () => {
  const g = await startGateway({ window: 48, sinks: 4, responsesLive: 0 });
  try {
    let prev: string | null = null;
    for (let i = 0; i < 4; i++) {
      const r = await post(g, {
        input: `Round ${i}: tell me more about the park.`,
        max_output_tokens: 20,
        ...(prev ? { previous_response_id: prev } : {}),
      });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.notEqual(r.json.status, "failed");
      if (prev) {
        assert.equal(r.json.usage.sinkstream.cache, "rebuilt");
        assert.ok(r.json.usage.sinkstream.rebuilt_tokens <= 48);
      }
      prev = r.json.id;
    }
  } finally {
    await g.close();
  }
});
