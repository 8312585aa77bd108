/**
 * A WebSocket is read at most at --ws-read-rate (a token bucket of --ws-read-burst; each frame costs at
 * least WS_MIN_FRAME_COST_BYTES): a client flooding tiny invalid frames gets its frames handled at that
 * pace (its socket is simply not read meanwhile), so it costs the event loop a bounded share, and a
 * normal session streaming beside it gets exactly the greedy text it gets alone.
 */
import assert from "node:assert/strict";
import { WS_MIN_FRAME_COST_BYTES } from "../../../gateway/server/limits.ts";
import { startGateway } from "../_gateway.ts";
import { greedyTurn } from "../_reference_turn.ts";
import { clientFrame, openWs } from "./_wire.ts";

const FRAMES_PER_SECOND = 40;
const BURST_FRAMES = 40;

Deno.test("read rate: a flood of tiny frames is handled at --ws-read-rate; others are unaffected", async () => {
  const g = await startGateway({
    wsReadRate: FRAMES_PER_SECOND * WS_MIN_FRAME_COST_BYTES,
    wsReadBurst: BURST_FRAMES * WS_MIN_FRAME_COST_BYTES,
  });
  try {
    const base = new URL(g.http);
    const reference = await greedyTurn(base);
    const { res, wire } = await openWs(g.server.addr.port, ["Sec-WebSocket-Protocol: realtime"]);
    assert.equal(res.status, 101);
    const tiny = clientFrame({ opcode: 0x1, payload: "x" }); // invalid JSON: one error event each
    const flood = new Uint8Array(tiny.length * 2000);
    for (let i = 0; i < 2000; i++) flood.set(clientFrame({ opcode: 0x1, payload: "x" }), i * tiny.length);
    await wire.write(flood);
    const t0 = performance.now();
    let errors = 0;
    const counting = (async () => {
      for (;;) {
        const e = await wire.event().catch(() => null);
        if (e === null) return;
        if (e.type === "error") errors++;
      }
    })();
    assert.equal(await greedyTurn(base), reference, "the flood changed another session's text");
    await new Promise((r) => setTimeout(r, Math.max(0, 2000 - (performance.now() - t0))));
    const seconds = (performance.now() - t0) / 1000;
    const allowed = BURST_FRAMES + FRAMES_PER_SECOND * seconds;
    assert.ok(errors >= BURST_FRAMES, `only ${errors} frames handled`);
    assert.ok(
      errors <= allowed * 1.2 + 5,
      `${errors} frames handled in ${seconds.toFixed(1)} s (allowed ${allowed})`,
    );
    wire.close();
    await counting;
  } finally {
    await g.close();
  }
});
