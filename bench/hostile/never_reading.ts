/**
 * Hostile client 3, never reading: a WebSocket that asks for an endless response (`max_output_tokens:
 * "inf"`) and never reads. Its socket fills; the gateway pauses the response once more than
 * --backpressure-bytes wait in its send queue, so its generation stops and the queue stays near that
 * size; with no frame from the client the idle timeout sends a ping and then closes 1001 (the send cap,
 * 1008, would close it if the queue kept growing). The idle check runs every --ws-idle-timeout: it
 * notices the silence one to two periods after the last frame and closes one period later, at most three
 * periods after. The client holds just past that, then reads what waits (how many bytes: bounded if it was paused) and the close
 * code, and starts over. A hold cut by the end of the run is counted as "open at the end of the run".
 */
import { eventFrame, openWs, readToClose } from "../wire.ts";
import { sleep } from "../lib.ts";
import { type HostileContext, repeat, timeLeft } from "./context.ts";

/** How long it reads at the end of a hold, at most. */
const DRAIN_MS = 5_000;
/** Past the idle close; under 10 s, how long the server waits for our close frame before it drops us. */
const HOLD_MARGIN_MS = 3_000;

export function neverReading(ctx: HostileContext): Promise<void> {
  const idleCloseMs = 3 * ctx.limits.wsIdleTimeout * 1000;
  return repeat(ctx, 100, async () => {
    const { res, wire } = await openWs(ctx.port, ["Sec-WebSocket-Protocol: realtime"]);
    try {
      if (res.status !== 101) return ctx.tally.add(`handshake ${res.status}`);
      await wire.write(eventFrame({ type: "session.update", session: { max_output_tokens: "inf" } }));
      await wire.write(eventFrame({
        type: "conversation.item.create",
        item: { type: "message", role: "user", content: [{ type: "input_text", text: "Tell me a story." }] },
      }));
      await wire.write(eventFrame({ type: "response.create" }));
      const hold = Math.min(idleCloseMs + HOLD_MARGIN_MS, timeLeft(ctx));
      await sleep(hold);
      const cut = hold < idleCloseMs + HOLD_MARGIN_MS;
      const { bytes, close } = await readToClose(wire, DRAIN_MS);
      if (close !== null) {
        ctx.tally.add(`close ${close}`);
        // Closed: nothing was generated after the close, so this is what waited for the client.
        ctx.tally.max("bytes waiting for it at the close", bytes);
      } else ctx.tally.add(cut ? "open at the end of the run" : `not closed ${hold} ms after its last frame`);
    } finally {
      wire.close();
    }
  });
}
