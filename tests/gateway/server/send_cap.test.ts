/**
 * One bounded send path (issue #12 failure 4), against `deno task start` as a subprocess so that its
 * memory can be read (/proc/PID/status VmRSS): a client that never reads while it floods the server with
 * 120 items of 250 KB (each echoed three times), or with 200k tiny invalid frames (each answered with an
 * error event), is closed with 1008 after one last `send_buffer_full` error event, and the server's RSS
 * stays bounded; a normal session streaming meanwhile gets exactly the greedy text it gets unloaded.
 */
import assert from "node:assert/strict";
import { type GatewayProcess, startGatewayProcess } from "../../../bench/gateway_process.ts";
import { modelPath } from "../_gateway.ts";
import { greedyTurn } from "../_reference_turn.ts";
import { clientFrame, eventFrame, mustSettle, openWs, type Wire } from "./_wire.ts";

/** What the floods may add to the server's RSS: the 8 MiB send cap, a few stored items, GC slack. */
const RSS_GROWTH_LIMIT_MB = 96;
const MiB = 1 << 20;

function startCli(): Promise<GatewayProcess> {
  // No per-session item cap and no read rate: the send cap alone must bound what a never-reading client
  // costs (with the defaults most items would be refused with a small error, and the tiny frames would be
  // read at --ws-read-rate, too slowly to fill the send queue within the test).
  return startGatewayProcess({
    model: modelPath(),
    args: ["--threads", "1", "--max-pending-bytes", "0", "--ws-read-rate", "0"],
  });
}

/** Run `flood` on a socket that does not read, with a normal turn beside it; then read what came back. */
async function floodCase(cli: GatewayProcess, reference: string, flood: (w: Wire) => Promise<void>) {
  const { res, wire } = await openWs(cli.port, ["Sec-WebSocket-Protocol: realtime"]);
  assert.equal(res.status, 101);
  const before = cli.rssBytes() / MiB;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, cli.rssBytes() / MiB)), 20);
  try {
    const writing = flood(wire).catch(() => {}); // the server may stop reading and close
    assert.equal(await greedyTurn(cli.url), reference, "the normal session's text is unaffected");
    await writing;
    const end = await mustSettle(wire.untilClose(), 60_000, "the flooder's close");
    assert.equal(end.code, 1008, `close code (reason ${end.reason})`);
    const last = JSON.parse(end.texts.at(-1)!);
    assert.equal(last.type, "error");
    assert.equal(last.error.code, "send_buffer_full");
    console.log(`rss ${before.toFixed(0)} MB -> peak ${peak.toFixed(0)} MB; ${end.texts.length} messages`);
    assert.ok(peak - before < RSS_GROWTH_LIMIT_MB, `RSS grew by ${(peak - before).toFixed(0)} MB`);
  } finally {
    clearInterval(sampler);
    wire.close();
  }
}

Deno.test(
  "send cap: a never-reading flooder is closed with 1008 + a last error; RSS bounded; others unaffected",
  async () => {
    const cli = await startCli();
    try {
      const reference = await greedyTurn(cli.url);
      const item = "x".repeat(250_000);
      await floodCase(cli, reference, async (w) => {
        for (let i = 0; i < 120; i++) {
          await w.write(eventFrame({
            type: "conversation.item.create",
            item: { type: "message", role: "user", content: [{ type: "input_text", text: item }] },
          }));
        }
      });
      const tiny = clientFrame({ opcode: 0x1, payload: "x" }); // invalid JSON: one error event each
      const many = new Uint8Array(tiny.length * 200_000);
      for (let i = 0; i < 200_000; i++) many.set(clientFrame({ opcode: 0x1, payload: "x" }), i * tiny.length);
      await floodCase(cli, reference, (w) => w.write(many));
      assert.equal(await greedyTurn(cli.url), reference, "and after the floods");
    } finally {
      await cli.stop();
    }
  },
);
