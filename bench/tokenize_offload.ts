/**
 * Tokenisation off the event loop (issue #12, failure 3): one probe session's time to first token (TTFT)
 * while another client's 1 MB prompt is being tokenised, against its unloaded value. Target: within
 * 50 ms of unloaded.
 *
 *   flock /tmp/sinkstream-bench.lock deno run -A bench/tokenize_offload.ts [--model PATH] [--big-chars N]
 *       [--probes N] [--modes unloaded,sync,async,async-prefill,ws] [--json]
 *
 * A real gateway (createApp + the native engine) is served on a loopback port in this process; the probe
 * is a WebSocket client sending a short turn (max_output_tokens 4), one at a time, and TTFT is from its
 * response.create to the first text delta. The load, for the whole probe phase of a mode:
 *  - unloaded: none.
 *  - sync: the big turn encoded by ChatRenderer.encodeTurn on the event loop, back to back (what the
 *    gateway did before encodeTurnAsync).
 *  - async: the same turns through ChatRenderer.encodeTurnAsync (the Worker), back to back.
 *  - async-prefill: one big turn through encodeTurnAsync, then submitted to the scheduler: it prefills
 *    for the rest of the phase (the whole "1 MB prompt in flight").
 *  - ws: a second WebSocket client (bench/big_prompt_client.ts, a process of its own) sending the big prompt
 *    as items of 200 KB + response.create, cancelling each response once created: the path the gateway's
 *    sessions take.
 * The harness modes call the renderer of the served gateway directly. Also reported: the event loop's lag (how
 * late a 10 ms interval timer fires) during each mode, which separates a blocked loop from CPU shared
 * with the worker and the engine.
 */
import { parseArgs } from "node:util";
import { createEngine, ensureNativeLibrary, loadModel, loadTokenizer } from "../mod.ts";
import { createApp, type Gateway } from "../gateway/app.ts";
import type { ChatMessage } from "../gateway/chat/template.ts";
import { ConfigSchema } from "../gateway/config/config.ts";
import { Conversation } from "../gateway/scheduler/scheduler.ts";
import { bigText } from "./big_prompt_client.ts";
import { fmt, intFlag, percentile, RealtimeSession, sleep } from "./lib.ts";

const MODES = ["unloaded", "sync", "async", "async-prefill", "ws"] as const;
type Mode = typeof MODES[number];

const HELP = `usage: deno run -A bench/tokenize_offload.ts [flags]
  --model PATH    model (default ../shared/models/stories260K/stories260K.bin)
  --big-chars N   size of the big prompt in characters (default 1000000)
  --probes N      probe turns per mode (default 30)
  --modes LIST    comma-separated, of ${MODES.join(", ")} (default all; unloaded always runs first)
  --json          print the summary as JSON`;

function parseFlags() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      "big-chars": { type: "string", default: "1000000" },
      probes: { type: "string", default: "30" },
      modes: { type: "string", default: MODES.join(",") },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const modes = values.modes.split(",").map((m) => m.trim()) as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m} (${MODES.join(", ")})`);
  return {
    model: values.model ??
      new URL("../../shared/models/stories260K/stories260K.bin", import.meta.url).pathname,
    bigChars: intFlag("big-chars", values["big-chars"], 1000, 64 << 20),
    probes: intFlag("probes", values.probes, 3, 10_000),
    modes: ["unloaded" as Mode, ...modes.filter((m) => m !== "unloaded")],
    json: values.json,
  };
}

/** One probe turn: ms from response.create to its first text delta (or response.done when none). */
async function probe(s: RealtimeSession): Promise<number> {
  s.send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text: "Tell me about Lily." }] },
  });
  const sent = performance.now();
  s.send({ type: "response.create", response: { max_output_tokens: 4 } });
  let first = NaN;
  for (;;) {
    const e = await s.until(["response.output_text.delta", "response.done"]);
    if (Number.isNaN(first)) first = performance.now() - sent;
    if (e.type === "response.done") return first;
  }
}

/** Start the load of `mode`; resolves (after stop()) with how many big turns it got through. */
function startLoad(
  mode: Mode,
  gw: Gateway,
  wsUrl: URL,
  text: (round: number) => string,
): { stop: () => void; done: Promise<number> } {
  let stopped = false;
  const stop = () => (stopped = true);
  const turn = (round: number): ChatMessage[] => [{ role: "user", content: text(round) }];
  const r = gw.ctx.renderer;
  const run = async (): Promise<number> => {
    let n = 0;
    if (mode === "sync") {
      while (!stopped) {
        r.encodeTurn(turn(n++), true);
        await sleep(0);
      }
    } else if (mode === "async") {
      while (!stopped) await r.encodeTurnAsync(turn(n++), true);
    } else if (mode === "async-prefill") {
      const prompt = await r.encodeTurnAsync(turn(n++), true);
      const job = gw.scheduler.submit(new Conversation({ policy: "streaming", sinks: 4 }), {
        prompt,
        maxTokens: 1,
        stopTokens: new Set(),
        onToken: () => true,
      });
      while (!stopped) await sleep(20);
      job.cancel("bench done");
      await job.done;
    } else if (mode === "ws") {
      // In a process of its own (bench/big_prompt_client.ts): only the gateway's work shares this loop.
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("./big_prompt_client.ts", import.meta.url).pathname, "--url", wsUrl.href],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const out = child.stdout.pipeThrough(new TextDecoderStream());
      let printed = "";
      const reading = (async () => {
        for await (const chunk of out) printed += chunk;
      })();
      while (!stopped) await sleep(20);
      child.kill("SIGTERM");
      await child.status;
      await reading;
      n = Number(/turns (\d+)/.exec(printed)?.[1] ?? NaN);
    }
    return n;
  };
  return { stop, done: run() };
}

async function main(): Promise<void> {
  const flags = parseFlags();
  await ensureNativeLibrary();
  const model = await loadModel(flags.model);
  const engine = await createEngine(model, { threads: 1, maxSequences: 8 });
  const tokenizer = await loadTokenizer(flags.model);
  const config = ConfigSchema.parse({ port: 0, maxFrameBytes: 256 * 1024 });
  const gw = createApp({ engine, tokenizer, config, web: false });
  const server = gw.serve({ hostname: "127.0.0.1", port: 0 });
  const wsUrl = new URL(`ws://127.0.0.1:${server.addr.port}/v1/realtime`);
  const text = await bigText(flags.bigChars);
  const results: Record<
    string,
    { p50: number; p99: number; max: number; lagP99: number; lagMax: number; bigTurns: number }
  > = {};
  try {
    for (const mode of flags.modes) {
      const s = new RealtimeSession(wsUrl);
      await s.opened;
      await s.until(["session.created"]);
      for (let i = 0; i < 3; i++) await probe(s); // warm-up
      const load = startLoad(mode, gw, wsUrl, text);
      await sleep(mode === "unloaded" ? 0 : mode === "ws" ? 3000 : 300); // let the load get going (ws: a process)
      const ttft: number[] = [];
      const lag: number[] = [];
      let last = performance.now();
      const timer = setInterval(() => {
        const now = performance.now();
        lag.push(Math.max(0, now - last - 10));
        last = now;
      }, 10);
      for (let i = 0; i < flags.probes; i++) {
        ttft.push(await probe(s));
        await sleep(10);
      }
      clearInterval(timer);
      load.stop();
      const bigTurns = await load.done;
      s.close();
      results[mode] = {
        p50: percentile(ttft, 50),
        p99: percentile(ttft, 99),
        max: Math.max(...ttft),
        lagP99: percentile(lag, 99),
        lagMax: Math.max(...lag),
        bigTurns,
      };
    }
  } finally {
    await gw.shutdown();
    engine.close();
    model.close();
  }
  const base = results.unloaded;
  if (flags.json) {
    console.log(JSON.stringify({ bigChars: flags.bigChars, probes: flags.probes, results }, null, 2));
    return;
  }
  console.log(`big prompt ${flags.bigChars} chars, ${flags.probes} probes per mode, TTFT in ms`);
  console.log(
    "mode            p50      p99      max   p99-unloaded  loop lag p99/max  big turns  within 50 ms",
  );
  for (const [mode, r] of Object.entries(results)) {
    const d = r.p99 - base.p99;
    console.log(
      `${mode.padEnd(14)} ${fmt(r.p50).padStart(6)} ${fmt(r.p99).padStart(8)} ${fmt(r.max).padStart(8)} ` +
        `${fmt(d).padStart(13)} ${`${fmt(r.lagP99, 0)}/${fmt(r.lagMax, 0)}`.padStart(17)} ` +
        `${String(r.bigTurns).padStart(10)}  ${mode === "unloaded" ? "" : d <= 50 ? "yes" : "NO"}`,
    );
  }
}

if (import.meta.main) await main();
