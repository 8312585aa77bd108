/**
 * The single scheduler loop that drives the engine.
 *
 * Every iteration plans one batched `engine.step` (#schedule: a plain list of items, each a decode
 * token or a prefill chunk of one job), awaits it (the engine runs it off the event loop) and routes
 * the results back. Decode tokens go first so that long prompts never stall other sessions'
 * decoding; prefill chunks share what is left of the step's token budget. The starting job rotates
 * each step (round robin) so no session is favoured. A job whose client cannot take more
 * (`isPaused`: backpressure) is skipped. All engine calls that change state (create / free
 * sequences, sampling changes, steps) happen here, between steps, so they never overlap.
 *
 * Each job has one status (job.ts: queued -> prefilling -> decoding -> finishing -> done); every
 * change of it is in this file. A cancel is a request: a job not in the running step is finished at
 * once, one in the running step when that step returns (its token dropped). An item the engine
 * failed alone (`StepResult.error`) finishes only its own job, with that error.
 *
 * Hot path (once per generated token): routing a step's results first delivers every token (the
 * front end detokenises and hands its frame to the socket) and only then finishes jobs and refreshes
 * cache stats, metrics and gauges (phase 1 / phase 2), so the bookkeeping never sits between the
 * engine and the client; decode items are reused, so routing a token allocates nothing. Timings:
 * `engine_step_seconds` (await engine.step), `scheduler_overhead_seconds` (loop iteration minus
 * step) and `stepResolvedAt`, from which the per-token `gateway_token_latency_seconds` is measured.
 *
 * A response that ends before everything it was given is fed (cancelled mid-prompt, or cut off after
 * a token was delivered) leaves the unfed tokens in `Conversation.pending`; the next response feeds
 * them first, so the cache always holds the whole conversation the client saw (D8).
 */
import type { Engine, SequenceOptions, StepResult } from "../../runtime/types.ts";
import type { Metrics } from "../metrics/metrics.ts";
import { publishGauges } from "./gauges.ts";
import { PrefillPacer } from "./prefill_pacing.ts";
import {
  type BatchItem,
  Conversation,
  type FinishReason,
  type GenerateRequest,
  Job,
  type JobHandle,
} from "./job.ts";
import { KvBudget } from "./kv_budget.ts";

export { Conversation };
export type { FinishReason, GenerateRequest, GenerateResult, JobHandle, JobStatus } from "./job.ts";

/** The KV budget cannot hold another conversation now. */
export class BusyError extends Error {
  override name = "BusyError";
}

/** The scheduler was closed (the server is shutting down). */
export class SchedulerClosedError extends Error {
  override name = "SchedulerClosedError";
}

export interface SchedulerOptions {
  maxBatchTokens?: number;
  prefillChunk?: number;
  /** Time a step may take for a long prompt's chunk, ms (prefill_pacing.ts); 0 = chunks of prefillChunk. */
  prefillStepMs?: number;
  /** KV budget in bytes over all conversations (worst case: full capacity); 0 = unlimited. */
  kvBudgetBytes?: number;
  metrics?: Metrics;
}

export class Scheduler {
  readonly engine: Engine;
  readonly maxBatchTokens: number;
  readonly prefillChunk: number;
  readonly pacer: PrefillPacer;
  readonly kv: KvBudget;
  readonly metrics?: Metrics;
  /** performance.now() when the last engine step resolved (tokens routed now were produced then). */
  stepResolvedAt = 0;
  #jobs: Job[] = [];
  /** Jobs in #jobs that are done since the last compaction (removed lazily: no O(n) splice per job). */
  #doneInList = 0;
  #liveSeqCount = 0;
  /** Jobs not done that ask for token masks (GenerateRequest.mask): steps await masks only when > 0. */
  #constrained = 0;
  #rr = 0;
  #toFree: Conversation[] = [];
  /** Calls waiting for the step in flight to return (betweenSteps). */
  #between: (() => void)[] = [];
  /** Number of the step running or last run; a job is in the running step when its `step` equals it. */
  #stepNo = 0;
  #stepping = false;
  #routing = false;
  #closed = false;
  #wake: (() => void) | null = null;
  #loop: Promise<void>;
  /** Reused per step: the plan handed to the engine, and the jobs waiting for a prefill chunk. */
  #plan: BatchItem[] = [];
  #prefillQueue: Job[] = [];
  #pacedQueue: Job[] = [];
  readonly #onCancel = (job: Job, detail: string) => this.#requestCancel(job, detail);

  constructor(engine: Engine, opts: SchedulerOptions = {}) {
    this.engine = engine;
    this.maxBatchTokens = Math.max(
      1,
      Math.min(opts.maxBatchTokens ?? engine.maxBatchTokens, engine.maxBatchTokens),
    );
    this.prefillChunk = Math.max(1, opts.prefillChunk ?? 128);
    this.pacer = new PrefillPacer(opts.prefillStepMs ?? 0, this.prefillChunk);
    this.kv = new KvBudget(engine, opts.kvBudgetBytes ?? 0);
    this.metrics = opts.metrics;
    this.#loop = this.#run();
  }

  /** Capacity in tokens a conversation with these options may hold. */
  capacityOf(options: SequenceOptions): number {
    return this.kv.capacityOf(options);
  }

  get bytesPerToken(): number {
    return this.kv.bytesPerToken;
  }

  get reservedBytes(): number {
    return this.kv.reserved;
  }

  get liveConversations(): number {
    return this.kv.conversations.size;
  }

  /**
   * Start a response on a conversation. Throws BusyError when the KV budget cannot hold the
   * conversation, SchedulerClosedError after close().
   */
  submit(conv: Conversation, req: GenerateRequest): JobHandle {
    if (this.#closed) throw new SchedulerClosedError("the server is shutting down");
    if (conv.released) throw new Error("conversation was released");
    if (conv.job) throw new Error("conversation already has an active response");
    if (!this.kv.reserve(conv)) throw new BusyError("KV cache memory budget exhausted; try again later");
    const job = new Job(conv, req, this.#onCancel);
    if (job.prompt.length === 0) {
      // Sampling from the cache as it is needs a token to feed: refuse politely.
      job.status = "done";
      queueMicrotask(() => job.resolve("error", new Error("empty prompt")));
      return job;
    }
    conv.job = job;
    if (req.mask) this.#constrained++;
    this.#jobs.push(job);
    this.#kick();
    return job;
  }

  /**
   * Run `fn` when no engine step is in flight (now, or as soon as the running step returns): for engine
   * reads that must not overlap a step (Engine.cacheIndices). Rejects with what `fn` throws.
   */
  betweenSteps<T>(fn: () => T): Promise<T> {
    if (!this.#stepping) {
      try {
        return Promise.resolve(fn());
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.#between.push(() => {
        try {
          resolve(fn());
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  #runBetween(): void {
    if (this.#between.length === 0) return;
    for (const f of this.#between.splice(0)) f();
  }

  /** Free a conversation's sequence (cancelling its response). Safe at any time. */
  release(conv: Conversation): void {
    if (conv.released) return;
    conv.released = true;
    conv.job?.cancel("released");
    this.kv.release(conv);
    this.#toFree.push(conv);
    if (!this.#stepping) this.#applyFrees();
    this.#publishGauges();
  }

  /** Cancel everything, free every sequence and stop the loop. */
  async close(detail = "shutdown"): Promise<void> {
    if (this.#closed) return this.#loop;
    for (const j of [...this.#jobs]) j.cancel(detail);
    this.#closed = true;
    this.#kick();
    await this.#loop;
    for (const c of [...this.kv.conversations]) this.release(c);
    this.#applyFrees();
  }

  #requestCancel(job: Job, detail: string): void {
    if (job.status === "done" || job.status === "finishing" || job.cancelRequest !== null) return;
    job.cancelRequest = detail;
    const inRunningStep = job.step === this.#stepNo && (this.#stepping || this.#routing);
    if (!inRunningStep) this.#finish(job, "cancelled");
    // else: the loop reads the request when it routes the step (dropping the step's token), or in
    // phase 2 when the job's item was routed already.
  }

  /** Mark a job of the step being routed as ending; #finish runs after every token went out. */
  #end(job: Job, reason: FinishReason, error?: Error): void {
    if (job.status === "done") return;
    job.status = "finishing";
    job.ending = { reason, error };
  }

  #finish(job: Job, reason: FinishReason, error?: Error): void {
    if (job.status === "done") return;
    job.status = "done";
    this.#doneInList++;
    if (job.req.mask) this.#constrained--;
    const conv = job.conv;
    if (conv.job === job) conv.job = null;
    // Whatever was given to this job but not fed stays part of the conversation: fed first next turn.
    if (!conv.released) conv.pending = job.unfed();
    if (conv.statsStale && !this.#stepping) this.#refreshStats(conv);
    this.metrics?.requests.inc();
    if (reason === "cancelled") this.metrics?.cancelled.inc();
    job.resolve(reason, error);
    if (!this.#routing) this.#publishGauges();
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

  #publishGauges(): void {
    if (this.metrics) publishGauges(this.metrics, this.kv, this.#jobs);
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

  /** Drop done jobs from #jobs (once per step, O(n)). */
  #compact(): void {
    if (this.#doneInList === 0) return;
    this.#doneInList = 0;
    this.#jobs = this.#jobs.filter((j) => j.status !== "done");
  }

  /** queued -> prefilling: create the sequence (lazily) and apply the job's sampling. False when it failed. */
  #prepare(job: Job): boolean {
    if (job.status !== "queued") return true;
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
      job.status = "prefilling";
      return true;
    } catch (e) {
      this.#finish(job, "error", e as Error);
      return false;
    }
  }

  async #run(): Promise<void> {
    while (true) {
      const t0 = performance.now();
      this.#applyFrees();
      this.#runBetween();
      this.#compact();
      if (this.#closed && this.#jobs.length === 0) return;
      const plan = this.#schedule();
      if (plan.length === 0) {
        if (this.#closed) {
          for (const j of [...this.#jobs]) this.#finish(j, "cancelled");
          continue;
        }
        // Idle, or every job paused: wait for a kick, polling paused jobs.
        this.#compact();
        const paused = this.#jobs.length > 0;
        if (paused) this.#publishGauges(); // every job waits for its client: /metrics says so
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          if (paused) setTimeout(() => this.#kick(), 5);
        });
        continue;
      }
      const stepMs = await this.#step(plan);
      const overhead = performance.now() - t0 - stepMs;
      this.metrics?.schedulerOverhead.observe(overhead > 0 ? overhead / 1000 : 0);
    }
  }

  /** The next step's plan: one decode token per decoding job, then prefill chunks in the budget left. */
  #schedule(): BatchItem[] {
    const plan = this.#plan;
    const prefill = this.#prefillQueue;
    plan.length = 0;
    prefill.length = 0;
    const jobs = this.#jobs;
    const n = jobs.length;
    if (n === 0) return plan;
    const start = this.#rr;
    this.#rr = (this.#rr + 1) % n;
    let budget = this.maxBatchTokens;
    for (let k = 0; k < n; k++) {
      const job = jobs[(start + k) % n];
      if (job.status === "done" || job.req.isPaused?.()) continue;
      if (job.status !== "decoding") prefill.push(job);
      else if (budget >= 1) {
        const item = job.decodeItem;
        item.seq = job.conv.seq!;
        item.tokens[0] = job.next;
        plan.push(item);
        budget -= 1;
      }
    }
    // Prompts that finish within one chunk first, then the paced long ones (prefill_pacing.ts), each
    // group in round-robin order.
    const paced = this.#pacedQueue;
    paced.length = 0;
    let short = 0;
    for (const job of prefill) {
      if (this.pacer.paces(job.prompt.length - job.fed)) paced.push(job);
      else prefill[short++] = job;
    }
    for (let i = 0; i < paced.length; i++) prefill[short + i] = paced[i];
    for (const job of prefill) {
      if (budget < 1) break;
      if (!this.#prepare(job)) continue;
      const left = job.prompt.length - job.fed;
      const take = Math.min(this.pacer.chunk(left, this.maxBatchTokens - budget), budget);
      const tokens = job.prompt.slice(job.fed, job.fed + take);
      const sample = take === left && job.req.maxTokens > 0;
      plan.push({
        kind: "prefill",
        job,
        seq: job.conv.seq!,
        tokens,
        sample,
        logits: sample && job.req.logits === true,
      });
      budget -= take;
    }
    return plan;
  }

  /**
   * The token mask of every sampling item of a constrained job (while #stepping: a cancel meanwhile is a
   * request, read when the step is routed). A job whose mask cannot be made ends with that error and its
   * item leaves the plan.
   */
  async #applyMasks(plan: BatchItem[]): Promise<BatchItem[]> {
    const pending: Promise<void>[] = [];
    const failed = new Set<BatchItem>();
    for (const item of plan) {
      item.mask = undefined;
      const mask = item.job.req.mask;
      if (!mask || !item.sample) continue;
      pending.push(
        mask().then((m) => void (item.mask = m), (e) => {
          failed.add(item);
          this.#finish(item.job, "error", e as Error);
        }),
      );
    }
    await Promise.all(pending);
    return failed.size === 0 ? plan : plan.filter((item) => !failed.has(item));
  }

  /** Run one step and route its results; returns the time spent in engine.step (ms). */
  async #step(plan: BatchItem[]): Promise<number> {
    const m = this.metrics;
    const stepNo = ++this.#stepNo;
    let total = 0;
    let prefills = false;
    for (let i = 0; i < plan.length; i++) {
      plan[i].job.step = stepNo;
      total += plan[i].tokens.length;
      if (plan[i].kind === "prefill") prefills = true;
    }
    this.#stepping = true;
    if (this.#constrained > 0) plan = await this.#applyMasks(plan);
    let results: StepResult[];
    const t0 = performance.now();
    try {
      results = await this.engine.step(plan);
    } catch (e) {
      // The step as a whole failed: every job in it fails.
      this.#stepping = false;
      for (const item of plan) this.#finish(item.job, "error", e as Error);
      return performance.now() - t0;
    }
    const now = performance.now();
    this.#stepping = false;
    this.stepResolvedAt = now;
    if (prefills) this.pacer.observe(now - t0, total);
    const n = plan.length;
    // Phase 1 (latency path): account what was fed and hand every sampled token to its response.
    // Jobs that end here are only marked `finishing`; finishing them waits for phase 2.
    this.#routing = true;
    try {
      for (let i = 0; i < n; i++) this.#route(plan[i], results[i], now);
    } finally {
      this.#routing = false;
    }
    // Phase 2: bookkeeping, after the frames went out.
    for (let i = 0; i < n; i++) {
      const item = plan[i];
      const job = item.job;
      if (item.kind === "prefill" && results[i].error === undefined) m?.promptTokens.inc(item.tokens.length);
      if (job.status === "finishing") this.#finish(job, job.ending!.reason, job.ending!.error);
      else if (job.cancelRequest !== null) this.#finish(job, "cancelled");
      if (job.conv.statsStale) this.#refreshStats(job.conv);
    }
    if (m) {
      m.steps.inc();
      m.batchTokens.observe(total);
      m.batchSequences.set(n);
      m.engineStep.observe((now - t0) / 1000);
    }
    this.#publishGauges();
    return now - t0;
  }

  /** Phase 1 for one item. An item that failed alone fed nothing: its job ends with that error. */
  #route(item: BatchItem, result: StepResult, now: number): void {
    const job = item.job;
    if (job.status === "done") return;
    job.conv.statsStale = true;
    if (result.error !== undefined) return this.#end(job, "error", result.error);
    job.conv.fed?.push(item.tokens);
    if (item.kind === "decode") job.next = -1; // fed
    else job.fed += item.tokens.length;
    if (job.cancelRequest !== null) this.#end(job, "cancelled");
    else if (item.sample) this.#deliver(job, result.token, now, result.logits);
    else if (job.req.maxTokens === 0 && job.fed === job.prompt.length) this.#end(job, "length");
  }

  /** Hand one sampled token to its job (phase 1); marks the job `finishing` when the response ends here. */
  #deliver(job: Job, token: number, now: number, logits: Float32Array | undefined): void {
    const m = this.metrics;
    job.output++;
    if (m) {
      m.generationTokens.inc();
      if (job.output === 1) m.ttft.observe((now - job.createdAt) / 1000);
      else m.itl.observe((now - job.lastTokenAt) / 1000);
    }
    job.lastTokenAt = now;
    if (job.req.stopTokens.has(token)) return this.#end(job, "stop");
    // Delivered from here on, fed by the next decode step; if the job ends first it stays pending.
    job.next = token;
    job.status = "decoding";
    let stop = false;
    try {
      stop = job.req.onToken(token, logits) === true;
    } catch (e) {
      return this.#end(job, "error", e as Error);
    }
    if (job.status !== "decoding") return; // ended from the callback (e.g. cancelled)
    if (stop) this.#end(job, "stop");
    else if (job.output >= job.req.maxTokens) this.#end(job, "length");
  }
}
