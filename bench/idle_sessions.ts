/**
 * Idle-session memory benchmark: starts the gateway as a subprocess (bench/gateway_process.ts) on a
 * loopback port, opens N WebSocket sessions that each wait for `session.created` and then stay
 * idle, and reads the gateway's resident memory (VmRSS from /proc) before and after.
 *
 *   deno task bench:idle --sessions 1000 --target-mb 300
 *
 * With --url and --pid it measures an already running gateway instead. Exits non-zero when the
 * RSS with all sessions open is over --target-mb. Bounded: --timeout-s for the whole run.
 */
import { parseArgs } from "node:util";
import { SHARED_MODEL, startGatewayProcess } from "./gateway_process.ts";
import { assertLoopback, RealtimeSession, realtimeUrl, sleep, treeRss } from "./lib.ts";

const HELP = `usage: deno task bench:idle [flags]
  --sessions N      idle sessions to open (default 1000)
  --target-mb MB    fail when the gateway's RSS with the sessions open is above this (default 300)
  --model PATH      model for the gateway subprocess (default ../shared/models/stories260K/stories260K.bin)
  --url URL         measure a running gateway instead (loopback only); needs --pid
  --pid PID         process id of that gateway (its process tree is measured)
  --batch N         sessions opened concurrently at a time (default 100)
  --api-key KEY     sent as the openai-insecure-api-key subprotocol
  --timeout-s S     give up after S seconds (default 180)
  --json            print the summary as JSON`;

const MiB = 1024 * 1024;

function parseFlags() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      sessions: { type: "string", default: "1000" },
      "target-mb": { type: "string", default: "300" },
      model: { type: "string" },
      url: { type: "string" },
      pid: { type: "string" },
      batch: { type: "string", default: "100" },
      "api-key": { type: "string" },
      "timeout-s": { type: "string", default: "180" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const num = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new Error(`--${name} must be an integer in [${min}, ${max}]`);
    }
    return n;
  };
  if ((values.url === undefined) !== (values.pid === undefined)) {
    throw new Error("--url and --pid go together");
  }
  const url = values.url ? new URL(values.url) : null;
  if (url) assertLoopback(url);
  return {
    sessions: num("sessions", values.sessions, 1, 20_000),
    targetMb: num("target-mb", values["target-mb"], 1, 1_000_000),
    model: values.model ?? SHARED_MODEL,
    url,
    pid: values.pid ? num("pid", values.pid, 1, 2 ** 31) : null,
    batch: num("batch", values.batch, 1, 10_000),
    apiKey: values["api-key"],
    timeoutS: num("timeout-s", values["timeout-s"], 1, 3600),
    json: values.json,
  };
}

/** The gateway measured: a subprocess of ours, or one already running (then stop() leaves it alone). */
interface Gateway {
  url: URL;
  pid: number;
  stop(): Promise<unknown>;
}

async function main() {
  const opts = parseFlags();
  const deadline = performance.now() + opts.timeoutS * 1000;
  const gw: Gateway = opts.url && opts.pid
    ? { url: opts.url, pid: opts.pid, stop: () => Promise.resolve() }
    : await startGatewayProcess({
      model: opts.model,
      args: ["--max-sessions", String(opts.sessions + 16)],
      startTimeoutMs: Math.min(60_000, opts.timeoutS * 1000),
    });
  const sessions: RealtimeSession[] = [];
  let failures = 0;
  let firstError = "";
  try {
    await sleep(500);
    const baseline = treeRss(gw.pid);
    const wsUrl = realtimeUrl(gw.url);
    const t0 = performance.now();
    for (let i = 0; i < opts.sessions && performance.now() < deadline; i += opts.batch) {
      const n = Math.min(opts.batch, opts.sessions - i);
      const batch = Array.from({ length: n }, () => new RealtimeSession(wsUrl, opts.apiKey));
      sessions.push(...batch);
      const left = Math.max(1_000, deadline - performance.now());
      const results = await Promise.allSettled(batch.map(async (s) => {
        await s.opened;
        await s.until(["session.created"], left);
      }));
      for (const r of results) {
        if (r.status === "rejected") {
          failures++;
          firstError ||= r.reason instanceof Error ? r.reason.message : String(r.reason);
        }
      }
    }
    const openMs = performance.now() - t0;
    const opened = sessions.length - failures;
    // Let allocations settle (and a GC or two happen) before reading the RSS.
    await sleep(2_000);
    const loaded = treeRss(gw.pid);
    const sum = (xs: { rss: number }[]) => xs.reduce((a, x) => a + x.rss, 0);
    const top = (xs: { rss: number }[]) => (xs.length > 0 ? xs[0].rss : NaN);
    const summary = {
      sessionsRequested: opts.sessions,
      sessionsOpen: opened,
      failures,
      firstError: firstError || undefined,
      openSeconds: Number((openMs / 1000).toFixed(3)),
      gatewayPid: gw.pid,
      baselineRssMb: Number((top(baseline) / MiB).toFixed(1)),
      loadedRssMb: Number((top(loaded) / MiB).toFixed(1)),
      loadedTreeRssMb: Number((sum(loaded) / MiB).toFixed(1)),
      perSessionKb: Number((((top(loaded) - top(baseline)) / Math.max(1, opened)) / 1024).toFixed(1)),
      targetMb: opts.targetMb,
      processes: loaded.map((p) => ({ pid: p.pid, rssMb: Number((p.rss / MiB).toFixed(1)), cmd: p.cmd })),
    };
    const pass = failures === 0 && opened === opts.sessions && summary.loadedRssMb < opts.targetMb;
    if (opts.json) {
      console.log(JSON.stringify({ ...summary, pass }, null, 2));
    } else {
      console.log(`sinkstream idle sessions: ${opened}/${opts.sessions} open in ${summary.openSeconds} s`);
      if (failures > 0) console.log(`  failures: ${failures} (first: ${firstError})`);
      console.log(
        `  gateway RSS: ${summary.baselineRssMb} MB before, ${summary.loadedRssMb} MB with sessions open`,
      );
      console.log(
        `  per session: ${summary.perSessionKb} KB; process tree total ${summary.loadedTreeRssMb} MB`,
      );
      console.log(`  target < ${opts.targetMb} MB: ${pass ? "PASS" : "FAIL"}`);
    }
    if (!pass) Deno.exitCode = 1;
  } finally {
    for (const s of sessions) s.close();
    await Promise.race([Promise.allSettled(sessions.map((s) => s.closed)), sleep(5_000)]);
    await gw.stop();
  }
}

if (import.meta.main) {
  await main();
}
