/**
 * The Realtime events of one response: announced when its turn is submitted (response.created, the
 * assistant item, its content part), one `response.output_text.delta` per piece of text (the hot
 * path: a prebuilt frame head plus the text), and the closing events with status and usage from
 * the runner's outcome.
 */
import { apiError } from "../errors.ts";
import { cacheUsage } from "../response/cache_usage.ts";
import type { Finished } from "../response/runner.ts";
import type { Conversation } from "../scheduler/scheduler.ts";
import { newEventId, newId } from "./protocol.ts";

export interface StoredItem {
  id: string;
  type: "message";
  object: "realtime.item";
  role: "user" | "system" | "assistant";
  status: "completed" | "incomplete" | "in_progress";
  content: { type: string; text: string }[];
}

/** What a response writes through: its session. */
export interface ResponseHost {
  readonly conversationId: string;
  readonly conv: Conversation;
  send(event: Record<string, unknown>): void;
  /** Send a prebuilt frame; true when it was handed to the socket. */
  sendRaw(frame: string): boolean;
  /** Cache capacity of the session's conversation, in tokens. */
  capacity(): number;
}

const STATUS: Record<Finished["reason"], "completed" | "incomplete" | "cancelled" | "failed"> = {
  stop: "completed",
  length: "incomplete",
  cancelled: "cancelled",
  error: "failed",
};

export class RealtimeResponse {
  readonly id = newId("resp");
  readonly item: StoredItem = {
    id: newId("item"),
    type: "message",
    object: "realtime.item",
    role: "assistant",
    status: "in_progress",
    content: [],
  };
  /** The item before this response's item in the conversation (set by announce). */
  previous: string | null = null;
  announced = false;
  /** The constant middle of this response's delta frames (everything between event_id and the text). */
  readonly #deltaHead: string;
  readonly #base: Record<string, unknown>;

  constructor(
    readonly host: ResponseHost,
    maxTokens: number | "inf",
    metadata: Record<string, string> | null,
  ) {
    this.#deltaHead = `","type":"response.output_text.delta","response_id":${JSON.stringify(this.id)}` +
      `,"item_id":${JSON.stringify(this.item.id)},"output_index":0,"content_index":0,"delta":`;
    this.#base = {
      id: this.id,
      object: "realtime.response",
      conversation_id: host.conversationId,
      output_modalities: ["text"],
      max_output_tokens: maxTokens,
      metadata,
    };
  }

  announce(previous: string | null): void {
    this.announced = true;
    this.previous = previous;
    const { host, item, id } = this;
    host.send({
      type: "response.created",
      response: { ...this.#base, status: "in_progress", status_details: null, output: [], usage: null },
    });
    host.send({ type: "response.output_item.added", response_id: id, output_index: 0, item });
    host.send({ type: "conversation.item.added", previous_item_id: previous, item });
    host.send({ type: "conversation.item.created", previous_item_id: previous, item });
    host.send({
      type: "response.content_part.added",
      response_id: id,
      item_id: item.id,
      output_index: 0,
      content_index: 0,
      part: { type: "text", text: "" },
    });
  }

  /** Hot path, once per piece of text: the delta frame from its prebuilt head. */
  delta(text: string): boolean {
    return this.host.sendRaw('{"event_id":"' + newEventId() + this.#deltaHead + JSON.stringify(text) + "}");
  }

  finish(o: Finished): void {
    const { host, item, id } = this;
    const status = STATUS[o.reason];
    const details = o.reason === "stop"
      ? { type: "completed" }
      : o.reason === "length"
      ? { type: "incomplete", reason: "max_output_tokens" }
      : o.reason === "cancelled"
      ? { type: "cancelled", reason: o.detail === "shutdown" ? "server_shutdown" : "client_cancelled" }
      : { type: "failed", error: apiError("engine_error", o.error?.message ?? "generation failed") };
    const text = o.text;
    item.status = status === "completed" ? "completed" : "incomplete";
    item.content = [{ type: "output_text", text }];
    const ids = { response_id: id, item_id: item.id, output_index: 0, content_index: 0 };
    host.send({ type: "response.output_text.done", ...ids, text });
    host.send({ type: "response.content_part.done", ...ids, part: { type: "text", text } });
    host.send({ type: "response.output_item.done", response_id: id, output_index: 0, item });
    host.send({ type: "conversation.item.done", previous_item_id: this.previous, item });
    host.send({
      type: "response.done",
      response: { ...this.#base, status, status_details: details, output: [item], usage: this.#usage(o) },
    });
  }

  #usage(o: Finished): Record<string, unknown> {
    const conv = this.host.conv;
    return {
      total_tokens: o.promptTokens + o.outputTokens,
      input_tokens: o.promptTokens,
      output_tokens: o.outputTokens,
      input_token_details: {
        text_tokens: o.promptTokens,
        audio_tokens: 0,
        image_tokens: 0,
        cached_tokens: 0,
      },
      output_token_details: { text_tokens: o.outputTokens, audio_tokens: 0 },
      sinkstream: cacheUsage(o.stats ?? conv.stats, conv.options, this.host.capacity()),
    };
  }
}
