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
 */
import type { CacheStats, Engine, SamplingOptions, SequenceOptions } from "../../runtime/types.ts";
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
  /** Tokens delivered to the client but not yet fed (the last token of a cut-off response). */
  pending: number[] = [];
  sampling = "";
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
  inFlight = false;
  readonly createdAt = performance.now();
  lastTokenAt = 0;
  constructor(readonly sched: Scheduler, readonly conv: Conversation, readonly req: GenerateRequest) {
    this.prompt = [...conv.pending, ...req.prompt];
    conv.pending = [];
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
  #jobs: Job[] = [];
  #rr = 0;
  #convs = new Set<Conversation>();
  #toFree: Conversation[] = [];
  #reserved = 0;
  #stepping = false;
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
    const i = engine.info;
    // K and V, every layer, f32 (upper bound for the CPU backend).
    this.bytesPerToken = 2 * i.nLayers * i.nKvHeads * i.headDim * 4;
    this.metrics = opts.metrics;
    this.#loop = this.#run();
  }

  /** Capacity in tokens a conversation with these options may hold. */
  capacityOf(options: SequenceOptions): number {
    const w = options.window ?? 0;
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
    const i = this.#jobs.indexOf(job);
    if (i >= 0) this.#jobs.splice(i, 1);
    if (job.conv.job === job) job.conv.job = null;
    this.metrics?.requests.inc();
    job.resolve(this.#result(job, reason, error));
    this.#updateGauges();
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
    for (const c of this.#toFree.splice(0)) {
      if (c.seq !== null) {
        try {
          this.engine.freeSequence(c.seq);
        } catch { /* already gone */ }
        c.seq = null;
      }
    }
    this.metrics?.sequences.set(this.#liveSeqs());
  }

  #liveSeqs(): number {
    let n = 0;
    for (const c of this.#convs) if (c.seq !== null) n++;
    return n;
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
    for (const j of this.#jobs) j.req.isPaused?.() ? waiting++ : running++;
    m.running.set(running);
    m.waiting.set(waiting);
  }

  /** Prepare a job's sequence (create lazily, apply sampling). False when the job failed. */
  #prepare(job: Job): boolean {
    const conv = job.conv;
    try {
      if (conv.seq === null) {
        conv.seq = this.engine.createSequence({ ...conv.options, ...job.req.sampling });
        conv.sampling = JSON.stringify(job.req.sampling ?? {});
        conv.stats = this.engine.stats(conv.seq);
        this.metrics?.sequences.set(this.#liveSeqs());
      } else if (job.req.sampling) {
        const key = JSON.stringify(job.req.sampling);
        if (key !== conv.sampling) {
          this.engine.setSampling(conv.seq, job.req.sampling);
          conv.sampling = key;
        }
      }
      return true;
    } catch (e) {
      this.finish(job, "error", e as Error);
      return false;
    }
  }

  async #run(): Promise<void> {
    while (true) {
      this.#applyFrees();
      if (this.#closed && this.#jobs.length === 0) return;
      const batch = this.#build();
      if (batch.length === 0) {
        if (this.#closed) {
          for (const j of [...this.#jobs]) this.finish(j, "cancelled");
          continue;
        }
        // Idle, or every job paused: wait for a kick, polling paused jobs.
        const paused = this.#jobs.length > 0;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          if (paused) setTimeout(() => this.#kick(), 5);
        });
        continue;
      }
      await this.#step(batch);
    }
  }

  #build(): { job: Job; tokens: number[]; sample: boolean }[] {
    const n = this.#jobs.length;
    if (n === 0) return [];
    const order: Job[] = [];
    for (let k = 0; k < n; k++) order.push(this.#jobs[(this.#rr + k) % n]);
    this.#rr = (this.#rr + 1) % Math.max(1, n);
    let budget = this.maxBatchTokens;
    const batch: { job: Job; tokens: number[]; sample: boolean }[] = [];
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
        batch.push({ job, tokens: [job.next], sample: true });
        budget -= 1;
      } else prefilling.push(job);
    }
    for (const job of prefilling) {
      if (budget < 1) break;
      if (!this.#prepare(job)) continue;
      const left = job.prompt.length - job.fed;
      const take = Math.min(left, this.prefillChunk, budget);
      batch.push({ job, tokens: job.prompt.slice(job.fed, job.fed + take), sample: take === left });
      budget -= take;
    }
    return batch;
  }

  async #step(batch: { job: Job; tokens: number[]; sample: boolean }[]): Promise<void> {
    const m = this.metrics;
    const items = batch.map((b) => ({ seq: b.job.conv.seq!, tokens: b.tokens, sample: b.sample }));
    let total = 0;
    for (const b of batch) {
      b.job.inFlight = true;
      total += b.tokens.length;
    }
    this.#stepping = true;
    let results;
    try {
      results = await this.engine.step(items);
    } catch (e) {
      this.#stepping = false;
      for (const b of batch) {
        b.job.inFlight = false;
        this.finish(b.job, "error", e as Error);
      }
      return;
    }
    this.#stepping = false;
    m?.steps.inc();
    m?.batchTokens.observe(total);
    m?.batchSequences.set(batch.length);
    const now = performance.now();
    for (let i = 0; i < batch.length; i++) {
      const { job, tokens, sample } = batch[i];
      job.inFlight = false;
      const conv = job.conv;
      if (conv.seq !== null && !conv.released) {
        try {
          const before = conv.stats?.evicted ?? 0;
          conv.stats = this.engine.stats(conv.seq);
          m?.evictions.inc(conv.stats.evicted - before);
        } catch { /* keep old stats */ }
      }
      if (!job.decoding) {
        job.fed += tokens.length;
        m?.promptTokens.inc(tokens.length);
      }
      if (job.finished) continue;
      if (job.cancelled) {
        this.finish(job, "cancelled");
        continue;
      }
      if (!sample) continue;
      this.#deliver(job, results[i].token, now);
    }
    this.#updateGauges();
  }

  #deliver(job: Job, token: number, now: number): void {
    const m = this.metrics;
    job.output++;
    m?.generationTokens.inc();
    if (job.output === 1) m?.ttft.observe((now - job.createdAt) / 1000);
    else m?.itl.observe((now - job.lastTokenAt) / 1000);
    job.lastTokenAt = now;
    if (job.req.stopTokens.has(token)) {
      this.finish(job, "stop");
      return;
    }
    let stop = false;
    try {
      stop = job.req.onToken(token) === true;
    } catch (e) {
      job.conv.pending = [token];
      this.finish(job, "error", e as Error);
      return;
    }
    if (stop || job.output >= job.req.maxTokens) {
      // Delivered but not fed: feed it first on the next turn so the cache matches the text.
      job.conv.pending = [token];
      this.finish(job, stop ? "stop" : "length");
      return;
    }
    job.next = token;
  }
}
