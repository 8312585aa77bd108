/**
 * The Responses API objects of one response (OpenAI's shapes, as the `openai` SDK types them): the response
 * object, its one output message, usage, and the streamed events in their documented order with their
 * `sequence_number`:
 *   response.created, response.in_progress, response.output_item.added, response.content_part.added,
 *   response.output_text.delta ..., response.output_text.done, response.content_part.done,
 *   response.output_item.done, then response.completed | response.incomplete | response.failed.
 */
import { type OutputFormat, textFormatObject } from "../grammar/format.ts";
import type { Finished } from "../response/runner.ts";
import type { TokenLogprob } from "../response/logprobs.ts";
import { type CacheUsage, cacheUsage } from "../response/cache_usage.ts";
import type { Conversation } from "../scheduler/scheduler.ts";
import { newId } from "../realtime/protocol.ts";

/** Where a response's cache came from: a new chain, the previous response's live sequence, or rebuilt. */
export type CacheSource = "new" | "live" | "rebuilt";

export type ResponseStatus = "in_progress" | "completed" | "incomplete" | "failed" | "cancelled";

/** What the response object echoes of its request. */
export interface ResponseParams {
  model: string;
  instructions: string | null;
  maxOutputTokens: number | null;
  previousResponseId: string | null;
  store: boolean;
  temperature: number;
  topP: number;
  topLogprobs: number;
  metadata: Record<string, string>;
  /** Include logprobs in the output text (include: message.output_text.logprobs). */
  logprobs: boolean;
  /** The output format (text.format); null for plain text. */
  format: OutputFormat | null;
}

export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
  sinkstream: CacheUsage & { cache: CacheSource; rebuilt_tokens: number };
}

const STATUS: Record<Finished["reason"], ResponseStatus> = {
  stop: "completed",
  length: "incomplete",
  cancelled: "cancelled",
  error: "failed",
};

/** The final event type of each status. */
const DONE_EVENT: Record<ResponseStatus, string> = {
  in_progress: "response.in_progress",
  completed: "response.completed",
  incomplete: "response.incomplete",
  failed: "response.failed",
  cancelled: "response.failed",
};

export class ResponseObjects {
  readonly id = newId("resp");
  readonly itemId = newId("msg");
  readonly createdAt = Math.floor(Date.now() / 1000);
  status: ResponseStatus = "in_progress";
  text = "";
  logprobs: TokenLogprob[] = [];
  usage: ResponsesUsage | null = null;
  error: { code: string; message: string } | null = null;
  #seq = 0;

  constructor(readonly params: ResponseParams, readonly send: ((type: string, ev: object) => void) | null) {}

  /** The output text part (logprobs only when asked for). */
  part(): Record<string, unknown> {
    return {
      type: "output_text",
      text: this.text,
      annotations: [],
      ...(this.params.logprobs ? { logprobs: this.logprobs } : {}),
    };
  }

  item(): Record<string, unknown> {
    const status = this.status === "in_progress"
      ? "in_progress"
      : this.status === "completed"
      ? "completed"
      : "incomplete";
    return {
      id: this.itemId,
      type: "message",
      status,
      role: "assistant",
      content: this.status === "in_progress" && this.text === "" ? [] : [this.part()],
    };
  }

  object(): Record<string, unknown> {
    const p = this.params;
    return {
      id: this.id,
      object: "response",
      created_at: this.createdAt,
      status: this.status,
      background: false,
      error: this.error,
      incomplete_details: this.status === "incomplete" ? { reason: "max_output_tokens" } : null,
      instructions: p.instructions,
      max_output_tokens: p.maxOutputTokens,
      max_tool_calls: null,
      metadata: p.metadata,
      model: p.model,
      output: this.status === "in_progress" ? [] : [this.item()],
      parallel_tool_calls: true,
      previous_response_id: p.previousResponseId,
      reasoning: { effort: null, summary: null },
      service_tier: "default",
      store: p.store,
      temperature: p.temperature,
      text: { format: textFormatObject(p.format) },
      tool_choice: "auto",
      tools: [],
      top_logprobs: p.topLogprobs,
      top_p: p.topP,
      truncation: "disabled",
      usage: this.usage,
      user: null,
    };
  }

  #emit(type: string, fields: Record<string, unknown>): void {
    this.send?.(type, { type, sequence_number: this.#seq++, ...fields });
  }

  #ids(): Record<string, unknown> {
    return { item_id: this.itemId, output_index: 0, content_index: 0 };
  }

  /** The response exists (its turn was submitted). */
  started(): void {
    this.#emit("response.created", { response: this.object() });
    this.#emit("response.in_progress", { response: this.object() });
    this.#emit("response.output_item.added", { output_index: 0, item: this.item() });
    this.#emit("response.content_part.added", {
      ...this.#ids(),
      part: {
        type: "output_text",
        text: "",
        annotations: [],
        ...(this.params.logprobs ? { logprobs: [] } : {}),
      },
    });
  }

  /** A piece of text (and the logprobs of the tokens since the last piece). */
  delta(text: string, logprobs: TokenLogprob[] | undefined): boolean {
    this.text += text;
    if (logprobs) this.logprobs.push(...logprobs);
    if (!this.send) return true;
    this.#emit("response.output_text.delta", { ...this.#ids(), delta: text, logprobs: logprobs ?? [] });
    return true;
  }

  /** The response ended: status, usage, the closing events. */
  finish(o: Finished, usage: ResponsesUsage): void {
    const shutdown = o.reason === "cancelled" && o.detail === "shutdown";
    this.status = shutdown ? "failed" : STATUS[o.reason];
    this.usage = usage;
    if (this.status === "failed") {
      const message = shutdown
        ? "the server shut down before the response ended"
        : o.error?.message ?? "generation failed";
      this.error = { code: "server_error", message };
    }
    this.#emit("response.output_text.done", {
      ...this.#ids(),
      text: this.text,
      logprobs: this.params.logprobs ? this.logprobs : [],
    });
    this.#emit("response.content_part.done", { ...this.#ids(), part: this.part() });
    this.#emit("response.output_item.done", { output_index: 0, item: this.item() });
    this.#emit(DONE_EVENT[this.status], { response: this.object() });
  }
}

/** Usage as OpenAI counts it: the whole context conditioned on, the part of it served from the live cache. */
export function responsesUsage(
  o: Finished,
  cachedBefore: number,
  source: CacheSource,
  rebuilt: number,
  conv: Conversation,
  capacity: number,
): ResponsesUsage {
  const input = cachedBefore + o.promptTokens;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: cachedBefore },
    output_tokens: o.outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + o.outputTokens,
    sinkstream: {
      cache: source,
      rebuilt_tokens: rebuilt,
      ...cacheUsage(o.stats ?? conv.stats, conv.options, capacity),
    },
  };
}
