/**
 * One response, for both front ends: render the turn -> submit it -> detokenise each token -> stop
 * strings -> finish reason. The front ends only translate: the Realtime session into events
 * (gateway/realtime/response_events.ts), chat completions into JSON or SSE chunks
 * (gateway/http/chat_completions.ts).
 *
 *  1. Render (asynchronous: large turns are tokenised off the event loop). A turn that cannot be
 *     rendered ends the run as `invalid`; one the off-thread encoder has no room for, `server_busy`.
 *  2. Submit through Admission; a refusal (`server_busy`, `server_shutting_down`) ends the run and
 *     nothing of the turn was taken. Otherwise `onStart` runs: the response exists from here on.
 *  3. Stream: each token is detokenised (UTF-8 safe), passed through the stop strings and handed to
 *     `onText`; the time from its engine step to `onText` handing it over is the per-token
 *     `gateway_token_latency_seconds` (D9).
 *  4. Finish: held-back text is flushed through `onText`; a stop string that matched makes the
 *     reason "stop".
 *
 * A cancel is accepted at every stage. One that lands while the turn renders still submits the turn,
 * cancelled at once, so it stays pending in the conversation and is fed first next turn, as after a
 * cancel during prefill (D8): what a cancel leaves behind does not depend on when it lands.
 */
import { Detokenizer } from "../../runtime/detokenizer.ts";
import { InvalidArgumentError } from "../../runtime/errors.ts";
import type { CacheStats, SamplingOptions, Tokenizer } from "../../runtime/types.ts";
import { type ChatMessage, EncoderBusyError } from "../chat/template.ts";
import { StopMatcher } from "../chat/stop.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { Conversation, FinishReason, Scheduler } from "../scheduler/scheduler.ts";
import { type Admission, isRefusal, type Refusal } from "./admission.ts";
import { type InputBudget, PROMPT_TOKEN_BYTES } from "./input_budget.ts";
import { LogprobReader, type TokenLogprob } from "./logprobs.ts";
import type { FormatSpec } from "../grammar/format.ts";
import { GrammarError, type GrammarSource, type TokenConstraint } from "../grammar/grammars.ts";

/** Renders a turn to tokens (gateway/chat/template.ts: large turns off the event loop). */
export interface TurnRenderer {
  readonly usesTemplate: boolean;
  /** The same ids on the calling thread (tests, tools; the runner uses encodeTurnAsync). */
  encodeTurn(messages: ChatMessage[], first: boolean): number[];
  /** Rejects with EncoderBusyError when the off-thread encoder's queue is full. */
  encodeTurnAsync(messages: ChatMessage[], first: boolean): Promise<number[]>;
  /** Stop what the renderer runs (its worker). */
  close(): void;
}

/** What a response needs from the gateway. */
export interface ResponseContext {
  scheduler: Scheduler;
  admission: Admission;
  renderer: TurnRenderer;
  tokenizer: Tokenizer;
  metrics: Metrics;
  /** Client input held but not consumed yet, over the whole gateway (input_budget.ts). */
  inputBudget: InputBudget;
  /** Tokens one rendered turn may have; 0 = no cap (`--max-prompt-tokens`). */
  maxPromptTokens: number;
  /** Constrained decoding (structured outputs), loaded on first use. */
  grammars: GrammarSource;
}

export interface ResponseSpec {
  conv: Conversation;
  /** The new turn's messages; `first` = nothing is in the conversation's cache yet. */
  messages: ChatMessage[];
  first: boolean;
  maxTokens: number;
  sampling: SamplingOptions;
  /** Stop strings: the text ends before the first match (not included). */
  stops?: readonly string[];
  /** Backpressure: the response is skipped while this says true. */
  isPaused?: () => boolean;
  /** Log-probabilities of each generated token with this many alternatives (0..20); unset: none (logprobs.ts). */
  logprobs?: number;
  /** Keep the ids of the rendered turn and of the generated tokens in the outcome (`Finished.tokens`). */
  recordTokens?: boolean;
  /**
   * Structured output: every sampled token is constrained to the format (gateway/grammar/), and the
   * response ends ("stop") once the text is complete. `param` names where the request set it, for the error
   * when its schema cannot be compiled.
   */
  format?: FormatSpec;
}

export interface ResponseSink {
  /** The turn was submitted: the response exists (once, before any text). */
  onStart?(): void;
  /**
   * Text for the client; true when it was handed to the socket or stream. With `spec.logprobs`, the entries
   * of the tokens generated since the last call come along (text held back by stop strings or an unfinished
   * character comes later than its token; the last call may carry entries and no text).
   */
  onText(text: string, logprobs?: TokenLogprob[]): boolean;
}

export interface Finished {
  kind: "finished";
  reason: FinishReason;
  /** Why it was cancelled (e.g. "shutdown", "client"). */
  detail?: string;
  error?: Error;
  /** All text handed to `onText`. */
  text: string;
  /** With `spec.logprobs`: one entry per generated token (EOS excluded); else null. */
  logprobs: TokenLogprob[] | null;
  /**
   * With `spec.recordTokens`: the rendered turn (without the conversation's pending tokens fed before it)
   * and the generated ids delivered (EOS excluded), in order; else null.
   */
  tokens: { turn: number[]; output: number[] } | null;
  promptTokens: number;
  outputTokens: number;
  stats: CacheStats | null;
}

/** Why a response never started: a turn that cannot be rendered, one over the prompt cap, or a refusal. */
export type NotStarted =
  | {
    kind: "invalid";
    message: string; /** The SequenceOptions option at fault, when known. */
    field?: string;
    /** The request parameter at fault, when known (an output format's schema). */
    param?: string;
  }
  | { kind: "too_large"; message: string }
  | ({ kind: "refused" } & Refusal);

export type Outcome = Finished | NotStarted;

export class ResponseRun {
  /** Resolves when the turn was submitted (null) or could not be (why). */
  readonly started: Promise<NotStarted | null>;
  readonly done: Promise<Outcome>;
  #started!: (v: NotStarted | null) => void;
  #cancel: string | null = null;
  #job: { cancel(detail?: string): void } | null = null;

  constructor(readonly ctx: ResponseContext, readonly spec: ResponseSpec, readonly sink: ResponseSink) {
    this.started = new Promise((r) => (this.#started = r));
    this.done = this.#run().catch((e) => {
      // A bug, not a client error: end the response as failed rather than leave it hanging.
      this.#job?.cancel("error");
      this.#started(null);
      return this.#finished({ reason: "error", error: e as Error }, "");
    });
  }

  /** End the response (at any stage); `detail` is reported with the cancelled outcome. */
  cancel(detail: string): void {
    if (this.#job) this.#job.cancel(detail);
    else this.#cancel ??= detail;
  }

  async #run(): Promise<Outcome> {
    const { ctx, spec } = this;
    let constraint: TokenConstraint | null = null;
    if (spec.format) {
      try {
        constraint = await (await ctx.grammars.get()).constraint(spec.format.value);
      } catch (e) {
        if (!(e instanceof GrammarError)) throw e;
        return this.#notStarted({ kind: "invalid", message: e.message, param: spec.format.param });
      }
    }
    try {
      return await this.#render(constraint);
    } finally {
      constraint?.dispose();
    }
  }

  /** Stage 1 (after the format's grammar is ready). */
  async #render(constraint: TokenConstraint | null): Promise<Outcome> {
    const { ctx, spec } = this;
    let prompt: number[];
    try {
      prompt = await ctx.renderer.encodeTurnAsync(spec.messages, spec.first);
    } catch (e) {
      if (e instanceof EncoderBusyError) {
        ctx.metrics.rejected.inc();
        return this.#notStarted({ kind: "refused", code: "server_busy", message: e.message });
      }
      return this.#notStarted({ kind: "invalid", message: (e as Error).message });
    }
    if (spec.conv.released) {
      // The conversation went away while the turn rendered: there is nothing to keep it in.
      this.#started(null);
      return this.#finished({ reason: "cancelled", detail: this.#cancel ?? "released" }, "");
    }
    try {
      // The engine's rules for the settings (a backstop: the Realtime session checks at session.update).
      ctx.scheduler.engine.checkSequenceOptions({ ...spec.conv.options, ...spec.sampling });
    } catch (e) {
      if (!(e instanceof InvalidArgumentError)) throw e;
      return this.#notStarted({ kind: "invalid", message: e.message, field: e.field });
    }
    const cap = ctx.maxPromptTokens;
    if (cap > 0 && prompt.length > cap) {
      return this.#notStarted({
        kind: "too_large",
        message:
          `the turn renders to ${prompt.length} tokens, over the limit of ${cap} (--max-prompt-tokens)`,
      });
    }
    // The prompt is held in memory until its job is done (the scheduler feeds it chunk by chunk).
    const promptBytes = prompt.length * PROMPT_TOKEN_BYTES;
    const over = ctx.inputBudget.hold(promptBytes, "this turn");
    if (over) return this.#notStarted({ kind: "refused", code: over.code, message: over.message });
    try {
      return await this.#stream(prompt, constraint);
    } finally {
      ctx.inputBudget.release(promptBytes);
    }
  }

  /** Stages 2-4 for a rendered prompt. */
  async #stream(prompt: number[], constraint: TokenConstraint | null): Promise<Outcome> {
    const { ctx, spec, sink } = this;
    const detok = new Detokenizer(ctx.tokenizer, { stripLeadingSpace: !ctx.renderer.usesTemplate });
    const stops = new StopMatcher(spec.stops ?? []);
    const { metrics, scheduler } = ctx;
    let text = "";
    const reader = spec.logprobs === undefined ? null : new LogprobReader(ctx.tokenizer, spec.logprobs);
    /** Every entry so far, and those not handed to the sink yet. */
    const all: TokenLogprob[] | null = reader ? [] : null;
    let unsent: TokenLogprob[] = [];
    const tokens = spec.recordTokens ? { turn: prompt, output: [] as number[] } : null;
    let produced = 0;
    const take = () => {
      const t = unsent;
      unsent = [];
      return reader ? t : undefined;
    };
    const job = ctx.admission.submit(scheduler, spec.conv, {
      prompt,
      maxTokens: spec.maxTokens,
      sampling: spec.sampling,
      stopTokens: new Set([ctx.tokenizer.eosId]),
      isPaused: spec.isPaused,
      logits: reader !== null,
      mask: constraint ? () => constraint.nextMask(spec.maxTokens - produced) : undefined,
      // Hot path, once per token.
      onToken: (token, logits) => {
        produced++;
        const complete = constraint !== null && constraint.accept(token);
        tokens?.output.push(token);
        if (reader && logits) {
          const entry = reader.read(token, logits);
          all!.push(entry);
          unsent.push(entry);
        }
        const piece = stops.push(detok.push(token));
        if (piece !== "") {
          text += piece;
          if (sink.onText(piece, take())) {
            metrics.gatewayTokenLatency.observe((performance.now() - scheduler.stepResolvedAt) / 1000);
          }
        }
        return stops.stopped || complete;
      },
    });
    if (isRefusal(job)) return this.#notStarted({ kind: "refused", ...job });
    this.#job = job;
    this.#started(null);
    sink.onStart?.();
    if (this.#cancel !== null) job.cancel(this.#cancel);
    const r = await job.done;
    const tail = stops.push(detok.flush()) + stops.flush();
    if (tail !== "" || unsent.length > 0) {
      text += tail;
      sink.onText(tail, take()); // not tied to a step: not a per-token latency
    }
    const reason = r.reason === "length" && stops.stopped ? "stop" : r.reason;
    return this.#finished({ ...r, reason }, text, all, tokens);
  }

  #notStarted(why: NotStarted): NotStarted {
    this.#started(why);
    return why;
  }

  #finished(
    r: { reason: FinishReason; detail?: string; error?: Error; promptTokens?: number; outputTokens?: number },
    text: string,
    logprobs: TokenLogprob[] | null = null,
    tokens: Finished["tokens"] = null,
  ): Finished {
    return {
      kind: "finished",
      reason: r.reason,
      detail: r.detail,
      error: r.error,
      text,
      logprobs,
      tokens,
      promptTokens: r.promptTokens ?? 0,
      outputTokens: r.outputTokens ?? 0,
      stats: this.spec.conv.stats,
    };
  }
}
