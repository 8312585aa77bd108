/**
 * One bounded send path (issue #12 failure 4), against `deno task start` as a subprocess so that its
 * memory can be read (/proc/PID/status VmRSS): a client that never reads while it floods the server with
 * 120 items of 250 KB (each echoed three times), or with 200k tiny invalid frames (each answered with an
 * error event), is closed with 1008 after one last `send_buffer_full` error event, and the server's RSS
 * stays bounded; a normal session streaming meanwhile gets exactly the greedy text it gets unloaded.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { modelPath, WsClient } from "../_gateway.ts";
import { clientFrame, eventFrame, mustSettle, openWs, type Wire } from "./_wire.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** What the floods may add to the server's RSS: the 8 MiB send cap, a few stored items, GC slack. */
const RSS_GROWTH_LIMIT_MB = 96;

interface Cli {
  port: number;
  rssMb(): number;
  stop(): Promise<void>;
}

async function startCli(): Promise<Cli> {
  const proc = new Deno.Command(Deno.execPath(), {
    // No per-session item cap: the send cap alone must bound what a never-reading client costs (with
    // the default --max-pending-bytes most of the items would be refused with a small error instead).
    args: [
      "run",
      "-A",
      "gateway/main.ts",
      "--model",
      modelPath(),
      "--port",
      "0",
      "--threads",
      "1",
      "--max-pending-bytes",
      "0",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let port = 0;
  while (port === 0) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`the gateway exited before listening: ${out}`);
    out += value;
    port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out)?.[1] ?? 0);
  }
  const drain = (async () => {
    while (!(await lines.read()).done) { /* keep stdout flowing */ }
  })();
  return {
    port,
    rssMb() {
      const status = Deno.readTextFileSync(`/proc/${proc.pid}/status`);
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.status;
      await drain;
    },
  };
}

async function greedyTurn(port: number): Promise<string> {
  const c = await WsClient.open(`ws://127.0.0.1:${port}/v1/realtime`);
  try {
    await c.next("session.created");
    const done = await c.turn("Once upon a time", { max_output_tokens: 48, temperature: 0 });
    assert.equal(done.response.status, "incomplete");
    return done.response.output[0].content[0].text;
  } finally {
    await c.close();
  }
}

/** Run `flood` on a socket that does not read, with a normal turn beside it; then read what came back. */
async function floodCase(cli: Cli, reference: string, flood: (w: Wire) => Promise<void>) {
  const { res, wire } = await openWs(cli.port, ["Sec-WebSocket-Protocol: realtime"]);
  assert.equal(res.status, 101);
  const before = cli.rssMb();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, cli.rssMb())), 20);
  try {
    const writing = flood(wire).catch(() => {}); // the server may stop reading and close
    assert.equal(await greedyTurn(cli.port), reference, "the normal session's text is unaffected");
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

Deno.test({
  name:
    "send cap: a never-reading flooder is closed with 1008 + a last error; RSS bounded; others unaffected",
  sanitizeResources: false, // the subprocess' stdout reader is closed by stop()
}, async () => {
  const cli = await startCli();
  try {
    const reference = await greedyTurn(cli.port);
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
    assert.equal(await greedyTurn(cli.port), reference, "and after the floods");
  } finally {
    await cli.stop();
  }
});
