/**
 * Prometheus text-format metrics with vLLM / llama.cpp style names
 * (prefix "sinkstream:"). No dependencies: counters, gauges and
 * histograms with fixed buckets.
 */

type Labels = Record<string, string>;

function labelText(labels: Labels | undefined): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

function num(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return Number.isNaN(v) ? "NaN" : String(v);
}

abstract class Metric {
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
  #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(name: string, help: string, buckets: number[], readonly labels?: Labels) {
    super(name, help, "histogram");
    this.buckets = [...buckets].sort((a, b) => a - b);
    this.#counts = this.buckets.map(() => 0);
  }
  observe(v: number): void {
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.#counts[i]++;
    this.#sum += v;
    this.#count++;
  }
  get count(): number {
    return this.#count;
  }
  samples(): string[] {
    const out = this.buckets.map((b, i) =>
      `${this.name}_bucket${labelText({ le: num(b) })} ${this.#counts[i]}`
    );
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
  readonly steps = new Counter("sinkstream:engine_steps_total", "Engine steps run.");

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
      this.steps,
    ];
    return all.map((m) => m.render()).join("\n") + "\n";
  }
}
