/**
 * Bad input at the edge gets the same typed errors as at a backend, and never reaches the backend: its
 * session counts only the valid events (EdgeLink.seq); an ordinary client cannot send the internal events
 * through the edge either. The edge's own bound on events kept for a restore is `input_too_large`.
 */
import assert from "node:assert/strict";
import { type Ev, startGateway, WsClient } from "../_gateway.ts";
import { startTestEdge } from "./_edge.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

const BAD: (string | Uint8Array)[] = [
  "not json",
  "[1]",
  JSON.stringify({ event_id: "e1" }),
  new Uint8Array([1, 2, 3]),
  JSON.stringify({ type: "nope", event_id: "e2" }),
  JSON.stringify({ type: "input_audio_buffer.append", event_id: "e3", audio: "" }),
  JSON.stringify({
    type: "conversation.item.create",
    event_id: "e4",
    item: { type: "message", role: "robot", content: [{ type: "input_text", text: "x" }] },
  }),
  JSON.stringify({ type: "session.update", event_id: "e5", session: { sinkstream: { window: "big" } } }),
  JSON.stringify({ type: "response.create", event_id: "e6", response: { temperature: 9 } }),
  JSON.stringify({ type: "sinkstream.restore.begin", event_id: "e7", state: {} }),
  JSON.stringify({ type: "sinkstream.checkpoint", event_id: "e8" }),
];

const VALID = JSON.stringify({
  type: "conversation.item.create",
  event_id: "ok",
  item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hello" }] },
});

function sendRaw(c: WsClient, f: string | Uint8Array): void {
  if (typeof f === "string") c.send(f);
  else c.ws.send(f); // a binary frame
}

/** The error events a client gets for BAD, then the echo of one valid event (`then` runs before the close). */
async function errorsFor(url: string, then: () => void = () => {}): Promise<Ev[]> {
  const c = await WsClient.open(url);
  await c.next("session.created");
  for (const f of BAD) sendRaw(c, f);
  c.send(VALID);
  await c.next("conversation.item.added");
  const errors = c.events.filter((e) => e.type === "error").map((e) => {
    const { code, param, event_id, type } = e.error;
    return { code, param, event_id, type };
  });
  then();
  await c.close();
  return errors;
}

Deno.test("bad input: the edge answers it as a backend does and passes none of it on", async () => {
  const g = await startGateway({ backendKey: BACKEND_KEY });
  const kv = await Deno.openKv(":memory:");
  const e = await startTestEdge([g.http], kv);
  try {
    const direct = await errorsFor(g.ws);
    assert.equal(direct.length, BAD.length);
    assert.equal(direct.at(-1)!.code, "unknown_event"); // sinkstream.* from an ordinary client

    let handled = -1;
    const viaEdge = await errorsFor(e.ws, () => {
      // The backend session behind the edge handled exactly one event: the valid one.
      handled = [...g.gw.sessions.sessions.values()].find((s) => s.link !== null)!.link!.seq;
    });
    assert.deepEqual(viaEdge, direct);
    assert.equal(handled, 1);
    // An oversized frame: the same error and close at both (our server refuses it from its header).
    const big = "x".repeat(300 * 1024);
    for (const url of [g.ws, e.ws]) {
      const w = await WsClient.open(url);
      await w.next("session.created");
      w.send(big);
      assert.equal((await w.next("error")).error.code, "frame_too_large");
      assert.equal((await w.closed).code, 1009);
    }
  } finally {
    await e.close();
    kv.close();
    await g.close();
  }
});

Deno.test("bad input: events past --max-replay-bytes wait for a checkpoint (input_too_large), nothing is lost", async () => {
  const g = await startGateway({ backendKey: BACKEND_KEY });
  const kv = await Deno.openKv(":memory:");
  const e = await startTestEdge([g.http], kv, { maxReplayBytes: 1500 });
  try {
    const c = await WsClient.open(e.ws);
    await c.next("session.created");
    const item = (i: number) =>
      JSON.stringify({
        type: "conversation.item.create",
        event_id: `i${i}`,
        item: { type: "message", role: "user", content: [{ type: "input_text", text: "y".repeat(300) }] },
      });
    for (let i = 0; i < 6; i++) c.send(item(i));
    const refused = await c.next("error");
    assert.equal(refused.error.code, "input_too_large");
    const accepted = Number(refused.error.event_id.slice(1));
    assert.ok(accepted >= 3, `${accepted} items fit`);
    // A response answers the accepted items; its checkpoint frees the room.
    c.send({ type: "response.create", response: { max_output_tokens: 2 } });
    await c.next("response.done");
    c.send(item(9));
    await c.next((ev) => ev.type === "conversation.item.added" && ev.item.content[0].text.length === 300);
    assert.ok(!c.events.slice(c.events.indexOf(refused) + 1).some((ev) => ev.error?.event_id === "i9"));
    await c.close();
  } finally {
    await e.close();
    kv.close();
    await g.close();
  }
});
