/**
 * Hostile client 1, the flooder: a WebSocket that never reads and sends tiny invalid frames ("x", not
 * JSON) as fast as it can. The gateway answers each with an `error` event; they pile up in its send
 * queue until --max-send-buffer-bytes, then it sends a last `send_buffer_full` error and closes 1008.
 * Afterwards the flooder reads what came (to learn the close code and the last event) and reconnects.
 * It sends enough for the cap to be reached whatever the kernel's socket buffers hold meanwhile. With the
 * gateway's default --ws-read-rate the frames are read at most ~1000/s, so the answers never outgrow the
 * kernel's buffers within a run: the flooder's writes block (TCP backpressure) and the tally says "cut by the
 * end of the run"; with --ws-read-rate 0 it is closed 1008 as described.
 */
import { clientFrame, openWs, readToClose } from "../wire.ts";
import { sleep } from "../lib.ts";
import { type HostileContext, repeat, timeLeft } from "./context.ts";

/** Each frame is answered with an error event of ~180 bytes (invalid_json); a lower bound. */
const ANSWER_BYTES = 150;
const FRAMES_PER_WRITE = 10_000;
/**
 * How long it does not read after writing: long enough for a gateway that answers 10k frames a second to
 * queue past the cap (~70k answers measured, the kernel's buffers included), short enough to read within
 * 10 s of its close (it drops a client that does not answer its close frame, and the frame with it).
 */
const SILENT_MS = 8_000;
/** How long to wait for the close once the frames are written (the server drops a mute client after 10 s). */
const CLOSE_WAIT_MS = 30_000;

/**
 * The kernel holds up to a send buffer (server side) and a receive buffer (ours) of answers before any
 * stay in the gateway's queue: on loopback with Linux's autotuning, up to tcp_wmem's and tcp_rmem's
 * maximum (4 MiB and 32 MiB here); 8 MiB each when /proc does not say.
 */
function kernelBufferBytes(): number {
  const max = (file: string) => {
    try {
      return Number(Deno.readTextFileSync(`/proc/sys/net/ipv4/${file}`).trim().split(/\s+/)[2]) || 8 << 20;
    } catch {
      return 8 << 20;
    }
  };
  return max("tcp_rmem") + max("tcp_wmem");
}

export function flooder(ctx: HostileContext): Promise<void> {
  // Answers for 1.5 times what the kernel and the send cap hold together: the cap is reached for sure.
  const framesPerConnection = Math.ceil(
    (1.5 * (kernelBufferBytes() + ctx.limits.maxSendBufferBytes)) / ANSWER_BYTES / FRAMES_PER_WRITE,
  ) * FRAMES_PER_WRITE;
  const one = clientFrame({ opcode: 0x1, payload: "x" });
  const batch = new Uint8Array(one.length * FRAMES_PER_WRITE);
  for (let i = 0; i < FRAMES_PER_WRITE; i++) {
    batch.set(clientFrame({ opcode: 0x1, payload: "x" }), i * one.length);
  }
  return repeat(ctx, 100, async () => {
    const { res, wire } = await openWs(ctx.port, ["Sec-WebSocket-Protocol: realtime"]);
    try {
      if (res.status !== 101) return ctx.tally.add(`handshake ${res.status}`);
      let sent = 0;
      try {
        while (sent < framesPerConnection && timeLeft(ctx) > 0) {
          await wire.write(batch);
          sent += FRAMES_PER_WRITE;
        }
      } catch {
        ctx.tally.add("write failed (server gone)");
      }
      ctx.tally.max("frames sent", sent);
      // The frames are in the kernel at once (its buffers take them all); the gateway answers them at its
      // own pace. Stay silent while it does, then read: within 10 s of its close, or it drops us first.
      const silent = Math.min(SILENT_MS, timeLeft(ctx));
      await sleep(silent);
      // Cut short by the end of the run, the cap may not have been reached: do not wait long.
      const cut = sent < framesPerConnection || silent < SILENT_MS;
      const end = await readToClose(wire, cut ? 2_000 : CLOSE_WAIT_MS);
      if (end.close !== null) ctx.tally.add(`close ${end.close}`);
      else ctx.tally.add(cut ? "cut by the end of the run" : "no close frame");
      if (end.lastText !== null) {
        const last = JSON.parse(end.lastText);
        ctx.tally.add(`last event: ${last.type} ${last.error?.code ?? ""}`.trim());
      }
      ctx.tally.max("events received", end.texts);
    } finally {
      wire.close();
    }
  });
}
