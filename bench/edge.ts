/**
 * Edge benchmark: three backend gateways and one edge (docs/edge.md), all subprocesses on loopback.
 *
 *   flock /tmp/sinkstream-bench.lock deno task bench:edge --pairs 100 --max-tokens 64 --rounds 2
 *
 * 1. Edge-added latency per token, side by side in one run. Each of `--pairs` sessions through the edge
 *    gets a twin session straight on the backend the edge placed it on; every round sends the same greedy
 *    turn to both at once. Twins decode in the same engine steps (one token per step each, at a fixed
 *    offset of whole steps), so a step's token leaves the backend for both at the same moment: per token,
 *    its arrival through the edge minus the arrival of the twin's token from the same step is what the
 *    edge adds (the step offset of a twin pair is found per response: the shift that lines the two
 *    streams up best). p50 / p99 over all tokens of all pairs, next to the edge's own in-process part
 *    (`sinkstream:edge_relay_latency_seconds`) and the direct sessions' inter-token latency.
 * 2. Edge RSS per open session: `--idle` more sessions opened through the edge and left idle; (edge RSS
 *    with them − before) / sessions.
 * 3. Failover: kill -9 the backend of one edge session; time until its `sinkstream.session.migrated`, and
 *    until the first token of the next answer it then asks for.
 */
import { parseArgs } from "node:util";
import {
  fetchMetrics,
  fmt,
  histogramQuantile,
  intFlag,
  percentile,
  processRss,
  RealtimeSession,
  type ServerEvent,
  type ServerProcess,
  sleep,
  spawnServer,
} from "./lib.ts";
import { startTaskArgs } from "./gateway_process.ts";

const HELP = `usage: deno task bench:edge [flags]
  --pairs N        sessions through the edge, each with a direct twin (default 100)
  --rounds R       rounds per pair (default 2)
  --max-tokens M   output tokens per response (default 64)
  --idle N         extra idle sessions for the edge's RSS per session (default 500)
  --threads T      CPU threads per backend (default 1)
  --model PATH     backend model (default ../shared/models/stories260K/stories260K.bin)
  --edge-nice=N    renice the edge process to N (e.g. -10), as if it had a core of its own: on one small
                   machine it otherwise waits behind the backends' compute (default: no renice)
  --json           print the summary as JSON`;

const KEY = "bench-backend-key-0123456789";
const PROMPTS = ["Tell me a story about a dog.", "What happened next?", "How did it end?", "Why?"];

function flags() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      pairs: { type: "string", default: "100" },
      rounds: { type: "string", default: "2" },
      "max-tokens": { type: "string", default: "64" },
      idle: { type: "string", default: "500" },
      threads: { type: "string", default: "1" },
      model: { type: "string" },
      "edge-nice": { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  return {
    pairs: intFlag("pairs", values.pairs, 1, 1000),
    rounds: intFlag("rounds", values.rounds, 1, 16),
    maxTokens: intFlag("max-tokens", values["max-tokens"], 2, 4096),
    idle: intFlag("idle", values.idle, 0, 10_000),
    threads: intFlag("threads", values.threads, 0, 256),
    model: values.model ??
      new URL("../../shared/models/stories260K/stories260K.bin", import.meta.url).pathname,
    edgeNice: values["edge-nice"] === undefined
      ? undefined
      : intFlag("edge-nice", values["edge-nice"], -20, 19),
    json: values.json,
  };
}

/**
 * `renice -n N` every thread of process `pid` (Linux nice values are per thread; a negative N needs root);
 * throws with renice's output when it fails.
 */
async function renice(pid: number, n: number): Promise<void> {
  const tids = [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => e.name);
  const out = await new Deno.Command("renice", { args: ["-n", String(n), "-p", ...tids] }).output();
  if (!out.success) throw new Error(`renice ${n} ${pid}: ${new TextDecoder().decode(out.stderr)}`);
}

/** Arrival times (performance.now()) of a response's text deltas. */
async function respond(s: RealtimeSession, text: string, maxTokens: number): Promise<number[]> {
  const times: number[] = [];
  s.onEvent = (e, at) => {
    if (e.type === "response.output_text.delta") times.push(at);
  };
  s.send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  });
  s.send({ type: "response.create", response: { max_output_tokens: maxTokens } });
  await s.until(["response.done"]);
  s.onEvent = null;
  return times;
}

/** Per token: edge arrival − twin arrival of the token from the same step (the best whole-step shift). */
function added(edge: number[], direct: number[]): number[] {
  let best: number[] = [];
  let bestScore = Infinity;
  for (let shift = -4; shift <= 4; shift++) {
    const d: number[] = [];
    for (let k = 0; k < edge.length; k++) {
      const j = k + shift;
      if (j >= 0 && j < direct.length) d.push(edge[k] - direct[j]);
    }
    if (d.length < Math.min(edge.length, direct.length) / 2) continue;
    const score = percentile(d.map(Math.abs), 50);
    if (score < bestScore) {
      bestScore = score;
      best = d;
    }
  }
  return best;
}

async function open(url: URL): Promise<{ s: RealtimeSession; created: ServerEvent }> {
  const s = new RealtimeSession(url);
  await s.opened;
  return { s, created: await s.until(["session.created"]) };
}

const realtime = (p: ServerProcess) => new URL(`${p.http.replace(/^http/, "ws")}/v1/realtime`);

async function main(): Promise<void> {
  const o = flags();
  const maxSessions = String(2 * o.pairs + o.idle + 64);
  const backends = await Promise.all([0, 1, 2].map(() =>
    spawnServer([
      ...startTaskArgs(),
      "--model",
      o.model,
      "--port",
      "0",
      "--threads",
      String(o.threads),
      "--backend-key",
      KEY,
      "--max-sessions",
      maxSessions,
    ], "backend")
  ));
  const edge = await spawnServer([
    "run",
    "--allow-net",
    "--allow-env",
    "--unstable-kv",
    "gateway/edge/main.ts",
    ...backends.flatMap((b) => ["--backend", b.http]),
    "--kv",
    ":memory:",
    "--port",
    "0",
    "--backend-key",
    KEY,
  ], "edge");
  if (o.edgeNice !== undefined) await renice(edge.child.pid, o.edgeNice);
  const all: RealtimeSession[] = [];
  try {
    // 1. Twins.
    const pairs = await Promise.all(Array.from({ length: o.pairs }, async () => {
      const e = await open(realtime(edge));
      const id = e.created.session.id as string;
      let home = -1;
      for (let i = 0; home < 0 && i < 500; i++) {
        const line = edge.lines.find((l) => l.includes(`placed ${id} on `));
        if (line) home = Number(/ on b(\d+)/.exec(line)![1]);
        else await sleep(10);
      }
      const d = await open(realtime(backends[home]));
      all.push(e.s, d.s);
      return { edge: e.s, direct: d.s, home };
    }));
    const before = await fetchMetrics(new URL(edge.http));
    const perToken: number[] = [];
    const itl: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const prompt = PROMPTS[r % PROMPTS.length];
      const results = await Promise.all(pairs.map(async (p) => {
        const [e, d] = await Promise.all([
          respond(p.edge, prompt, o.maxTokens),
          respond(p.direct, prompt, o.maxTokens),
        ]);
        return { e, d };
      }));
      for (const { e, d } of results) {
        perToken.push(...added(e, d));
        for (let k = 1; k < d.length; k++) itl.push(d[k] - d[k - 1]);
      }
    }
    const after = await fetchMetrics(new URL(edge.http));
    const relayP50 = histogramQuantile(before, after, "sinkstream:edge_relay_latency_seconds", 0.5) * 1000;
    const relayP99 = histogramQuantile(before, after, "sinkstream:edge_relay_latency_seconds", 0.99) * 1000;

    // 2. RSS per open session.
    await sleep(1000);
    const rss0 = processRss(edge.child.pid);
    const idle = [];
    for (let i = 0; i < o.idle; i += 100) {
      idle.push(
        ...await Promise.all(Array.from({ length: Math.min(100, o.idle - i) }, () => open(realtime(edge)))),
      );
    }
    all.push(...idle.map((x) => x.s));
    await sleep(2000);
    const rss1 = processRss(edge.child.pid);
    const perSessionKb = o.idle > 0 ? (rss1 - rss0) / o.idle / 1024 : NaN;

    // 3. Failover of pair 0's edge session.
    const victim = pairs[0];
    const t0 = performance.now();
    await backends[victim.home].kill("SIGKILL");
    await victim.edge.until(["sinkstream.session.migrated"], 60_000);
    const tMigrated = performance.now() - t0;
    const next = await respond(victim.edge, "Where are we?", 4);
    const tFirstToken = (next[0] ?? NaN) - t0;

    const summary = {
      pairs: o.pairs,
      rounds: o.rounds,
      tokens: perToken.length,
      addedMsP50: percentile(perToken, 50),
      addedMsP99: percentile(perToken, 99),
      edgeRelayMsP50: relayP50,
      edgeRelayMsP99: relayP99,
      directItlMsP50: percentile(itl, 50),
      directItlMsP99: percentile(itl, 99),
      edgeRssMbBefore: rss0 / 2 ** 20,
      edgeRssMbWithIdle: rss1 / 2 ** 20,
      edgeRssKbPerSession: perSessionKb,
      failoverToMigratedMs: tMigrated,
      failoverToFirstTokenMs: tFirstToken,
    };
    if (o.json) console.log(JSON.stringify(summary, null, 2));
    else {
      console.log(
        `sinkstream edge: ${o.pairs} pairs (edge + direct twin) over 3 backends, ${o.rounds} rounds`,
      );
      console.log(
        `  edge-added latency per token: p50 ${fmt(summary.addedMsP50, 3)} ms, p99 ${
          fmt(summary.addedMsP99, 3)
        } ms ` +
          `(${perToken.length} tokens); in the edge process: p50 ${fmt(relayP50, 3)} ms, p99 ${
            fmt(relayP99, 3)
          } ms`,
      );
      console.log(
        `  direct inter-token latency: p50 ${fmt(summary.directItlMsP50)} ms, p99 ${
          fmt(summary.directItlMsP99)
        } ms`,
      );
      console.log(
        `  edge RSS: ${fmt(summary.edgeRssMbBefore, 1)} MB, with ${o.idle} more idle sessions ` +
          `${fmt(summary.edgeRssMbWithIdle, 1)} MB: ${fmt(perSessionKb, 1)} KB per session`,
      );
      console.log(
        `  failover: migrated ${fmt(tMigrated, 1)} ms after kill -9, first token of the next answer ` +
          `${fmt(tFirstToken, 1)} ms after it`,
      );
    }
  } finally {
    for (const s of all) s.close();
    await sleep(200);
    await edge.kill("SIGTERM");
    await Promise.all(backends.map((b) => b.kill("SIGTERM")));
  }
}

if (import.meta.main) await main();
