/**
 * The edge's HTTP forwarding and its own session limit: a chat completion that a backend refuses before
 * any byte (429, at its --max-sessions) is served by another backend; past the edge's --max-sessions a new
 * Realtime session gets server_busy and close 1013, as at a backend.
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";
import { startTestEdge } from "./_edge.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

Deno.test("edge HTTP: a completion refused with 429 before its first byte goes to the next backend", async () => {
  const full = await startGateway({ backendKey: BACKEND_KEY, maxSessions: 1 });
  const other = await startGateway({ backendKey: BACKEND_KEY });
  const kv = await Deno.openKv(":memory:");
  const holders: WsClient[] = [];
  try {
    // `full` is at its limit with one session; `other` looks busier (three), so placement tries `full` first.
    holders.push(await WsClient.open(full.ws));
    for (let i = 0; i < 3; i++) holders.push(await WsClient.open(other.ws));
    for (const h of holders) await h.next("session.created");
    const e = await startTestEdge([full.http, other.http], kv);
    try {
      const direct = await fetch(`${full.http}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
      });
      assert.equal(direct.status, 429, "the full backend refuses");
      await direct.body?.cancel();
      for (const stream of [false, true]) {
        const r = await fetch(`${e.http}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4, stream }),
        });
        assert.equal(r.status, 200);
        const body = await r.text();
        assert.match(body, stream ? /data: \[DONE\]/ : /"finish_reason"/);
      }
      assert.ok(full.gw.metrics.rejected.value >= 2, "the full backend was tried first and refused");
    } finally {
      await e.close();
    }
  } finally {
    for (const h of holders) await h.close();
    kv.close();
    await full.close();
    await other.close();
  }
});

Deno.test("edge: past --max-sessions a new session gets server_busy and close 1013", async () => {
  const g = await startGateway({ backendKey: BACKEND_KEY });
  const kv = await Deno.openKv(":memory:");
  const e = await startTestEdge([g.http], kv, { maxSessions: 1 });
  try {
    const first = await WsClient.open(e.ws);
    await first.next("session.created");
    const second = await WsClient.open(e.ws);
    assert.equal((await second.next("error")).error.code, "server_busy");
    assert.equal((await second.closed).code, 1013);
    await first.close();
  } finally {
    await e.close();
    kv.close();
    await g.close();
  }
});
