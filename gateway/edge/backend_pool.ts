/**
 * The backends of an edge (`--backend URL`, repeatable), their health and load, and placement.
 *
 * Health: every `--health-interval` seconds (default 2) each backend's `/readyz` and `/metrics` are read
 * (with the backend key, which also passes a backend's `--metrics-auth`). 200 = ready; 503 = draining (it
 * answers, but takes no new sessions); no answer = down (the circuit breaker opens). A failed connect by a
 * session opens the breaker too. Load, from `/metrics`: `sinkstream:num_sessions` (every edge's and direct
 * clients'), `sinkstream:num_requests_waiting`, `sinkstream:kv_cache_usage_perc`; between two reads the
 * edge adds the sessions it placed or lost since (its own count is exact, the others' are as old as the
 * last read).
 *
 * Placement: power of two choices — two distinct backends that take sessions, drawn at random; the one
 * with the lower (KV nearly full, load, KV usage) wins. One backend left: that one; none: null.
 */
import { BACKEND_KEY_HEADER } from "../realtime/internal_protocol.ts";
import { metricSum, parsePrometheus } from "../metrics/prometheus_text.ts";
import { Breaker } from "./breaker.ts";
import type { EdgeMetrics } from "./metrics.ts";

/** KV usage (0..1) from which a backend counts as full: it loses against any backend that is not. */
const KV_FULL = 0.95;

export class Backend {
  /** Whether its last /readyz answered 200. */
  ready = false;
  /** Whether its last /readyz answered 503 (or it said sinkstream.draining). */
  draining = false;
  readonly breaker = new Breaker();
  /** `sinkstream:num_sessions` at the last read, and how many of those were this edge's then. */
  reported = 0;
  mineAtReport = 0;
  waiting = 0;
  kvUsage = 0;
  /** Sessions this edge relays to it now. */
  mine = 0;
  readonly realtime: URL;

  constructor(readonly name: string, readonly base: URL) {
    this.realtime = new URL("/v1/realtime", base);
    this.realtime.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  }

  /** Sessions on it: this edge's now, everyone else's as of the last read; plus the work waiting there. */
  get load(): number {
    return Math.max(0, this.reported - this.mineAtReport) + this.mine + this.waiting;
  }

  takesSessions(now = Date.now()): boolean {
    return this.ready && !this.draining && this.breaker.closed(now);
  }
}

export interface PoolOptions {
  backendKey: string;
  intervalMs: number;
  timeoutMs: number;
  metrics: EdgeMetrics;
}

/** Whether `a` is the better place for a new session than `b`. */
function better(a: Backend, b: Backend): boolean {
  const fa = a.kvUsage >= KV_FULL, fb = b.kvUsage >= KV_FULL;
  if (fa !== fb) return fb;
  if (a.load !== b.load) return a.load < b.load;
  return a.kvUsage <= b.kvUsage;
}

export class BackendPool {
  readonly backends: Backend[];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #reading: Promise<void> = Promise.resolve();

  constructor(urls: readonly string[], readonly opts: PoolOptions) {
    this.backends = urls.map((u, i) => new Backend(`b${i}`, new URL(u)));
    for (const b of this.backends) this.#publish(b);
  }

  /** The header that authenticates this edge to a backend. */
  get headers(): Record<string, string> {
    return { [BACKEND_KEY_HEADER]: this.opts.backendKey };
  }

  /** Read every backend once (awaited), then again every interval until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    const tick = () => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => {
        this.#reading = this.refresh().finally(tick);
      }, this.opts.intervalMs);
    };
    tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#reading;
  }

  /** Read every backend's /readyz and /metrics now. */
  async refresh(): Promise<void> {
    await Promise.all(this.backends.map((b) => this.#read(b)));
  }

  byUrl(url: string): Backend | undefined {
    return this.backends.find((b) => b.base.href === new URL(url).href);
  }

  /** A backend for a new session (power of two choices), or null when none takes sessions. */
  choose(exclude: ReadonlySet<Backend> = new Set()): Backend | null {
    const now = Date.now();
    const ok = this.backends.filter((b) => !exclude.has(b) && b.takesSessions(now));
    if (ok.length <= 1) return ok[0] ?? null;
    const i = Math.floor(Math.random() * ok.length);
    let j = Math.floor(Math.random() * (ok.length - 1));
    if (j >= i) j++;
    return better(ok[i], ok[j]) ? ok[i] : ok[j];
  }

  /** A session's connection to `b` failed: the breaker opens. */
  connectFailed(b: Backend): void {
    b.breaker.failure();
    this.opts.metrics.connectFailures.inc(b.name);
    this.#publish(b);
  }

  /** `b` said it is draining (sinkstream.draining or a refusal): no new sessions until /readyz says 200. */
  markDraining(b: Backend): void {
    b.draining = true;
    this.#publish(b);
  }

  /** This edge relays one more (+1) or one fewer (-1) session to `b`. */
  count(b: Backend, delta: 1 | -1): void {
    b.mine += delta;
    this.opts.metrics.sessions.set(b.name, b.mine);
  }

  /** GET `path` of a backend with the backend key and the connect timeout. */
  fetch(b: Backend, path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(new URL(path, b.base), {
      ...init,
      headers: { ...Object.fromEntries(new Headers(init.headers)), ...this.headers },
      signal: init.signal ?? AbortSignal.timeout(this.opts.timeoutMs),
    });
  }

  async #read(b: Backend): Promise<void> {
    try {
      const r = await this.fetch(b, "/readyz");
      await r.body?.cancel();
      b.ready = r.status === 200;
      b.draining = r.status === 503;
      b.breaker.success();
      if (b.ready) await this.#readLoad(b);
    } catch {
      b.ready = false;
      this.connectFailed(b);
    }
    this.#publish(b);
  }

  async #readLoad(b: Backend): Promise<void> {
    const r = await this.fetch(b, "/metrics");
    if (!r.ok) {
      await r.body?.cancel();
      return;
    }
    const samples = parsePrometheus(await r.text());
    const value = (name: string) => {
      const v = metricSum(samples, name);
      return Number.isFinite(v) ? v : 0;
    };
    b.reported = value("sinkstream:num_sessions");
    b.mineAtReport = b.mine;
    b.waiting = value("sinkstream:num_requests_waiting");
    b.kvUsage = value("sinkstream:kv_cache_usage_perc");
  }

  #publish(b: Backend): void {
    this.opts.metrics.backendUp.set(b.name, b.takesSessions() ? 1 : 0);
    this.opts.metrics.backendDraining.set(b.name, b.draining ? 1 : 0);
  }
}
