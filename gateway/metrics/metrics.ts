/**
 * Prometheus text-format metrics with vLLM / llama.cpp style names
 * (prefix "sinkstream:"). No dependencies: counters, gauges and
 * histograms with fixed buckets.
 */

export type Labels = Record<string, string>;

/** `{k="v",…}` with Prometheus escaping ("" for none). */
export function labelText(labels: Labels | undefined): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

export function num(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return Number.isNaN(v) ? "NaN" : String(v);
}

/** One metric family: its HELP and TYPE lines, then its samples. */
export abstract class Metric {
  constructor(readonly name: string, readonly help: string, readonly type: string) {}
  abstract samples(): string[];
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()].join(
      "\n",
    );
  }
}

export class Counter extends Metric {
  #value = 0;
  constructor(name: string, help: string) {
    super(name, help, "counter");
  }
  inc(by = 1): void {
    if (by > 0) this.#value += by;
  }
  get value(): number {
    return this.#value;
  }
  samples(): string[] {
    return [`${this.name} ${num(this.#value)}`];
  }
}

export class Gauge extends Metric {
  #value = 0;
  #fn?: () => number;
  constructor(name: string, help: string, fn?: () => number) {
    super(name, help, "gauge");
    this.#fn = fn;
  }
  set(v: number): void {
    this.#value = v;
  }
  get value(): number {
    return this.#fn ? this.#fn() : this.#value;
  }
  samples(): string[] {
    return [`${this.name} ${num(this.value)}`];
  }
}

export class Histogram extends Metric {
  readonly buckets: number[];
  /** Per-bucket (non-cumulative) counts; the last slot is the +Inf bucket. Cumulated when rendered. */
  #counts: Float64Array;
  #sum = 0;
  #count = 0;
  constructor(name: string, help: string, buckets: number[], readonly labels?: Labels) {
    super(name, help, "histogram");
    this.buckets = [...buckets].sort((a, b) => a - b);
    this.#counts = new Float64Array(this.buckets.length + 1);
  }
  /** O(log buckets), no allocation: this runs once per generated token. */
  observe(v: number): void {
    const b = this.buckets;
    let lo = 0, hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v <= b[mid]) hi = mid;
      else lo = mid + 1;
    }
    this.#counts[lo]++;
    this.#sum += v;
    this.#count++;
  }
  get count(): number {
    return this.#count;
  }
  get sum(): number {
    return this.#sum;
  }
  /** Cumulative count of observations <= buckets[i]. */
  cumulative(): number[] {
    const out: number[] = [];
    let acc = 0;
    for (let i = 0; i < this.buckets.length; i++) out.push(acc += this.#counts[i]);
    return out;
  }
  samples(): string[] {
    const cum = this.cumulative();
    const out = this.buckets.map((b, i) => `${this.name}_bucket${labelText({ le: num(b) })} ${cum[i]}`);
    out.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`);
    out.push(`${this.name}_sum ${num(this.#sum)}`);
    out.push(`${this.name}_count ${this.#count}`);
    return out;
  }
}

const LATENCY_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.02,
  0.04,
  0.06,
  0.08,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  10,
];
/**
 * Fine buckets for the gateway's own per-token / per-step costs: 5 µs .. 10 ms densely (so p50 / p99
 * can be estimated from the buckets to within ~25%), then coarser up to 10 s for engine steps.
 */
export const FINE_BUCKETS = [
  5e-6,
  1e-5,
  1.5e-5,
  2e-5,
  3e-5,
  4e-5,
  5e-5,
  7.5e-5,
  1e-4,
  1.25e-4,
  1.5e-4,
  2e-4,
  2.5e-4,
  3e-4,
  4e-4,
  5e-4,
  6e-4,
  7.5e-4,
  1e-3,
  1.25e-3,
  1.5e-3,
  2e-3,
  2.5e-3,
  3e-3,
  4e-3,
  5e-3,
  7.5e-3,
  1e-2,
  1.5e-2,
  2.5e-2,
  5e-2,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048];

/** The gateway's metric registry. */
export class Metrics {
  readonly sessions = new Gauge("sinkstream:num_sessions", "Open realtime sessions (connected or detached).");
  readonly running = new Gauge("sinkstream:num_requests_running", "Responses being prefilled or decoded.");
  readonly waiting = new Gauge(
    "sinkstream:num_requests_waiting",
    "Responses with work that were paused (backpressure) or not scheduled in the last step.",
  );
  readonly promptTokens = new Counter("sinkstream:prompt_tokens_total", "Prompt tokens prefilled.");
  readonly generationTokens = new Counter("sinkstream:generation_tokens_total", "Tokens generated.");
  readonly requests = new Counter("sinkstream:request_success_total", "Responses finished.");
  readonly rejected = new Counter("sinkstream:requests_rejected_total", "Requests refused as busy.");
  readonly ttft = new Histogram(
    "sinkstream:time_to_first_token_seconds",
    "Time from response request to its first token.",
    LATENCY_BUCKETS,
  );
  readonly itl = new Histogram(
    "sinkstream:inter_token_latency_seconds",
    "Time between consecutive generated tokens of a response.",
    LATENCY_BUCKETS,
  );
  readonly batchTokens = new Histogram(
    "sinkstream:iteration_tokens",
    "Tokens fed per engine step (batch size).",
    BATCH_BUCKETS,
  );
  readonly batchSequences = new Gauge("sinkstream:batch_size", "Sequences in the last engine step.");
  readonly kvUsage = new Gauge("sinkstream:kv_cache_usage_perc", "KV cache usage (0..1) of the KV budget.");
  readonly kvBytes = new Gauge("sinkstream:kv_cache_bytes", "KV cache bytes held by live sequences.");
  readonly cachedTokens = new Gauge("sinkstream:kv_cache_tokens", "Tokens cached over all live sequences.");
  readonly evictions = new Counter("sinkstream:cache_evictions_total", "Tokens evicted by the cache policy.");
  readonly sequences = new Gauge("sinkstream:num_sequences", "Live engine sequences.");
  readonly inputBytes = new Gauge(
    "sinkstream:input_bytes",
    "Client input held but not yet consumed: pending items and rendered prompts (see --input-budget-mb).",
  );
  readonly steps = new Counter("sinkstream:engine_steps_total", "Engine steps run.");
  readonly cancelled = new Counter(
    "sinkstream:requests_cancelled_total",
    "Responses that ended cancelled (client cancel or disconnect, shutdown).",
  );
  readonly engineStep = new Histogram(
    "sinkstream:engine_step_seconds",
    "Wall time inside engine.step (one batched forward), as seen by the scheduler loop.",
    FINE_BUCKETS,
  );
  readonly gatewayTokenLatency = new Histogram(
    "sinkstream:gateway_token_latency_seconds",
    "Per token: time from the engine step that produced it resolving to its frame being handed to the " +
      "socket (ws.send / SSE enqueue): what the gateway adds on top of the engine.",
    FINE_BUCKETS,
  );
  readonly schedulerOverhead = new Histogram(
    "sinkstream:scheduler_overhead_seconds",
    "Per scheduler loop iteration that ran a step: iteration wall time minus engine step time.",
    FINE_BUCKETS,
  );

  render(): string {
    const all: Metric[] = [
      this.sessions,
      this.running,
      this.waiting,
      this.promptTokens,
      this.generationTokens,
      this.requests,
      this.rejected,
      this.ttft,
      this.itl,
      this.batchTokens,
      this.batchSequences,
      this.kvUsage,
      this.kvBytes,
      this.cachedTokens,
      this.evictions,
      this.sequences,
      this.inputBytes,
      this.steps,
      this.cancelled,
      this.engineStep,
      this.gatewayTokenLatency,
      this.schedulerOverhead,
    ];
    return all.map((m) => m.render()).join("\n") + "\n";
  }
}
