/**
 * Soak (issue #12 "Done when"): normal chat next to hostile clients, against a gateway process of its own.
 *
 *   flock /tmp/sinkstream-bench.lock deno task bench:soak [--minutes 10] [--sessions 100] [--hostile 5]
 *
 * Two runs of --minutes each, each on a fresh gateway subprocess (bench/gateway_process.ts: --model, the
 * default limits, --max-sessions big enough for the normal sessions and the sessions the hostile clients
 * leave waiting for a resume):
 *   A (unloaded): --sessions normal sessions (bench/soak_normal.ts: greedy multi-round MT-Bench chat,
 *     max_output_tokens --max-tokens, staggered starts, short think times);
 *   B: the same sessions next to --hostile hostile clients (bench/hostile.ts, its own process: flooder,
 *     huge items, never reading, faulty dense, HTTP abuser).
 * The gateway's RSS (its process tree) is sampled every second. Exit code 1 when the gateway died (or
 * /healthz failed at the end), a normal round failed or its greedy output differs between A and B, B's
 * p99 time to first token is over 2x A's, or the max RSS of a run is over --rss-ceiling-mb.
 *
 * The RSS ceiling, 2048 MB by default, from the limits (defaults) and the model (stories260K). What the
 * process may hold live:
 *  - at rest ~75 MB (runtime, model, tokenizer), and the tokenizer worker's isolate ~20 MB (measured);
 *  - client input not consumed yet: at most --input-budget-mb, 512 MiB over all sessions (here: mostly
 *    the huge-items client's abandoned sessions, 2 MiB of items each, kept for --session-ttl 60 s);
 *  - the turn being tokenised: under 64 B per character of a 2 MiB turn, ~128 MiB (input_flood.test.ts);
 *  - KV caches, a full window each, 512 tokens x 2560 B = 1.25 MiB: the 100 normal sessions and about as
 *    many that hostile clients leave waiting for a resume, ~250 MiB;
 *  - send queues: the flooder's --max-send-buffer-bytes 8 MiB, ~--backpressure-bytes 1 MiB for each paused
 *    client, next to nothing for clients that read: ~16 MiB.
 * ~1 GB in all at worst. Then garbage: 250 KB items pass through as frames, strings, parsed events and
 * echoes, and V8 collects the old generation only once it has grown by a factor of the live size. With
 * V8's own factor the 10-minute run peaked at 2124 MB (682 MB at the end); the start task now sets it to
 * 1.25 (docs/decisions.md D54), which keeps peaks near 1.25x the live size. A limit that stops holding grows
 * past 2 GB within minutes (the gateway without input limits reached 4.5 GB on one client's 200 items).
 */
import { parseArgs } from "node:util";
import { SHARED_MODEL, startGatewayProcess } from "./gateway_process.ts";
import { type HostileReport, KINDS } from "./hostile.ts";
import { intFlag, loadPrompts, type Prompt, SHARED_PROMPTS, sleep } from "./lib.ts";
import { runNormalSessions } from "./soak_normal.ts";
import {
  compareOutputs,
  failures,
  formatText,
  rssStats,
  type RunSummary,
  summarizeRounds,
  ttftRatio,
} from "./soak_summary.ts";

const HELP = `usage: deno task bench:soak [flags]
  --minutes M          length of each run (default 10; fractions allowed)
  --sessions N         normal sessions (default 100)
  --hostile N          hostile clients in run B (default 5: one of each kind)
  --max-tokens N       max_output_tokens of a normal round (default 32)
  --rss-ceiling-mb MB  fail when a run's max RSS is over this (default 2048; see the file header)
  --kinds K,...        kinds of hostile client, cycled (default all: bench/hostile.ts)
  --model PATH         model (default ../shared/models/stories260K/stories260K.bin)
  --prompts FILE       MT-Bench jsonl (default ../shared/data/mt_bench.jsonl)
  --threads N          the gateway's --threads (default: its own default, all cores)
  --json               print the summary as JSON`;

/** Room in --max-sessions for the sessions the hostile clients leave behind (kept for --session-ttl). */
const HOSTILE_SESSION_ROOM = 1024;
/** How long after the run the hostile clients' process may take to finish its last cycles. */
const HOSTILE_GRACE_MS = 120_000;
const RSS_SAMPLE_MS = 1_000;

function parseFlags() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      minutes: { type: "string", default: "10" },
      sessions: { type: "string", default: "100" },
      hostile: { type: "string", default: "5" },
      "max-tokens": { type: "string", default: "32" },
      "rss-ceiling-mb": { type: "string", default: "2048" },
      model: { type: "string", default: SHARED_MODEL },
      prompts: { type: "string", default: SHARED_PROMPTS },
      threads: { type: "string" },
      kinds: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  for (const k of values.kinds?.split(",") ?? []) {
    if (!(k.trim() in KINDS)) throw new Error(`--kinds: unknown ${k} (${Object.keys(KINDS).join(", ")})`);
  }
  const minutes = Number(values.minutes);
  if (!(minutes > 0 && minutes <= 24 * 60)) throw new Error("--minutes must be a number in (0, 1440]");
  return {
    minutes,
    sessions: intFlag("sessions", values.sessions, 1, 10_000),
    hostile: intFlag("hostile", values.hostile, 0, 100),
    maxTokens: intFlag("max-tokens", values["max-tokens"], 1, 4096),
    rssCeilingMb: intFlag("rss-ceiling-mb", values["rss-ceiling-mb"], 1, 1 << 20),
    model: values.model,
    prompts: values.prompts,
    threads: values.threads === undefined ? null : intFlag("threads", values.threads, 0, 1024),
    kinds: values.kinds ?? null,
    json: values.json,
  };
}
type Options = ReturnType<typeof parseFlags>;

/** bench/hostile.ts as a subprocess: its reports, or why there are none. */
async function runHostileProcess(url: URL, clients: number, seconds: number, kinds: string | null) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./hostile.ts", import.meta.url).pathname,
      "--url",
      url.href,
      "--seconds",
      String(seconds),
      "--clients",
      String(clients),
      ...(kinds !== null ? ["--kinds", kinds] : []),
      "--json",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), seconds * 1000 + HOSTILE_GRACE_MS);
  const out = await child.output();
  clearTimeout(killer);
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (out.code !== 0 || stdout === "") {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    return { reports: [] as HostileReport[], error: `exit ${out.code ?? out.signal}: ${err}` };
  }
  return { reports: JSON.parse(stdout.split("\n").at(-1)!) as HostileReport[], error: undefined };
}

async function healthy(url: URL): Promise<boolean> {
  try {
    const res = await fetch(new URL("/healthz", url), { signal: AbortSignal.timeout(5_000) });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** One run on a fresh gateway: its summary, and its rounds for the comparison with the other run. */
async function runOnce(label: string, opts: Options, prompts: Prompt[], hostile: number) {
  const args = ["--max-sessions", String(opts.sessions + HOSTILE_SESSION_ROOM)];
  if (opts.threads !== null) args.push("--threads", String(opts.threads));
  const gw = await startGatewayProcess({ model: opts.model, args });
  const samples: number[] = [gw.rssBytes()];
  const sampler = setInterval(() => samples.push(gw.rssBytes()), RSS_SAMPLE_MS);
  const started = performance.now();
  const seconds = Math.ceil(opts.minutes * 60);
  try {
    const hostileRun = hostile > 0 ? runHostileProcess(gw.url, hostile, seconds, opts.kinds) : null;
    const normal = await runNormalSessions({
      base: gw.url,
      sessions: opts.sessions,
      maxTokens: opts.maxTokens,
      prompts,
      deadline: started + opts.minutes * 60_000,
    });
    const h = hostileRun ? await hostileRun : { reports: [], error: undefined };
    await sleep(RSS_SAMPLE_MS); // one more sample after everything has ended
    clearInterval(sampler);
    const aliveThroughout = gw.alive;
    const healthyAtEnd = aliveThroughout && await healthy(gw.url);
    const summary: RunSummary = {
      label,
      wallS: (performance.now() - started) / 1000,
      sessions: opts.sessions,
      sessionErrors: normal.sessionErrors,
      ...summarizeRounds(normal.rounds),
      rssMb: rssStats(samples),
      aliveThroughout,
      healthyAtEnd,
      hostile: h.reports,
      ...(h.error ? { hostileError: h.error } : {}),
      ...(aliveThroughout ? {} : { stderrTail: gw.stderrTail() }),
    };
    return { summary, rounds: normal.rounds };
  } finally {
    clearInterval(sampler);
    await gw.stop();
  }
}

async function main() {
  const opts = parseFlags();
  const prompts = loadPrompts(opts.prompts);
  const runA = await runOnce("A", opts, prompts, 0);
  const runB = await runOnce("B", opts, prompts, opts.hostile);
  const [a, b] = [runA.summary, runB.summary];
  const outputs = compareOutputs(runA.rounds, runB.rounds);
  const failed = failures(a, b, outputs, opts.rssCeilingMb);
  const summary = {
    title:
      `sinkstream soak: ${opts.minutes} min per run, ${opts.sessions} sessions, ${opts.hostile} hostile ` +
      `clients in run B, RSS ceiling ${opts.rssCeilingMb} MB`,
    settings: opts,
    runs: [a, b],
    outputs,
    ttftP99Ratio: ttftRatio(a, b),
    failures: failed,
    pass: failed.length === 0,
  };
  console.log(opts.json ? JSON.stringify(summary, null, 2) : formatText(summary));
  if (failed.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
