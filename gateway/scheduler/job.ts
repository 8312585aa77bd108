/**
 * The state the scheduler keeps per conversation and per response (job). Every status change of a
 * job happens in scheduler.ts; this file holds the state, the request and result shapes, and what
 * follows from the state.
 */
import type { CacheStats, SamplingOptions, SequenceOptions, StepItem } from "../../runtime/types.ts";
import type { FedTokens } from "./fed_tokens.ts";

export type FinishReason = "stop" | "length" | "cancelled" | "error";

/**
 * A job's life, one field:
 *  - `queued`: submitted; its sequence is not prepared yet (created lazily, sampling applied);
 *  - `prefilling`: its prompt is being fed, a chunk per step;
 *  - `decoding`: the prompt is fed and `next` (the last token delivered) waits for its decode step;
 *  - `finishing`: the step being routed ended it (`ending` says why); it is finished once every token
 *    of that step went out;
 *  - `done`: its result is resolved.
 * A job that is cancelled, or fails to prepare, outside a running step goes straight to `done`.
 */
export type JobStatus = "queued" | "prefilling" | "decoding" | "finishing" | "done";

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
  /** 0: feed the prompt and sample nothing (a restore's prefill); the job ends "length" once it is fed. */
  maxTokens: number;
  sampling?: SamplingOptions;
  /** Tokens that end the response (not delivered, not fed). */
  stopTokens: ReadonlySet<number>;
  /** When true the job is skipped this step (backpressure). */
  isPaused?: () => boolean;
  /**
   * Ask the engine for the logits of every step that samples for this job (vocab floats per token; for
   * logprobs): `onToken` then gets them, valid only during the call.
   */
  logits?: boolean;
  /**
   * Constrained decoding: called before each step that samples for this job, for the token mask of that
   * sample (StepItem.mask); the step waits for it. Absent: the job samples from the whole vocabulary.
   */
  mask?: () => Promise<Uint32Array>;
  /** Delivers one generated token (and, with `logits`, the raw logits it was sampled from). Return true to stop the response here. */
  onToken: (token: number, logits?: Float32Array) => boolean | void;
}

export interface JobHandle {
  readonly done: Promise<GenerateResult>;
  /**
   * Ask for the response to end. A job not in the running step ends at once; one in the running step
   * ends when that step returns, and the token it sampled is dropped.
   */
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
  /** KV bytes reserved for this conversation's worst case (0 before its first response). */
  reservedBytes = 0;
  /** The ids fed so far, when something needs the cached ids (an edge checkpoint); else null. */
  fed: FedTokens | null = null;
  constructor(readonly options: SequenceOptions) {}
  get started(): boolean {
    return this.seq !== null || this.reservedBytes > 0;
  }
}

/** One item of a step: what the engine gets, plus what it is (prefill chunk or decode token) and whose. */
export interface BatchItem extends StepItem {
  readonly kind: "prefill" | "decode";
  readonly job: Job;
  seq: number;
  tokens: number[];
  sample: boolean;
  logits: boolean;
  mask?: Uint32Array;
}

export class Job implements JobHandle {
  status: JobStatus = "queued";
  readonly done: Promise<GenerateResult>;
  #resolve!: (r: GenerateResult) => void;
  readonly prompt: number[];
  /** Prompt tokens fed so far. */
  fed = 0;
  /** Tokens generated so far. */
  output = 0;
  /** The last delivered token, fed by the job's next decode step; -1 when there is none. */
  next = -1;
  /** A cancel request (its detail), read by the scheduler; null when none was made. */
  cancelRequest: string | null = null;
  /** Why the job ends, set when it enters `finishing`. */
  ending: { reason: FinishReason; error?: Error } | null = null;
  /** Number of the last step this job was put in. */
  step = -1;
  readonly samplingKey: string;
  /** This job's decode item, reused every step (no allocation per token). */
  readonly decodeItem: BatchItem;
  readonly createdAt = performance.now();
  lastTokenAt = 0;

  constructor(
    readonly conv: Conversation,
    readonly req: GenerateRequest,
    readonly onCancel: (job: Job, detail: string) => void,
  ) {
    this.prompt = conv.pending.length > 0 ? [...conv.pending, ...req.prompt] : req.prompt.slice();
    conv.pending = [];
    this.samplingKey = req.sampling ? JSON.stringify(req.sampling) : "";
    this.decodeItem = {
      kind: "decode",
      job: this,
      seq: -1,
      tokens: [0],
      sample: true,
      logits: req.logits === true,
    };
    this.done = new Promise((r) => (this.#resolve = r));
  }

  cancel(detail = "cancelled"): void {
    this.onCancel(this, detail);
  }

  /** What was given to this job but not fed: the rest of the prompt, then the delivered last token. */
  unfed(): number[] {
    const rest = this.fed < this.prompt.length ? this.prompt.slice(this.fed) : [];
    if (this.next >= 0) rest.push(this.next);
    return rest;
  }

  resolve(reason: FinishReason, error?: Error): void {
    this.#resolve({
      reason,
      promptTokens: this.fed,
      outputTokens: this.output,
      stats: this.conv.stats,
      error,
      detail: reason === "cancelled" ? this.cancelRequest ?? undefined : undefined,
    });
  }
}
