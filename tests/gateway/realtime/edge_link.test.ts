/**
 * The backend side of the edge protocol (gateway/realtime/edge_link.ts) against a real gateway: the backend
 * key decides who speaks it, checkpoints hold the cached ids in cache order, a restore rebuilds the cache
 * (the next greedy answer equals the original session's), under the KV budget and silently replaying events.
 */
import assert from "node:assert/strict";
import { UpstreamError } from "../../../gateway/edge/upstream_socket.ts";
import { type Checkpoint, restoreFrames } from "../../../gateway/realtime/internal_protocol.ts";
import { FedTokens } from "../../../gateway/scheduler/fed_tokens.ts";
import { type Ev, startGateway, WsClient } from "../_gateway.ts";
import { BACKEND_KEY, InternalClient } from "../edge/_upstream_client.ts";

const item = (text: string) => ({
  type: "conversation.item.create",
  item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
});

async function restore(c: InternalClient, cp: Checkpoint, later: string[] = [], seq = cp.seq): Promise<Ev> {
  await c.next("sinkstream.attached");
  for (const f of restoreFrames(cp, later, seq, "evt_restore")) c.send(f);
  return await c.next((e) => e.type === "sinkstream.restored" || e.type === "error");
}

Deno.test("FedTokens: sinks and the recent ring map stream indices to ids; older ones are refused", () => {
  const f = new FedTokens(2, 4);
  f.push([10, 11, 12]);
  f.push([13, 14, 15, 16]);
  assert.deepEqual(f.idsAt([0, 1, 3, 4, 5, 6]), [10, 11, 13, 14, 15, 16]);
  assert.throws(() => f.idsAt([2]), /no longer remembered/);
  assert.throws(() => f.idsAt([7]), /never fed/);
});

Deno.test("edge protocol: only a connection with the backend key speaks it; ordinary clients see none of it", async () => {
  const plain = await startGateway();
  const keyed = await startGateway({ backendKey: BACKEND_KEY });
  try {
    await assert.rejects(
      () => InternalClient.open(plain.ws),
      (e) => e instanceof UpstreamError && e.status === 401 && /without --backend-key/.test(e.body ?? ""),
    );
    await assert.rejects(
      () => InternalClient.open(keyed.ws, "wrong-key-0123456789"),
      (e) => e instanceof UpstreamError && e.status === 401 && /invalid_api_key/.test(e.body ?? ""),
    );
    const c = await WsClient.open(keyed.ws);
    await c.next("session.created");
    c.send({ type: "sinkstream.restore.begin", event_id: "e1" });
    const err = await c.next("error");
    assert.equal(err.error.code, "unknown_event");
    assert.equal(err.error.event_id, "e1");
    await c.turn("Hi", { max_output_tokens: 4 });
    assert.deepEqual(c.events.filter((e) => e.type.startsWith("sinkstream.")), []);
    await c.close();
  } finally {
    await plain.close();
    await keyed.close();
  }
});

Deno.test("edge protocol: checkpoints before response.done; a restore rebuilds the cache and answers alike", async () => {
  const g = await startGateway({ backendKey: BACKEND_KEY });
  try {
    const a = await InternalClient.open(g.ws);
    assert.equal((await a.next("sinkstream.attached")).seq, 0);
    a.send({ type: "session.update", session: { instructions: "You tell stories." } });
    await a.turn("Tell me about Lily.", { max_output_tokens: 12 });
    const cp1 = (await findBefore(a, "response.done")).checkpoint as Checkpoint;
    const done2 = await a.turn("And then?", { max_output_tokens: 12 });
    const cp2 = a.events.filter((e) => e.type === "sinkstream.checkpoint").at(-1)!.checkpoint as Checkpoint;
    assert.equal(cp1.seq, 3); // session.update, item, response.create
    assert.equal(cp2.seq, 5);
    assert.equal(cp2.state.turns, 2);
    assert.equal(cp2.state.sent_instructions, "You tell stories.");
    assert.equal(cp2.cache_tokens.length, done2.response.usage.sinkstream.cached_tokens);
    // A response cut by max_output_tokens leaves its last token unfed: it is pending.
    assert.equal(cp2.pending_tokens.length, 1);
    assert.deepEqual(cp2.cache_tokens.slice(0, cp1.cache_tokens.length), cp1.cache_tokens);

    const b = await InternalClient.open(g.ws);
    const restored = await restore(b, cp2);
    assert.equal(restored.type, "sinkstream.restored", JSON.stringify(restored));
    assert.equal(restored.seq, 5);
    assert.equal(restored.session.sinkstream.cached_tokens, cp2.cache_tokens.length);
    assert.equal(restored.session.instructions, "You tell stories.");
    // The same next turn on both: same greedy text, same cache, only the new turn prefilled.
    const [da, db] = [await a.turn("What did she find?"), await b.turn("What did she find?")];
    const text = (d: Ev) => d.response.output[0].content[0].text;
    assert.equal(text(db), text(da));
    assert.equal(db.response.usage.input_tokens, da.response.usage.input_tokens);
    assert.equal(db.response.usage.sinkstream.cached_tokens, da.response.usage.sinkstream.cached_tokens);
    await a.close();
    await b.close();
  } finally {
    await g.close();
  }
});

/** The last event of `type` before the first `before` event. */
function findBefore(c: InternalClient, before: string): Ev {
  const end = c.events.findIndex((e) => e.type === before);
  return c.events.slice(0, end).findLast((e) => e.type === "sinkstream.checkpoint")!;
}

Deno.test("edge protocol: with eviction the checkpoint holds sinks + recent window, the restore fills the window", async () => {
  const g = await startGateway({ backendKey: BACKEND_KEY, window: 32, sinks: 4 });
  try {
    const a = await InternalClient.open(g.ws);
    await a.next("sinkstream.attached");
    const d = await a.turn("Once upon a time there was a little girl named Lily.", { max_output_tokens: 20 });
    assert.ok(d.response.usage.sinkstream.evicted_tokens > 0, "the window evicted");
    const cp = a.events.findLast((e) => e.type === "sinkstream.checkpoint")!.checkpoint as Checkpoint;
    assert.equal(cp.cache_tokens.length, 32);
    assert.equal(cp.cache_tokens[0], 1, "the first sink is <bos>");
    const b = await InternalClient.open(g.ws);
    const r = await restore(b, cp);
    assert.equal(r.session.sinkstream.cached_tokens, 32);
    const db = await b.turn("Then?", { max_output_tokens: 4 });
    assert.equal(db.response.usage.sinkstream.cached_tokens, 32);
    await a.close();
    await b.close();
  } finally {
    await g.close();
  }
});

Deno.test("edge protocol: a restore replays events silently, is refused by the KV budget and after other events", async () => {
  // Room for one 64-token conversation (stories260K: 1280 KV bytes per token on the CPU).
  const g = await startGateway({ backendKey: BACKEND_KEY, window: 64, kvBudgetMb: 0.1, sessionTtl: 0 });
  try {
    const a = await InternalClient.open(g.ws);
    await a.next("sinkstream.attached");
    await a.turn("Hello", { max_output_tokens: 4 });
    const cp = a.events.findLast((e) => e.type === "sinkstream.checkpoint")!.checkpoint as Checkpoint;
    const b = await InternalClient.open(g.ws);
    const busy = await restore(b, cp);
    assert.equal(busy.type, "error");
    assert.equal(busy.error.code, "server_busy");
    assert.equal(busy.error.event_id, "evt_restore");
    await b.close();
    await a.close(); // frees its conversation once detached (nothing to resume after the TTL: 0 here)
    await waitFor(() => g.gw.scheduler.liveConversations === 0);

    const c = await InternalClient.open(g.ws);
    const r = await restore(c, cp, [JSON.stringify(item("A replayed item."))], cp.seq + 1);
    assert.equal(r.type, "sinkstream.restored");
    assert.equal(r.seq, cp.seq + 1);
    assert.ok(!c.events.some((e) => e.type === "conversation.item.added"), "the replay is silent");
    c.send({ type: "response.create", response: { max_output_tokens: 2 } });
    const done = await c.next("response.done");
    assert.ok(done.response.usage.input_tokens > 4, "the replayed item is in the next turn");
    // A restore is a new session's first business only.
    c.send({ type: "sinkstream.restore.begin", event_id: "late" });
    const late = await c.next("error");
    assert.equal(late.error.code, "invalid_event");
    await c.close();

    // Ordinary events wait while the ids arrive.
    const d = await InternalClient.open(g.ws);
    await d.next("sinkstream.attached");
    const frames = restoreFrames(cp, [], cp.seq, "evt_r2");
    d.send(frames[0]);
    d.send({ ...item("too early"), event_id: "early" });
    const early = await d.next("error");
    assert.equal(early.error.code, "session_restoring");
    assert.equal(early.error.event_id, "early");
    await d.close();
  } finally {
    await g.close();
  }
});

Deno.test("edge protocol: drain tells edge sessions, readyz turns 503, new sessions are refused", async () => {
  const g = await startGateway({ backendKey: BACKEND_KEY });
  try {
    const a = await InternalClient.open(g.ws);
    await a.next("sinkstream.attached");
    const drained = g.gw.drain(1000);
    await a.next("sinkstream.draining");
    const ready = await fetch(`${g.http}/readyz`);
    assert.equal(ready.status, 503);
    await ready.body?.cancel();
    const late = await InternalClient.open(g.ws);
    assert.equal((await late.next("error")).error.code, "server_shutting_down");
    await late.closed;
    assert.equal(late.socket.closeCode, 1001);
    await drained;
    await a.close();
  } finally {
    await g.close();
  }
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 20));
  }
}
