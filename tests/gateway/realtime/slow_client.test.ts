/**
 * Backpressure end to end with a REAL slow client: a raw WebSocket client (tests/gateway/_raw_ws.ts)
 * that stops reading its TCP socket. Checks that (a) the server-side WebSocket.bufferedAmount really
 * grows with the bytes the kernel would not take (gateway/server/send_queue.ts counts what is queued
 * until written), so the session pauses, and (b) a normal client keeps streaming to the end meanwhile;
 * once the slow client reads again its response completes. The send cap (--max-send-buffer-bytes) is
 * raised over the ~24 MB this test queues: closing at the cap is tests/gateway/server/send_cap.test.ts.
 */
import assert from "node:assert/strict";
import type { RealtimeSession } from "../../../gateway/realtime/session.ts";
import { startGateway, WsClient } from "../_gateway.ts";
import { RawWsClient } from "../_raw_ws.ts";

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("backpressure: a client that stops reading its socket pauses only its own session", async () => {
  const limit = 256 * 1024;
  const g = await startGateway({
    backpressureBytes: limit,
    maxFrameBytes: 1 << 20,
    maxSendBufferBytes: 64 << 20,
  });
  const slow = await RawWsClient.connect(g.ws);
  let fast: WsClient | null = null;
  try {
    const created = await slow.until("session.created");
    const server = g.gw.sessions.sessions.get(created.session.id) as RealtimeSession;
    assert.ok(server?.socket);
    // Make the server write ~24 MB to a client that reads nothing: every session.updated echoes the
    // 600 kB instructions. The loopback socket buffers take a few MB; the rest must queue in the server.
    await slow.send({ type: "session.update", session: { instructions: "x".repeat(600_000) } });
    for (let i = 0; i < 40; i++) await slow.send({ type: "session.update", session: {} });
    await slow.send({ type: "session.update", session: { instructions: "" } });
    await until(() => server.socket!.bufferedAmount > limit, "bufferedAmount to pass the limit");
    const buffered = server.socket!.bufferedAmount;
    assert.ok(buffered > limit, `bufferedAmount ${buffered}`);
    console.log(`server-side bufferedAmount of the stalled socket: ${buffered} bytes`);

    // A response on the stalled session: submitted, but paused before it gets any step.
    await slow.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Once upon a time" }] },
    });
    await slow.send({ type: "response.create", response: { max_output_tokens: 20 } });
    await until(() => server.conv.job !== null, "the slow response to be submitted");

    // Meanwhile a normal client streams a whole response.
    fast = await WsClient.open(g.ws);
    await fast.next("session.created");
    const done = await fast.turn("Lily went to the park", { max_output_tokens: 40 });
    assert.equal(done.response.status, "incomplete");
    assert.equal(done.response.usage.output_tokens, 40);
    const job = server.conv.job!;
    assert.equal(job.output, 0, "the paused session generated nothing");
    assert.equal(job.fed, 0, "the paused session was not even prefilled");
    assert.equal(g.gw.metrics.waiting.value, 1);
    assert.ok(server.socket!.bufferedAmount > limit);

    // The slow client reads again: the buffer drains, the session resumes and finishes.
    const d = await slow.until("response.done");
    assert.equal(d.response.status, "incomplete");
    assert.equal(d.response.usage.output_tokens, 20);
    assert.ok(slow.bytesRead > 20_000_000, `read ${slow.bytesRead} bytes`);
    assert.ok(server.socket!.bufferedAmount <= limit);
  } finally {
    slow.close();
    await fast?.close();
    await g.close();
  }
});
