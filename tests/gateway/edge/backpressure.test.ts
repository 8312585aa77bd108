/**
 * A client of the edge that stops reading its socket does not grow the edge's memory: the edge stops
 * reading that session's upstream once its client socket holds more than --backpressure-bytes, so the
 * backlog stays in the backend (which pauses the session's response, as for a direct slow client), and
 * the edge holds at most the threshold plus one message. A raw client (tests/gateway/_raw_ws.ts) that
 * really stops reading its TCP socket; big session.updated echoes make the backlog (as slow_client.test.ts).
 */
import assert from "node:assert/strict";
import type { EdgeSession } from "../../../gateway/edge/relay.ts";
import { startGateway } from "../_gateway.ts";
import { RawWsClient } from "../_raw_ws.ts";
import { startTestEdge } from "./_edge.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("edge backpressure: a client that does not read leaves the backlog in the backend, not the edge", async () => {
  const limit = 256 * 1024;
  const echo = 600_000; // one session.updated with these instructions
  const limits = { backpressureBytes: limit, maxFrameBytes: 1 << 20, maxSendBufferBytes: 64 << 20 };
  const g = await startGateway({ backendKey: BACKEND_KEY, ...limits });
  const kv = await Deno.openKv(":memory:");
  const e = await startTestEdge([g.http], kv, limits);
  const slow = await RawWsClient.connect(e.ws);
  try {
    await slow.until("session.created");
    const relay = [...e.edge.ctx.live.values()][0] as EdgeSession;
    const behind = [...g.gw.sessions.sessions.values()].find((s) => s.link !== null)!;
    await slow.send({ type: "session.update", session: { instructions: "x".repeat(echo) } });
    for (let i = 0; i < 40; i++) await slow.send({ type: "session.update", session: {} });
    await slow.send({ type: "session.update", session: { instructions: "" } });
    await until(() => behind.socket!.bufferedAmount > limit, "the backlog to reach the backend");
    // A response on the stalled session is paused at the backend before it gets any step.
    await slow.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Once upon a time" }] },
    });
    await slow.send({ type: "response.create", response: { max_output_tokens: 20 } });
    await until(() => behind.conv.job !== null, "the response to be submitted");
    let most = 0;
    for (let i = 0; i < 50; i++) {
      most = Math.max(most, relay.client.bufferedAmount);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(most <= limit + echo + 4096, `the edge queued ${most} bytes for its client`);
    assert.ok(behind.socket!.bufferedAmount > limit, "the rest waits in the backend");
    assert.equal(behind.conv.job!.output, 0, "the paused session generated nothing");
    assert.equal(g.gw.metrics.waiting.value, 1);
    // The client reads again: everything arrives, the response finishes.
    const done = await slow.until("response.done");
    assert.equal(done.response.usage.output_tokens, 20);
    assert.ok(slow.bytesRead > 20_000_000, `read ${slow.bytesRead} bytes`);
  } finally {
    slow.close();
    await e.close();
    kv.close();
    await g.close();
  }
});
