/**
 * The single scheduler loop that drives the engine.
 *
 * Every iteration gathers each job with work — one decode token per
 * generating job and a prefill chunk per prompting job — into one batched
 * `engine.step`, awaits it (the engine runs it off the event loop) and routes
 * the sampled tokens back. Decode tokens go first so that long prompts never
 * stall other sessions' decoding; prefill chunks share what is left of the
 * step's token budget. The starting job rotates each step (round robin) so
 * no session is favoured. All engine calls that change state (create / free
 * sequences, sampling changes, steps) happen here, between steps, so they
 * never overlap.
 *
 * Hot path (once per generated token): routing a step's results first
 * delivers every token (the session detokenises and hands its frame to the
 * socket), and only then refreshes cache stats, metrics and gauges, so the
 * bookkeeping never sits between the engine and the client. Timings:
 * `engine_step_seconds` (await engine.step), `scheduler_overhead_seconds`
 * (loop iteration minus step) and `stepResolvedAt`, from which the sessions
 * measure the per-token `gateway_token_latency_seconds`.
 *
 * A response that ends before everything it was given is fed (cancelled
 * mid-prompt, or cut off after a token was delivered) leaves the unfed
 * tokens in `Conversation.pending`; the next response feeds them first, so
 * the cache always holds the whole conversation the client saw.
 */
import type { CacheStats, Engine, SamplingOptions, SequenceOptions, StepItem } from "../../runtime/types.ts";
import type { Metrics } from "../metrics/metrics.ts";

export class BusyError extends Error {
  override name = "BusyError";
}

export type FinishReason = "stop" | "length" | "cancelled" | "error";

export interface GenerateResult {
  reason: FinishReason;
  /** Tokens prefilled for this response (pending tokens of the previous turn included). */
  promptTokens: number;
  /** Tokens generated (EOS included). */
  outputTokens: number;
  stats: CacheStats | null;
  error?: Error;
  /** Free-form detail for cancelled responses (e.g. "shutdown"). */
  detail?: string;
}

export interface GenerateRequest {
  prompt: number[];
  maxTokens: number;
  sampling?: SamplingOptions;
  /** Tokens that end the response (not delivered, not fed). */
  stopTokens: ReadonlySet<number>;
  /** When true the job is skipped this step (backpressure). */
  isPaused?: () => boolean;
  /** Delivers one generated token. Return true to stop the response here. */
  onToken: (token: number) => boolean | void;
}

export interface JobHandle {
  readonly done: Promise<GenerateResult>;
  cancel(detail?: string): void;
}

/** One conversation's engine sequence, created lazily on its first response. */
export class Conversation {
  seq: number | null = null;
  stats: CacheStats | null = null;
  /**
   * Tokens of this conversation not yet fed: the unfed rest of a prompt whose response was cancelled
   * mid-prefill, and/or the last delivered token of a response that ended before feeding it.
   */
  pending: number[] = [];
  sampling = "";
  /** Set when a step fed this conversation; `stats` is refreshed after the step's tokens went out. */
  statsStale = false;
  job: Job | null = null;
  released = false;
  reservedBytes = 0;
  constructor(readonly options: SequenceOptions) {}
  get started(): boolean {
    return this.seq !== null || this.reservedBytes > 0;
  }
}

class Job implements JobHandle {
  readonly done: Promise<GenerateResult>;
  #resolve!: (r: GenerateResult) => void;
  readonly prompt: number[];
  fed = 0;
  next = -1;
  output = 0;
  finished = false;
  cancelled = false;
  cancelDetail?: string;
  /** Set while routing a step when the job ends there; finish() runs after every token went out. */
  ending: FinishReason | null = null;
  endError?: Error;
  /** `next` was delivered but not fed yet (it is fed by the job's next decode step). */
  nextUnfed = false;
  inFlight = false;
  /** Sequence created and sampling applied for this job. */
  prepared = false;
  readonly samplingKey: string;
  /** The one-token array of this job's decode items (reused every step: no per-token allocation). */
  readonly decodeTokens = [0];
  readonly createdAt = performance.now();
  lastTokenAt = 0;
  constructor(readonly sched: Scheduler, readonly conv: Conversation, readonly req: GenerateRequest) {
    this.prompt = conv.pending.length > 0 ? [...conv.pending, ...req.prompt] : req.prompt.slice();
    conv.pending = [];
    this.samplingKey = req.sampling ? JSON.stringify(req.sampling) : "";
    this.done = new Promise((r) => (this.#resolve = r));
  }
  get decoding(): boolean {
    return this.fed >= this.prompt.length && this.next >= 0;
  }
  cancel(detail?: string): void {
    if (this.finished || this.cancelled) return;
    this.cancelled = true;
    this.cancelDetail = detail;
    if (!this.inFlight) this.sched.finish(this, "cancelled");
    // else: finished when the running step returns (its token is dropped).
  }
  resolve(r: GenerateResult): void {
    this.#resolve(r);
  }
}

/** One item of a step: what the engine gets, plus the job it belongs to. */
interface BatchItem extends StepItem {
  job: Job;
  tokens: number[];
  sample: boolean;
}

export interface SchedulerOptions {
  maxBatchTokens?: number;
  prefillChunk?: number;
  /** KV budget in bytes over all conversations (worst case: full windows); 0 = unlimited. */
  kvBudgetBytes?: number;
  metrics?: Metrics;
}

export class Scheduler {
  readonly engine: Engine;
  readonly maxBatchTokens: number;
  readonly prefillChunk: number;
  readonly kvBudgetBytes: number;
  readonly bytesPerToken: number;
  readonly metrics?: Metrics;
  /** performance.now() when the last engine step resolved (tokens routed now were produced then). */
  stepResolvedAt = 0;
  #jobs: Job[] = [];
  /** Jobs in #jobs that finished since the last compaction (removed lazily: no O(n) splice per finish). */
  #finishedInList = 0;
  #liveSeqCount = 0;
  #rr = 0;
  #convs = new Set<Conversation>();
  #toFree: Conversation[] = [];
  #reserved = 0;
  #stepping = false;
  #routing = false;
  #closed = false;
  #wake: (() => void) | null = null;
  #loop: Promise<void>;

  constructor(engine: Engine, opts: SchedulerOptions = {}) {
    this.engine = engine;
    this.maxBatchTokens = Math.max(
      1,
      Math.min(opts.maxBatchTokens ?? engine.maxBatchTokens, engine.maxBatchTokens),
    );
    this.prefillChunk = Math.max(1, opts.prefillChunk ?? 128);
    this.kvBudgetBytes = opts.kvBudgetBytes ?? 0;
    // KV bytes per cached token as the engine stores them (f32 on the CPU backend, f16/bf16 on CUDA);
    // an engine that does not say is assumed to hold K and V of every layer in f32.
    const i = engine.info;
    const reported = engine.kvBytesPerToken;
    this.bytesPerToken = reported !== undefined && Number.isFinite(reported) && reported > 0
      ? reported
      : 2 * i.nLayers * i.nKvHeads * i.headDim * 4;
    this.metrics = opts.metrics;
    this.#loop = this.#run();
  }

  /** Capacity in tokens a conversation with these options may hold. */
  capacityOf(options: SequenceOptions): number {
    const w = options.capacity ?? 0;
    return w > 0 ? w : this.engine.info.maxSeqLen;
  }

  get reservedBytes(): number {
    return this.#reserved;
  }

  get liveConversations(): number {
    return this.#convs.size;
  }

  /** Whether a new conversation with these options fits the KV budget now. */
  fits(options: SequenceOptions): boolean {
    if (this.kvBudgetBytes <= 0) return true;
    return this.#reserved + this.capacityOf(options) * this.bytesPerToken <= this.kvBudgetBytes;
  }

  /** Start a response on a conversation. Throws BusyError when the KV budget is exhausted. */
  submit(conv: Conversation, req: GenerateRequest): JobHandle {
    if (this.#closed) throw new BusyError("the server is shutting down");
    if (conv.released) throw new Error("conversation was released");
    if (conv.job) throw new Error("conversation already has an active response");
    if (conv.reservedBytes === 0) {
      if (!this.fits(conv.options)) {
        this.metrics?.rejected.inc();
        throw new BusyError("KV cache memory budget exhausted; try again later");
      }
      conv.reservedBytes = this.capacityOf(conv.options) * this.bytesPerToken;
      this.#reserved += conv.reservedBytes;
      this.#convs.add(conv);
    }
    const job = new Job(this, conv, req);
    conv.job = job;
    if (job.prompt.length === 0) {
      // Nothing to feed: sample from the cache as it is needs a token; refuse politely.
      conv.job = null;
      queueMicrotask(() => job.resolve(this.#result(job, "error", new Error("empty prompt"))));
      job.finished = true;
      return job;
    }
    this.#jobs.push(job);
    this.#kick();
    return job;
  }

  /** Free a conversation's sequence (cancelling its response). Safe at any time. */
  release(conv: Conversation): void {
    if (conv.released) return;
    conv.released = true;
    conv.job?.cancel("released");
    this.#reserved -= conv.reservedBytes;
    conv.reservedBytes = 0;
    this.#convs.delete(conv);
    this.#toFree.push(conv);
    if (!this.#stepping) this.#applyFrees();
    this.#updateGauges();
  }

  /** Cancel everything, free every sequence and stop the loop. */
  async close(detail = "shutdown"): Promise<void> {
    if (this.#closed) return this.#loop;
    for (const j of [...this.#jobs]) j.cancel(detail);
    this.#closed = true;
    this.#kick();
    await this.#loop;
    for (const c of [...this.#convs]) this.release(c);
    this.#applyFrees();
  }

  finish(job: Job, reason: FinishReason, error?: Error): void {
    if (job.finished) return;
    job.finished = true;
    this.#finishedInList++;
    const conv = job.conv;
    if (conv.job === job) conv.job = null;
    // Whatever was given to this job but not fed stays part of the conversation: fed first next turn.
    if (!conv.released) {
      const unfed = job.fed < job.prompt.length ? job.prompt.slice(job.fed) : [];
      if (job.nextUnfed) unfed.push(job.next);
      conv.pending = unfed;
    }
    if (conv.statsStale && !this.#stepping) this.#refreshStats(conv);
    this.metrics?.requests.inc();
    if (reason === "cancelled") this.metrics?.cancelled.inc();
    job.resolve(this.#result(job, reason, error));
    if (!this.#routing) this.#updateGauges();
  }

  #refreshStats(conv: Conversation): void {
    conv.statsStale = false;
    if (conv.seq === null || conv.released) return;
    try {
      const before = conv.stats?.evicted ?? 0;
      conv.stats = this.engine.stats(conv.seq);
      this.metrics?.evictions.inc(conv.stats.evicted - before);
    } catch { /* keep old stats */ }
  }

  #result(job: Job, reason: FinishReason, error?: Error): GenerateResult {
    return {
      reason,
      promptTokens: job.fed,
      outputTokens: job.output,
      stats: job.conv.stats,
      error,
      detail: reason === "cancelled" ? job.cancelDetail : undefined,
    };
  }

  #kick(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #applyFrees(): void {
    if (this.#toFree.length === 0) return;
    for (const c of this.#toFree.splice(0)) {
      if (c.seq !== null) {
        try {
          this.engine.freeSequence(c.seq);
        } catch { /* already gone */ }
        c.seq = null;
        this.#liveSeqCount--;
      }
    }
    this.metrics?.sequences.set(this.#liveSeqCount);
  }

  /** Drop finished jobs from #jobs (once per step, O(n)). */
  #compact(): void {
    if (this.#finishedInList === 0) return;
    this.#finishedInList = 0;
    this.#jobs = this.#jobs.filter((j) => !j.finished);
  }

  #updateGauges(): void {
    const m = this.metrics;
    if (!m) return;
    let bytes = 0, cached = 0;
    for (const c of this.#convs) {
      bytes += c.stats?.bytes ?? 0;
      cached += c.stats?.cached ?? 0;
    }
    m.kvBytes.set(bytes);
    m.cachedTokens.set(cached);
    const denom = this.kvBudgetBytes > 0 ? this.kvBudgetBytes : this.#reserved;
    m.kvUsage.set(denom > 0 ? bytes / denom : 0);
    let running = 0, waiting = 0;
    for (const j of this.#jobs) if (!j.finished) j.req.isPaused?.() ? waiting++ : running++;
    m.running.set(running);
    m.waiting.set(waiting);
  }

  /** Prepare a job's sequence (create lazily, apply sampling) once per job. False when the job failed. */
  #prepare(job: Job): boolean {
    if (job.prepared) return true;
    const conv = job.conv;
    try {
      if (conv.seq === null) {
        conv.seq = this.engine.createSequence({ ...conv.options, ...job.req.sampling });
        conv.sampling = job.samplingKey;
        conv.stats = this.engine.stats(conv.seq);
        this.#liveSeqCount++;
        this.metrics?.sequences.set(this.#liveSeqCount);
      } else if (job.req.sampling && job.samplingKey !== conv.sampling) {
        this.engine.setSampling(conv.seq, job.req.sampling);
        conv.sampling = job.samplingKey;
      }
      job.prepared = true;
      return true;
    } catch (e) {
      this.finish(job, "error", e as Error);
      return false;
    }
  }

  async #run(): Promise<void> {
    while (true) {
      const t0 = performance.now();
      this.#applyFrees();
      this.#compact();
      if (this.#closed && this.#jobs.length === 0) return;
      const batch = this.#build();
      if (batch.length === 0) {
        if (this.#closed) {
          for (const j of [...this.#jobs]) this.finish(j, "cancelled");
          continue;
        }
        // Idle, or every job paused: wait for a kick, polling paused jobs.
        this.#compact();
        const paused = this.#jobs.length > 0;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          if (paused) setTimeout(() => this.#kick(), 5);
        });
        continue;
      }
      const stepMs = await this.#step(batch);
      const overhead = performance.now() - t0 - stepMs;
      this.metrics?.schedulerOverhead.observe(overhead > 0 ? overhead / 1000 : 0);
    }
  }

  #build(): BatchItem[] {
    const n = this.#jobs.length;
    if (n === 0) return [];
    const order: Job[] = [];
    for (let k = 0; k < n; k++) order.push(this.#jobs[(this.#rr + k) % n]);
    this.#rr = (this.#rr + 1) % Math.max(1, n);
    let budget = this.maxBatchTokens;
    const batch: BatchItem[] = [];
    const prefilling: Job[] = [];
    for (const job of order) {
      if (job.finished) continue;
      if (job.cancelled) {
        this.finish(job, "cancelled");
        continue;
      }
      if (job.req.isPaused?.()) continue;
      if (job.decoding) {
        if (budget < 1) continue;
        if (!this.#prepare(job)) continue;
        const tokens = job.decodeTokens;
        tokens[0] = job.next;
        batch.push({ seq: job.conv.seq!, tokens, sample: true, job });
        budget -= 1;
      } else prefilling.push(job);
    }
    for (const job of prefilling) {
      if (budget < 1) break;
      if (!this.#prepare(job)) continue;
      const left = job.prompt.length - job.fed;
      const take = Math.min(left, this.prefillChunk, budget);
      const tokens = job.prompt.slice(job.fed, job.fed + take);
      batch.push({ seq: job.conv.seq!, tokens, sample: take === left, job });
      budget -= take;
    }
    return batch;
  }

  /** Run one step and route its results; returns the time spent in engine.step (ms). */
  async #step(batch: BatchItem[]): Promise<number> {
    const m = this.metrics;
    const n = batch.length;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const b = batch[i];
      b.job.inFlight = true;
      total += b.tokens.length;
    }
    this.#stepping = true;
    let results;
    const t0 = performance.now();
    try {
      results = await this.engine.step(batch);
    } catch (e) {
      this.#stepping = false;
      const ms = performance.now() - t0;
      for (const b of batch) {
        b.job.inFlight = false;
        this.finish(b.job, "error", e as Error);
      }
      return ms;
    }
    const now = performance.now();
    this.#stepping = false;
    this.stepResolvedAt = now;
    // Phase 1 (latency path): account what was fed and hand every sampled token to its response.
    // Jobs that end here are only marked; finishing them (stats, results) waits for phase 2.
    this.#routing = true;
    try {
      for (let i = 0; i < n; i++) {
        const b = batch[i];
        const job = b.job;
        job.inFlight = false;
        const failed = results[i].error;
        if (failed) {
          // This item alone failed and nothing of it was fed: only its job ends; the others go on.
          if (!job.finished) {
            job.ending = "error";
            job.endError = failed;
          }
          continue;
        }
        job.conv.statsStale = true;
        if (b.tokens === job.decodeTokens) job.nextUnfed = false;
        else job.fed += b.tokens.length;
        if (job.finished) continue;
        if (job.cancelled) job.ending = "cancelled";
        else if (b.sample) this.#deliver(job, results[i].token, now);
      }
    } finally {
      this.#routing = false;
    }
    // Phase 2: bookkeeping, after the frames went out.
    for (let i = 0; i < n; i++) {
      const b = batch[i];
      const job = b.job;
      if (b.tokens !== job.decodeTokens && !results[i].error) m?.promptTokens.inc(b.tokens.length);
      if (job.ending !== null && !job.finished) this.finish(job, job.ending, job.endError);
      if (job.conv.statsStale) this.#refreshStats(job.conv);
    }
    if (m) {
      m.steps.inc();
      m.batchTokens.observe(total);
      m.batchSequences.set(n);
      m.engineStep.observe((now - t0) / 1000);
    }
    this.#updateGauges();
    return now - t0;
  }

  /** Hand one sampled token to its job (phase 1); marks `job.ending` when the response ends here. */
  #deliver(job: Job, token: number, now: number): void {
    const m = this.metrics;
    job.output++;
    if (m) {
      m.generationTokens.inc();
      if (job.output === 1) m.ttft.observe((now - job.createdAt) / 1000);
      else m.itl.observe((now - job.lastTokenAt) / 1000);
    }
    job.lastTokenAt = now;
    if (job.req.stopTokens.has(token)) {
      job.ending = "stop";
      return;
    }
    // Delivered from here on, fed by the next decode step; if the job ends first it stays pending.
    job.next = token;
    job.nextUnfed = true;
    let stop = false;
    try {
      stop = job.req.onToken(token) === true;
    } catch (e) {
      job.ending = "error";
      job.endError = e as Error;
      return;
    }
    if (stop) job.ending = "stop";
    else if (job.output >= job.req.maxTokens) job.ending = "length";
  }
}
