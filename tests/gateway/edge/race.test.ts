/**
 * Two edge instances in one process sharing one KV (`:memory:`) race to move the same session after its
 * backend is gone: the directory's checked claim lets exactly one restore it; the other client is told
 * the session is in use.
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";
import { startTestEdge } from "./_edge.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

Deno.test("two edges race to move one session after its backend is gone: exactly one restore", async () => {
  const backends = [
    await startGateway({ backendKey: BACKEND_KEY }),
    await startGateway({ backendKey: BACKEND_KEY }),
  ];
  const kv = await Deno.openKv(":memory:");
  const a = await startTestEdge(backends.map((b) => b.http), kv);
  const b = await startTestEdge(backends.map((g) => g.http), kv);
  try {
    const c = await WsClient.open(a.ws);
    const created = await c.next("session.created");
    const { session_id: id, resume_token: token } = created.session.sinkstream;
    const first = await c.turn("Tell me about Lily.", { max_output_tokens: 8 });
    // The turn's checkpoint is in the directory before its backend goes.
    const dir = a.edge.ctx.directory;
    for (let i = 0; (await dir.get(id))?.entry.checkpoint?.seq !== 2; i++) {
      assert.ok(i < 200, "checkpoint stored");
      await new Promise((r) => setTimeout(r, 10));
    }
    await c.close();
    const home = (await dir.get(id))!.entry.backendUrl;
    const gone = backends.find((g) => new URL(g.http).href === home)!;
    const other = backends.find((g) => g !== gone)!;
    await gone.close(); // its port is closed: connections are refused

    const url = (e: { ws: string }) => `${e.ws}?session_id=${id}&resume_token=${token}`;
    const [x, y] = await Promise.all([WsClient.open(url(a)), WsClient.open(url(b))]);
    const outcome = (w: WsClient) =>
      w.next((e) => e.type === "sinkstream.session.migrated" || e.type === "error", 20_000);
    const [ox, oy] = await Promise.all([outcome(x), outcome(y)]);
    const restores = a.edge.metrics.restores.value + b.edge.metrics.restores.value;
    assert.equal(restores, 1, "exactly one restore");
    const winner = ox.type === "sinkstream.session.migrated" ? x : y;
    const loser = winner === x ? y : x;
    const lost = winner === x ? oy : ox;
    assert.equal(lost.type, "error");
    assert.equal(lost.error.code, "session_in_use");
    assert.equal((await loser.closed).code, 4409);
    const migrated = winner === x ? ox : oy;
    assert.equal(migrated.session.sinkstream.cached_tokens, first.response.usage.sinkstream.cached_tokens);
    assert.equal(other.gw.sessions.sessions.size, 1, "one backend session was made");
    const next = await winner.turn("What did she find?", { max_output_tokens: 4 });
    assert.equal(next.response.status, "incomplete");
    await winner.close();
  } finally {
    await a.close();
    await b.close();
    kv.close();
    for (const g of backends) await g.close();
  }
});
