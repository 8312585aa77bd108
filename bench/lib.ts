/**
 * Shared pieces of the benchmark tools: MT-Bench prompts, a minimal Realtime (text subset) client session,
 * percentiles, a Prometheus text parser, process-tree RSS, and the loopback-only guard.
 */

/** Benchmarks only ever talk to this machine. */
export function assertLoopback(url: URL): void {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const loopback = host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!loopback) {
    throw new Error(
      `refusing to benchmark ${url.host}: only loopback addresses (127.0.0.0/8, ::1) are allowed`,
    );
  }
}

/** The WebSocket URL of the realtime endpoint of a gateway at `base` (http:// or ws://). */
export function realtimeUrl(base: URL): URL {
  const u = new URL("/v1/realtime", base);
  u.protocol = base.protocol === "https:" || base.protocol === "wss:" ? "wss:" : "ws:";
  return u;
}

/** Nearest-rank percentile of an unsorted sample; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

export function mean(values: number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** An integer flag value in [min, max], or an error naming the flag. */
export function intFlag(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`--${name} must be an integer in [${min}, ${max}]`);
  }
  return n;
}

export function fmt(value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

/** MT-Bench questions of ../shared (one JSON object a line). */
export const SHARED_PROMPTS = new URL("../../shared/data/mt_bench.jsonl", import.meta.url).pathname;

export interface Prompt {
  question_id: number;
  category: string;
  turns: string[];
}

export function loadPrompts(path: string): Prompt[] {
  const prompts = Deno.readTextFileSync(path).split("\n").filter((l) => l.trim() !== "").map((l) =>
    JSON.parse(l) as Prompt
  );
  if (prompts.length === 0) throw new Error(`no prompts in ${path}`);
  return prompts;
}

/**
 * The user turn of round `round` of session `session`: each session walks the MT-Bench list from its
 * own offset, a question's turns in order (deterministic, so two runs hold the same conversations).
 */
export function mtBenchTurn(prompts: Prompt[], session: number, round: number): string {
  const q = prompts[(session + Math.floor(round / 2)) % prompts.length];
  return q.turns[round % q.turns.length];
}

// deno-lint-ignore no-explicit-any
export type ServerEvent = { type: string; [key: string]: any };

/**
 * One WebSocket session speaking the text subset of the Realtime API. Events are queued so a
 * caller can `await next()` them in order; `onEvent` sees each one as it arrives (with its
 * arrival time), which is where the latency measurements are taken.
 */
export class RealtimeSession {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  onEvent: ((event: ServerEvent, at: number) => void) | null = null;
  private queue: ServerEvent[] = [];
  private waiters: { resolve: (e: ServerEvent) => void; reject: (e: Error) => void }[] = [];
  private closeError: Error | null = null;
  private seq = 0;

  constructor(url: URL, apiKey?: string) {
    const protocols = ["realtime"];
    if (apiKey) protocols.push(`openai-insecure-api-key.${apiKey}`);
    this.ws = new WebSocket(url, protocols);
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener("open", () => resolve(), { once: true });
      this.ws.addEventListener("error", () => reject(new Error(`websocket to ${url} failed`)), {
        once: true,
      });
    });
    this.opened.catch(() => {}); // observed by callers that care
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener("close", (ev) => {
        this.closeError = new Error(`websocket closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`);
        for (const w of this.waiters.splice(0)) w.reject(this.closeError);
        resolve(ev);
      });
    });
    this.ws.addEventListener("message", (ev) => {
      const at = performance.now();
      let event: ServerEvent;
      try {
        event = JSON.parse(String(ev.data));
      } catch {
        event = { type: "bench.bad_frame", data: String(ev.data) };
      }
      this.onEvent?.(event, at);
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(event);
      else this.queue.push(event);
    });
  }

  send(event: Record<string, unknown>): void {
    this.seq += 1;
    this.ws.send(JSON.stringify({ event_id: `evt_bench_${this.seq}`, ...event }));
  }

  /** The next server event, in arrival order. Rejects when the socket closes or on timeout. */
  next(timeoutMs = 60_000): Promise<ServerEvent> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closeError) return Promise.reject(this.closeError);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (e: ServerEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no server event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Skip events until one of `types` arrives; an `error` event rejects unless listed. */
  async until(types: string[], timeoutMs = 60_000): Promise<ServerEvent> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = Math.max(1, deadline - performance.now());
      const event = await this.next(left);
      if (types.includes(event.type)) return event;
      if (event.type === "error") {
        throw new Error(`server error: ${event.error?.type ?? "?"}: ${event.error?.message ?? "?"}`);
      }
    }
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000, "bench done");
    }
  }
}

export { metricSum, parsePrometheus, type Sample } from "../gateway/metrics/prometheus_text.ts";
import { parsePrometheus, type Sample } from "../gateway/metrics/prometheus_text.ts";

/** Cumulative bucket counts of histogram `name` as [upper bound, count] pairs, ascending (+Inf last). */
export function histogramBuckets(samples: Sample[], name: string): [number, number][] {
  const out: [number, number][] = [];
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || s.labels.le === undefined) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    out.push([le, s.value]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/**
 * Quantile q (0..1) of the observations a histogram received between two scrapes, estimated from
 * its buckets like Prometheus' histogram_quantile(): find the bucket holding the q-th observation
 * and interpolate linearly inside it (the first bucket starts at 0). An answer in the +Inf bucket
 * is reported as the largest finite bound. NaN when there were no observations (or no metric).
 */
export function histogramQuantile(before: Sample[] | null, after: Sample[] | null, name: string, q: number) {
  if (!after) return NaN;
  const a = histogramBuckets(after, name);
  const b = before ? new Map(histogramBuckets(before, name)) : new Map<number, number>();
  if (a.length === 0) return NaN;
  const cum = a.map(([le, n]) => [le, n - (b.get(le) ?? 0)] as [number, number]);
  const total = cum[cum.length - 1][1];
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let prevLe = 0, prevN = 0;
  for (const [le, n] of cum) {
    if (n >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = n - prevN;
      return inBucket > 0 ? prevLe + (le - prevLe) * ((rank - prevN) / inBucket) : le;
    }
    prevLe = le;
    prevN = n;
  }
  return prevLe;
}

export async function fetchMetrics(base: URL, apiKey?: string): Promise<Sample[] | null> {
  try {
    const res = await fetch(new URL("/metrics", base), {
      headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
      signal: AbortSignal.timeout(5_000),
    });
    if (!res.ok) {
      await res.body?.cancel();
      return null;
    }
    return parsePrometheus(await res.text());
  } catch {
    return null;
  }
}

/** VmRSS of one process in bytes, or NaN when it is gone. */
export function processRss(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** `pid` and all its descendants (via /proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    let tasks: string[] = [];
    try {
      tasks = [...Deno.readDirSync(`/proc/${p}/task`)].map((e) => e.name);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        const children = Deno.readTextFileSync(`/proc/${p}/task/${tid}/children`).trim();
        if (children) stack.push(...children.split(/\s+/).map(Number));
      } catch {
        // task exited meanwhile
      }
    }
  }
  return out;
}

/** RSS of every process in the tree below `pid`, largest first. */
export function treeRss(pid: number): { pid: number; rss: number; cmd: string }[] {
  return processTree(pid)
    .map((p) => {
      let cmd = "";
      try {
        cmd = Deno.readTextFileSync(`/proc/${p}/cmdline`).split("\0").filter(Boolean).join(" ");
      } catch {
        // gone
      }
      return { pid: p, rss: processRss(p), cmd };
    })
    .filter((e) => Number.isFinite(e.rss))
    .sort((a, b) => b.rss - a.rss);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Poll GET /healthz until it answers 200, the child exits, or the time runs out. */
export async function waitHealthy(base: URL, timeoutMs: number, exited?: Promise<unknown>): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let gone = false;
  exited?.then(() => (gone = true));
  while (performance.now() < deadline) {
    if (gone) throw new Error("gateway exited before it became healthy");
    try {
      const res = await fetch(new URL("/healthz", base), { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`gateway not healthy within ${timeoutMs} ms`);
}

/** A server process started by a benchmark or a test: its URL, its output lines, and how to stop it. */
export interface ServerProcess {
  child: Deno.ChildProcess;
  /** http://host:port, from its "listening on …" line. */
  http: string;
  /** Its stdout and stderr lines so far. */
  lines: string[];
  exited: Promise<Deno.CommandStatus>;
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/**
 * Run `deno <args>` in the repository and wait for its "listening on http://…/" line (a gateway or an
 * edge); its output is kept line by line (never left to fill a pipe). Throws with the output when it
 * exits or does not listen within `timeoutMs`.
 */
export async function spawnServer(
  args: string[],
  what: string,
  timeoutMs = 60_000,
  env?: Record<string, string>,
): Promise<ServerProcess> {
  const cwd = new URL("..", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const lines: string[] = [];
  let listening!: (url: string) => void;
  const url = new Promise<string>((r) => (listening = r));
  const read = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        const m = /listening on (https?:\/\/[^/\s]+)\//.exec(line);
        if (m) listening(m[1]);
      }
    }
  };
  const pumps = Promise.all([read(child.stdout), read(child.stderr)]);
  const exited = child.status.then(async (s) => {
    await pumps;
    return s;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not listen:\n${lines.join("\n")}`)), timeoutMs);
  });
  const early = exited.then((s) => {
    throw new Error(`${what} exited (${s.code}) before listening:\n${lines.join("\n")}`);
  });
  early.catch(() => {}); // once it listens, its exit is the caller's business
  try {
    const http = await Promise.race([url, late, early]);
    return {
      child,
      http,
      lines,
      exited,
      async kill(signal: Deno.Signal = "SIGKILL") {
        try {
          child.kill(signal);
        } catch { /* gone */ }
        return await exited;
      },
    };
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await exited;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
