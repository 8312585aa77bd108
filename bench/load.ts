/**
 * Load benchmark: N concurrent WebSocket sessions, each holding a multi-round chat with MT-Bench
 * prompts, against a running gateway on this machine.
 *
 *   deno task bench:load --url http://127.0.0.1:8000 --sessions 8 --rounds 4 --max-tokens 64 --duration-s 60
 *
 * Reports aggregate output tokens/s, client-side time to first token (TTFT) and inter-token latency
 * (ITL) percentiles, and from the gateway's /metrics (differences of two scrapes, so only this run
 * counts) p50 / p99 of the latency the gateway adds per token (`gateway_token_latency_seconds`:
 * engine step resolved -> that token's frame handed to the socket), of the engine step and of the
 * scheduler's per-iteration overhead, estimated from the histogram buckets (see
 * histogramQuantile in lib.ts), plus the older mean-based estimates (`gatewayOverhead` below). Bounded in count (sessions x rounds) and
 * in time (--duration-s: no round starts after it, and a round still running 30 s later is cancelled).
 */
import { parseArgs } from "node:util";
import {
  assertLoopback,
  fetchMetrics,
  fmt,
  histogramQuantile,
  loadPrompts,
  mean,
  metricSum,
  mtBenchTurn,
  percentile,
  type Prompt,
  RealtimeSession,
  realtimeUrl,
  type Sample,
  SHARED_PROMPTS,
} from "./lib.ts";

interface RoundResult {
  ok: boolean;
  status: string;
  ttftMs: number;
  /** Gaps between consecutive text deltas of this round, ms. */
  itlMs: number[];
  deltas: number;
  outputTokens: number;
  inputTokens: number;
  durationMs: number;
  error?: string;
}

const HELP = `usage: deno task bench:load [flags]
  --url URL          gateway base URL (default http://127.0.0.1:8000; loopback only)
  --sessions N       concurrent sessions (default 4)
  --rounds R         chat rounds per session (default 4; MT-Bench turns are cycled)
  --max-tokens M     max output tokens per response (default 64)
  --duration-s S     stop starting rounds after S seconds (default 60)
  --prompts FILE     MT-Bench jsonl (default ../shared/data/mt_bench.jsonl)
  --api-key KEY      sent as the openai-insecure-api-key subprotocol and as Bearer for /metrics
  --json             print the summary as JSON`;

function parseFlags() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string", default: "http://127.0.0.1:8000" },
      sessions: { type: "string", default: "4" },
      rounds: { type: "string", default: "4" },
      "max-tokens": { type: "string", default: "64" },
      "duration-s": { type: "string", default: "60" },
      prompts: { type: "string" },
      "api-key": { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const int = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new Error(`--${name} must be an integer in [${min}, ${max}]`);
    }
    return n;
  };
  const url = new URL(values.url);
  assertLoopback(url);
  return {
    url,
    sessions: int("sessions", values.sessions, 1, 10_000),
    rounds: int("rounds", values.rounds, 1, 10_000),
    maxTokens: int("max-tokens", values["max-tokens"], 1, 1_000_000),
    durationS: int("duration-s", values["duration-s"], 1, 86_400),
    prompts: values.prompts ?? SHARED_PROMPTS,
    apiKey: values["api-key"],
    json: values.json,
  };
}

/** Cancel the in-flight response and stop when this signal fires. */
async function runRound(s: RealtimeSession, text: string, hardStop: AbortSignal): Promise<RoundResult> {
  const result: RoundResult = {
    ok: false,
    status: "?",
    ttftMs: NaN,
    itlMs: [],
    deltas: 0,
    outputTokens: 0,
    inputTokens: 0,
    durationMs: NaN,
  };
  let t0 = 0;
  let last = NaN;
  s.onEvent = (event, at) => {
    if (event.type !== "response.output_text.delta" || !event.delta) return;
    if (result.deltas === 0) result.ttftMs = at - t0;
    else result.itlMs.push(at - last);
    last = at;
    result.deltas += 1;
  };
  const onStop = () => s.send({ type: "response.cancel" });
  hardStop.addEventListener("abort", onStop, { once: true });
  try {
    t0 = performance.now();
    s.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    s.send({ type: "response.create" });
    const done = await s.until(["response.done"], 600_000);
    result.durationMs = performance.now() - t0;
    result.status = done.response?.status ?? "?";
    result.ok = result.status === "completed" || result.status === "incomplete";
    result.outputTokens = Number(done.response?.usage?.output_tokens ?? result.deltas);
    result.inputTokens = Number(done.response?.usage?.input_tokens ?? 0);
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    hardStop.removeEventListener("abort", onStop);
    s.onEvent = null;
  }
  return result;
}

async function runSession(
  index: number,
  opts: ReturnType<typeof parseFlags>,
  prompts: Prompt[],
  softDeadline: number,
  hardStop: AbortSignal,
): Promise<{ rounds: RoundResult[]; error?: string }> {
  const rounds: RoundResult[] = [];
  const s = new RealtimeSession(realtimeUrl(opts.url), opts.apiKey);
  try {
    await s.opened;
    await s.until(["session.created"], 30_000);
    s.send({ type: "session.update", session: { max_output_tokens: opts.maxTokens } });
    await s.until(["session.updated"], 30_000);
    for (let r = 0; r < opts.rounds; r++) {
      if (performance.now() > softDeadline || hardStop.aborted) break;
      const res = await runRound(s, mtBenchTurn(prompts, index, r), hardStop);
      rounds.push(res);
      if (res.error) break;
    }
    return { rounds };
  } catch (err) {
    return { rounds, error: err instanceof Error ? err.message : String(err) };
  } finally {
    s.close();
  }
}

const GATEWAY_TOKEN = "sinkstream:gateway_token_latency_seconds";
const ENGINE_STEP = "sinkstream:engine_step_seconds";
const SCHED_OVERHEAD = "sinkstream:scheduler_overhead_seconds";

/** p50 / p99 / mean (ms) of a histogram's observations between two scrapes, from its buckets. */
function histogramMs(before: Sample[] | null, after: Sample[] | null, name: string) {
  const d = histogramDelta(before, after, [name]);
  return {
    p50: histogramQuantile(before, after, name, 0.5) * 1000,
    p99: histogramQuantile(before, after, name, 0.99) * 1000,
    mean: meanMs(d),
    count: d?.count ?? 0,
  };
}

/** Engine step time histogram (seconds), if the gateway exposes one. */
const STEP_METRICS = ["sinkstream:engine_step_seconds", "sinkstream:engine_step_duration_seconds"];
/** Server-side time from response request to first token (seconds), recorded when the step returns. */
const SERVER_TTFT = "sinkstream:time_to_first_token_seconds";
const SERVER_ITL = "sinkstream:inter_token_latency_seconds";

function histogramDelta(
  before: Sample[] | null,
  after: Sample[] | null,
  names: string[],
): { name: string; sum: number; count: number } | null {
  if (!before || !after) return null;
  for (const name of names) {
    const sum = metricSum(after, `${name}_sum`) - metricSum(before, `${name}_sum`);
    const count = metricSum(after, `${name}_count`) - metricSum(before, `${name}_count`);
    if (Number.isFinite(sum) && Number.isFinite(count) && count > 0) return { name, sum, count };
  }
  return null;
}

const meanMs = (h: { sum: number; count: number } | null) => (h ? (h.sum / h.count) * 1000 : NaN);

/**
 * What the gateway adds per token, two ways (both need /metrics):
 *  - stepOverheadMs: client mean inter-token latency minus the engine's mean step time. Each
 *    decoding session gets one token per engine step, so the gap a client sees between tokens is
 *    one step plus the gateway's work around it (scheduling, stats, detokenising, JSON, socket
 *    writes, the client's event loop). Needs an engine step histogram.
 *  - deliveryOffsetMs: client mean TTFT minus the server's mean TTFT. The server stamps a token
 *    when the engine step that produced it returns; the client when the delta frame arrives. The
 *    difference is the constant delay every token carries between leaving the engine and reaching
 *    the client (plus the request's way in and tokenising the prompt, once per response).
 */
function gatewayOverhead(
  before: Sample[] | null,
  after: Sample[] | null,
  itlMeanMs: number,
  ttftMeanMs: number,
) {
  const step = histogramDelta(before, after, STEP_METRICS);
  const serverTtft = histogramDelta(before, after, [SERVER_TTFT]);
  const serverItl = histogramDelta(before, after, [SERVER_ITL]);
  return {
    engineStepMeanMs: meanMs(step),
    stepOverheadMs: step ? itlMeanMs - meanMs(step) : NaN,
    serverTtftMeanMs: meanMs(serverTtft),
    serverItlMeanMs: meanMs(serverItl),
    deliveryOffsetMs: serverTtft ? ttftMeanMs - meanMs(serverTtft) : NaN,
    engineStepMetric: step?.name ?? null,
  };
}

async function main() {
  const opts = parseFlags();
  const prompts = loadPrompts(opts.prompts);
  const before = await fetchMetrics(opts.url, opts.apiKey);
  const started = performance.now();
  const softDeadline = started + opts.durationS * 1000;
  const hard = new AbortController();
  const hardTimer = setTimeout(() => hard.abort(), opts.durationS * 1000 + 30_000);
  const sessions = await Promise.all(
    Array.from({ length: opts.sessions }, (_, i) => runSession(i, opts, prompts, softDeadline, hard.signal)),
  );
  clearTimeout(hardTimer);
  const wallS = (performance.now() - started) / 1000;
  const after = await fetchMetrics(opts.url, opts.apiKey);

  const rounds = sessions.flatMap((s) => s.rounds);
  const good = rounds.filter((r) => r.ok);
  const ttft = good.map((r) => r.ttftMs).filter(Number.isFinite);
  const itl = good.flatMap((r) => r.itlMs);
  const outTokens = rounds.reduce((a, r) => a + r.outputTokens, 0);
  const inTokens = rounds.reduce((a, r) => a + r.inputTokens, 0);
  const deltas = rounds.reduce((a, r) => a + r.deltas, 0);
  const errors = [
    ...sessions.filter((s) => s.error).map((s) => s.error!),
    ...rounds.filter((r) => r.error).map((r) => r.error!),
  ];
  const statuses: Record<string, number> = {};
  for (const r of rounds) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const overhead = gatewayOverhead(before, after, mean(itl), mean(ttft));
  const gatewayTokenMs = histogramMs(before, after, GATEWAY_TOKEN);
  const engineStepMs = histogramMs(before, after, ENGINE_STEP);
  const schedulerOverheadMs = histogramMs(before, after, SCHED_OVERHEAD);

  const summary = {
    url: opts.url.origin,
    sessions: opts.sessions,
    roundsPerSession: opts.rounds,
    maxTokens: opts.maxTokens,
    wallS: Number(wallS.toFixed(3)),
    roundsDone: rounds.length,
    statuses,
    errors: errors.length,
    firstError: errors[0],
    inputTokens: inTokens,
    outputTokens: outTokens,
    deltas,
    outputTokensPerS: outTokens / wallS,
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99), mean: mean(ttft) },
    itlMs: { p50: percentile(itl, 50), p99: percentile(itl, 99), mean: mean(itl) },
    gatewayTokenLatencyMs: gatewayTokenMs,
    engineStepMs,
    schedulerOverheadMs,
    gateway: overhead,
    serverMetrics: before !== null,
  };
  if (opts.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(
      `sinkstream load: ${opts.sessions} sessions x ${opts.rounds} rounds, max ${opts.maxTokens} tokens`,
    );
    console.log(
      `  wall ${fmt(wallS)} s, rounds ${rounds.length} ${JSON.stringify(statuses)}, errors ${errors.length}`,
    );
    if (errors[0]) console.log(`  first error: ${errors[0]}`);
    console.log(`  tokens: ${inTokens} in, ${outTokens} out (${deltas} deltas)`);
    console.log(`  throughput: ${fmt(summary.outputTokensPerS, 1)} output tokens/s`);
    console.log(`  TTFT ms: p50 ${fmt(summary.ttftMs.p50)}  p99 ${fmt(summary.ttftMs.p99)}`);
    console.log(`  ITL  ms: p50 ${fmt(summary.itlMs.p50, 3)}  p99 ${fmt(summary.itlMs.p99, 3)}`);
    const q = (h: { p50: number; p99: number; mean: number; count: number }) =>
      `p50 ${fmt(h.p50, 3)}  p99 ${fmt(h.p99, 3)}  mean ${fmt(h.mean, 3)} ms (n=${h.count})`;
    console.log(`  gateway-added latency per token (step resolved -> frame sent): ${q(gatewayTokenMs)}`);
    console.log(`  engine step:        ${q(engineStepMs)}`);
    console.log(`  scheduler overhead: ${q(schedulerOverheadMs)} per step (iteration - step)`);
    console.log(
      `  server (from /metrics): TTFT mean ${fmt(overhead.serverTtftMeanMs)} ms, ITL mean ${
        fmt(overhead.serverItlMeanMs, 3)
      } ms, engine step mean ${fmt(overhead.engineStepMeanMs, 3)} ms`,
    );
    console.log(
      `  gateway-added per token: delivery offset ${
        fmt(overhead.deliveryOffsetMs, 3)
      } ms (client TTFT - server TTFT);` +
        ` per-step overhead ${fmt(overhead.stepOverheadMs, 3)} ms (client ITL - engine step)`,
    );
    if (!before) console.log("  (no /metrics: server-side numbers unavailable)");
  }
  if (rounds.length === 0 || good.length === 0) Deno.exit(1);
}

if (import.meta.main) {
  await main();
}
