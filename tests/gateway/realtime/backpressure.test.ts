/**
 * Backpressure isolation with the real engine: a session whose socket reports a full send
 * buffer (a client that does not read) is paused; another session keeps streaming to the end.
 * The sockets are stand-ins exposing `bufferedAmount` (a loopback kernel buffer takes
 * megabytes to fill); the sessions, scheduler and engine are the real ones.
 */
import assert from "node:assert/strict";
import { RealtimeSession } from "../../../gateway/realtime/session.ts";
import { RecordingSocket } from "./_recording_socket.ts";
import { startGateway } from "../_gateway.ts";

function turn(s: RealtimeSession, text: string, max: number) {
  s.handleFrame(JSON.stringify({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  }));
  s.handleFrame(JSON.stringify({ type: "response.create", response: { max_output_tokens: max } }));
}

Deno.test("backpressure: a non-reading client pauses only its own session", async () => {
  const g = await startGateway({ backpressureBytes: 1000 });
  const slow = new RealtimeSession(g.gw.ctx);
  const fast = new RealtimeSession(g.gw.ctx);
  const slowSock = new RecordingSocket();
  const fastSock = new RecordingSocket();
  try {
    slow.attach(slowSock);
    fast.attach(fastSock);
    // The slow session produces a little, then its buffer "fills": at its second delta, synchronously (a
    // polling test could see the whole response finish first on a busy machine).
    slowSock.onEvent = (e) => {
      if (e.type === "response.output_text.delta" && slowSock.count(e.type) === 2) {
        slowSock.bufferedAmount = 1_000_000;
      }
    };
    turn(slow, "Once upon a time", 40);
    while (slowSock.count("response.output_text.delta") < 2) await new Promise((r) => setTimeout(r, 1));
    const before = slowSock.count("response.output_text.delta");
    turn(fast, "Lily went to the park", 40);
    while (fastSock.count("response.done") === 0) await new Promise((r) => setTimeout(r, 2));
    const stalled = slowSock.count("response.output_text.delta");
    assert.ok(stalled - before <= 1, `paused session advanced by ${stalled - before}`);
    assert.equal(slowSock.count("response.done"), 0);
    assert.equal(g.gw.metrics.waiting.value, 1);
    // Draining resumes it.
    slowSock.bufferedAmount = 0;
    const t0 = Date.now();
    while (slowSock.count("response.done") === 0 && Date.now() - t0 < 10_000) {
      await new Promise((r) => setTimeout(r, 2));
    }
    const done = slowSock.events.find((e) => e.type === "response.done") as { response: { status: string } };
    assert.equal(done.response.status, "incomplete");
  } finally {
    slow.dispose();
    fast.dispose();
    await g.close();
  }
});
