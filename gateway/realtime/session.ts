/**
 * One Realtime session = one conversation = one engine sequence (created on
 * the first response) whose KV cache persists across rounds. Each response
 * prefills only the new turn. A disconnect cancels the running response and
 * keeps the session (and its cache) for a TTL so the client can resume.
 */
import type { CachePolicy, Tokenizer } from "../../runtime/types.ts";
import type { ChatMessage, ChatRenderer } from "../chat/template.ts";
import { Detokenizer } from "../../runtime/detokenizer.ts";
import type { Config } from "../config/config.ts";
import type { Metrics } from "../metrics/metrics.ts";
import {
  BusyError,
  Conversation,
  type GenerateResult,
  type JobHandle,
  type Scheduler,
} from "../scheduler/scheduler.ts";
import {
  type ErrorCode,
  ItemCreateSchema,
  newEventId,
  newId,
  ResponseCancelSchema,
  ResponseCreateSchema,
  SessionUpdateSchema,
  type SinkstreamSession,
  UNSUPPORTED_TYPES,
  zodMessage,
} from "./protocol.ts";

/** What the session needs from the rest of the gateway. */
export interface SessionContext {
  config: Config;
  scheduler: Scheduler;
  renderer: ChatRenderer;
  tokenizer: Tokenizer;
  metrics: Metrics;
  modelName: string;
}

/** The minimal socket surface a session writes to (a WebSocket). */
export interface SessionSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

interface StoredItem {
  id: string;
  type: "message";
  object: "realtime.item";
  role: "user" | "system" | "assistant";
  status: "completed" | "incomplete" | "in_progress";
  content: { type: string; text: string }[];
}

interface ActiveResponse {
  id: string;
  item: StoredItem;
  job: JobHandle | null;
  detok: Detokenizer;
  maxTokens: number | "inf";
  done: Promise<void>;
  /** The constant middle of this response's delta frames (everything between event_id and the text). */
  deltaHead: string;
}

const OPEN = 1;

function textOf(item: StoredItem): string {
  return item.content.map((c) => c.text).join("");
}

export class RealtimeSession {
  readonly id = newId("sess");
  readonly resumeToken: string;
  readonly conversationId = newId("conv");
  readonly conv: Conversation;
  socket: SessionSocket | null = null;
  instructions = "";
  #sentInstructions: string | null = null;
  maxOutputTokens: number | "inf";
  temperature = 0;
  ext: SinkstreamSession = {};
  #items: StoredItem[] = [];
  #unsent: StoredItem[] = [];
  #turns = 0;
  active: ActiveResponse | null = null;
  detachTimer: ReturnType<typeof setTimeout> | null = null;
  closed = false;

  constructor(readonly ctx: SessionContext) {
    const bytes = crypto.getRandomValues(new Uint8Array(24));
    this.resumeToken = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    this.maxOutputTokens = ctx.config.maxOutputTokens;
    this.conv = new Conversation({});
    this.#syncConvOptions();
  }

  #syncConvOptions(): void {
    const c = this.ctx.config;
    const o = this.conv.options;
    o.policy = (this.ext.policy ?? c.policy) as CachePolicy;
    o.sinks = this.ext.sinks ?? c.sinks;
    const w = this.ext.window ?? c.window;
    o.capacity = w > 0 ? w : undefined;
  }

  sessionObject(): Record<string, unknown> {
    const stats = this.conv.stats;
    return {
      type: "realtime",
      id: this.id,
      object: "realtime.session",
      model: this.ctx.modelName,
      output_modalities: ["text"],
      instructions: this.instructions,
      max_output_tokens: this.maxOutputTokens,
      temperature: this.temperature,
      tools: [],
      tool_choice: "none",
      sinkstream: {
        session_id: this.id,
        resume_token: this.resumeToken,
        policy: this.conv.options.policy,
        sinks: this.conv.options.sinks,
        window: this.ctx.scheduler.capacityOf(this.conv.options),
        top_k: this.ext.top_k ?? 0,
        top_p: this.ext.top_p ?? 1,
        seed: this.ext.seed ?? null,
        cached_tokens: stats?.cached ?? 0,
        evicted_tokens: stats?.evicted ?? 0,
      },
    };
  }

  send(event: Record<string, unknown>): void {
    const s = this.socket;
    if (!s || s.readyState !== OPEN) return;
    try {
      s.send(JSON.stringify({ event_id: newEventId(), ...event }));
    } catch { /* socket went away; the close handler cleans up */ }
  }

  sendError(code: ErrorCode, message: string, clientEventId?: string | null, param?: string | null): void {
    const type = code === "server_busy"
      ? "server_error"
      : code === "internal_error"
      ? "server_error"
      : "invalid_request_error";
    this.send({
      type: "error",
      error: { type, code, message, param: param ?? null, event_id: clientEventId ?? null },
    });
  }

  /** Attach a socket (first connection or resume) and greet it. */
  attach(socket: SessionSocket): void {
    if (this.detachTimer !== null) {
      clearTimeout(this.detachTimer);
      this.detachTimer = null;
    }
    this.socket = socket;
    this.send({ type: "session.created", session: this.sessionObject() });
  }

  /** Socket closed: cancel the running response; keep the cache for `ttlMs` then free it. */
  detach(ttlMs: number, onExpire: () => void): void {
    this.socket = null;
    this.active?.job?.cancel("disconnected");
    if (ttlMs <= 0 || !this.conv.started) {
      onExpire();
      return;
    }
    this.detachTimer = setTimeout(() => {
      this.detachTimer = null;
      onExpire();
    }, ttlMs);
  }

  /** Free the engine sequence; the session is over. */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.detachTimer !== null) clearTimeout(this.detachTimer);
    this.detachTimer = null;
    this.active?.job?.cancel("closed");
    this.ctx.scheduler.release(this.conv);
  }

  /** Handle one raw frame from the client. Never throws. */
  handleFrame(data: unknown): void {
    try {
      this.#handleFrame(data);
    } catch (e) {
      this.sendError("internal_error", `internal error: ${(e as Error).message}`);
    }
  }

  #handleFrame(data: unknown): void {
    if (typeof data !== "string") {
      this.sendError("binary_not_supported", "binary frames are not supported; send JSON text frames");
      return;
    }
    const limit = this.ctx.config.maxFrameBytes;
    if (data.length > limit || (data.length * 3 > limit && new TextEncoder().encode(data).length > limit)) {
      this.sendError("frame_too_large", `frame exceeds the limit of ${limit} bytes`);
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      this.sendError("invalid_json", "frame is not valid JSON");
      return;
    }
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
      this.sendError("invalid_event", "an event must be a JSON object with a string `type`");
      return;
    }
    const obj = msg as Record<string, unknown>;
    const eventId = typeof obj.event_id === "string" ? obj.event_id : null;
    if (typeof obj.type !== "string") {
      this.sendError("invalid_event", "an event must be a JSON object with a string `type`", eventId, "type");
      return;
    }
    switch (obj.type) {
      case "session.update":
        return this.#sessionUpdate(obj, eventId);
      case "conversation.item.create":
        return this.#itemCreate(obj, eventId);
      case "response.create":
        return this.#responseCreate(obj, eventId);
      case "response.cancel":
        return this.#responseCancel(obj, eventId);
    }
    if (UNSUPPORTED_TYPES.has(obj.type)) {
      this.sendError(
        "unsupported_event",
        `${obj.type} is not supported: this server speaks the text subset of the Realtime API`,
        eventId,
        "type",
      );
      return;
    }
    this.sendError("unknown_event", `unknown event type "${obj.type.slice(0, 80)}"`, eventId, "type");
  }

  #sessionUpdate(obj: unknown, eventId: string | null): void {
    const r = SessionUpdateSchema.safeParse(obj);
    if (!r.success) {
      const { message, param } = zodMessage(r.error);
      this.sendError("invalid_value", message, eventId, param);
      return;
    }
    const s = r.data.session;
    const mods = s.output_modalities ?? s.modalities;
    if (mods && mods.includes("audio")) {
      this.sendError(
        "invalid_value",
        'audio output is not supported; use ["text"]',
        eventId,
        "session.output_modalities",
      );
      return;
    }
    const ext = s.sinkstream;
    if (ext) {
      const cacheChange = ext.policy !== undefined || ext.sinks !== undefined || ext.window !== undefined;
      if (cacheChange && this.conv.started) {
        this.sendError(
          "session_settings_locked",
          "cache settings (policy, sinks, window) can only change before the first response",
          eventId,
          "session.sinkstream",
        );
        return;
      }
      const next = { ...this.ext, ...ext };
      const cap = next.window ?? this.ctx.config.window;
      const sinks = next.sinks ?? this.ctx.config.sinks;
      if (cap > 0 && (next.policy ?? this.ctx.config.policy) === "streaming" && sinks >= cap) {
        this.sendError(
          "invalid_value",
          `sinks (${sinks}) must be smaller than window (${cap})`,
          eventId,
          "session.sinkstream.sinks",
        );
        return;
      }
      if (cap > this.ctx.scheduler.engine.info.maxSeqLen * 64) {
        this.sendError("invalid_value", "window is too large", eventId, "session.sinkstream.window");
        return;
      }
      this.ext = next;
      this.#syncConvOptions();
    }
    if (s.instructions !== undefined) this.instructions = s.instructions;
    const mot = s.max_output_tokens ?? s.max_response_output_tokens;
    if (mot !== undefined) this.maxOutputTokens = mot;
    if (s.temperature !== undefined) this.temperature = s.temperature;
    this.send({ type: "session.updated", session: this.sessionObject() });
  }

  #itemCreate(obj: unknown, eventId: string | null): void {
    const r = ItemCreateSchema.safeParse(obj);
    if (!r.success) {
      const { message, param } = zodMessage(r.error);
      this.sendError("invalid_value", message, eventId, param);
      return;
    }
    const it = r.data.item;
    const id = it.id ?? newId("item");
    if (this.#items.some((x) => x.id === id)) {
      this.sendError("invalid_value", `item id ${id} already exists`, eventId, "item.id");
      return;
    }
    const item: StoredItem = {
      id,
      type: "message",
      object: "realtime.item",
      role: it.role,
      status: "completed",
      content: it.content.map((c) => ({
        type: it.role === "assistant" ? "output_text" : "input_text",
        text: c.text,
      })),
    };
    const previous = this.#items.at(-1)?.id ?? null;
    this.#items.push(item);
    this.#unsent.push(item);
    if (this.#items.length > 1000) this.#items.splice(0, this.#items.length - 1000);
    this.send({ type: "conversation.item.added", previous_item_id: previous, item });
    this.send({ type: "conversation.item.created", previous_item_id: previous, item });
    this.send({ type: "conversation.item.done", previous_item_id: previous, item });
  }

  #responseCreate(obj: unknown, eventId: string | null): void {
    const r = ResponseCreateSchema.safeParse(obj);
    if (!r.success) {
      const { message, param } = zodMessage(r.error);
      this.sendError("invalid_value", message, eventId, param);
      return;
    }
    if (this.active) {
      this.sendError(
        "conversation_already_has_active_response",
        `conversation already has an active response ${this.active.id}`,
        eventId,
      );
      return;
    }
    const p = r.data.response ?? {};
    const mods = p.output_modalities ?? p.modalities;
    if (mods && mods.includes("audio")) {
      this.sendError("invalid_value", "audio output is not supported", eventId, "response.output_modalities");
      return;
    }
    const instructions = p.instructions ?? this.instructions;
    const messages: ChatMessage[] = [];
    if (instructions !== "" && instructions !== this.#sentInstructions) {
      messages.push({ role: "system", content: instructions });
    }
    for (const it of this.#unsent) messages.push({ role: it.role, content: textOf(it) });
    const first = this.#turns === 0;
    let prompt: number[];
    try {
      prompt = this.ctx.renderer.encodeTurn(messages, first);
    } catch (e) {
      this.sendError("invalid_value", `cannot render the turn: ${(e as Error).message}`, eventId);
      return;
    }
    const maxTokens = p.max_output_tokens ?? this.maxOutputTokens;
    const temperature = p.temperature ?? this.temperature;
    const item: StoredItem = {
      id: newId("item"),
      type: "message",
      object: "realtime.item",
      role: "assistant",
      status: "in_progress",
      content: [],
    };
    const responseId = newId("resp");
    let job: JobHandle;
    try {
      job = this.ctx.scheduler.submit(this.conv, {
        prompt,
        maxTokens: maxTokens === "inf" ? Number.MAX_SAFE_INTEGER : maxTokens,
        sampling: {
          temperature,
          topK: this.ext.top_k ?? 0,
          topP: this.ext.top_p ?? 1,
          ...(this.ext.seed !== undefined ? { seed: this.ext.seed } : {}),
        },
        stopTokens: new Set([this.ctx.tokenizer.eosId]),
        isPaused: () => {
          const s = this.socket;
          return s !== null && s.bufferedAmount > this.ctx.config.backpressureBytes;
        },
        onToken: (t) => this.#onToken(t),
      });
    } catch (e) {
      if (e instanceof BusyError) {
        this.sendError("server_busy", e.message, eventId);
        return;
      }
      throw e;
    }
    this.#turns++;
    this.#sentInstructions = instructions;
    this.#unsent = [];
    const detok = new Detokenizer(this.ctx.tokenizer, { stripLeadingSpace: !this.ctx.renderer.usesTemplate });
    const deltaHead = `","type":"response.output_text.delta","response_id":${JSON.stringify(responseId)}` +
      `,"item_id":${JSON.stringify(item.id)},"output_index":0,"content_index":0,"delta":`;
    const active: ActiveResponse = {
      id: responseId,
      item,
      job,
      detok,
      maxTokens,
      done: Promise.resolve(),
      deltaHead,
    };
    this.active = active;
    const base = {
      id: responseId,
      object: "realtime.response",
      conversation_id: this.conversationId,
      output_modalities: ["text"],
      max_output_tokens: maxTokens,
      metadata: p.metadata ?? null,
    };
    this.send({
      type: "response.created",
      response: { ...base, status: "in_progress", status_details: null, output: [], usage: null },
    });
    const previous = this.#items.at(-1)?.id ?? null;
    this.#items.push(item);
    this.send({ type: "response.output_item.added", response_id: responseId, output_index: 0, item });
    this.send({ type: "conversation.item.added", previous_item_id: previous, item });
    this.send({ type: "conversation.item.created", previous_item_id: previous, item });
    this.send({
      type: "response.content_part.added",
      response_id: responseId,
      item_id: item.id,
      output_index: 0,
      content_index: 0,
      part: { type: "text", text: "" },
    });
    active.done = job.done.then((res) => this.#finish(active, base, res, previous));
  }

  /** Hot path, once per token: detokenise, build the delta frame from its prebuilt head, send. */
  #onToken(token: number): void {
    const a = this.active;
    if (!a) return;
    const delta = a.detok.push(token);
    if (delta === "") return;
    const s = this.socket;
    if (!s || s.readyState !== OPEN) return;
    try {
      s.send('{"event_id":"' + newEventId() + a.deltaHead + JSON.stringify(delta) + "}");
    } catch {
      return; // socket went away; the close handler cleans up
    }
    const ctx = this.ctx;
    ctx.metrics.gatewayTokenLatency.observe((performance.now() - ctx.scheduler.stepResolvedAt) / 1000);
  }

  #finish(
    a: ActiveResponse,
    base: Record<string, unknown>,
    res: GenerateResult,
    previous: string | null,
  ): void {
    const tail = a.detok.flush();
    if (tail !== "") {
      this.send({
        type: "response.output_text.delta",
        response_id: a.id,
        item_id: a.item.id,
        output_index: 0,
        content_index: 0,
        delta: tail,
      });
    }
    const text = a.detok.text;
    let status: string, details: Record<string, unknown>;
    if (res.reason === "stop") {
      status = "completed";
      details = { type: "completed" };
    } else if (res.reason === "length") {
      status = "incomplete";
      details = { type: "incomplete", reason: "max_output_tokens" };
    } else if (res.reason === "cancelled") {
      status = "cancelled";
      const reason = res.detail === "shutdown" ? "server_shutdown" : "client_cancelled";
      details = { type: "cancelled", reason };
    } else {
      status = "failed";
      details = {
        type: "failed",
        error: {
          type: "server_error",
          code: "engine_error",
          message: res.error?.message ?? "generation failed",
        },
      };
    }
    a.item.status = status === "completed" ? "completed" : "incomplete";
    a.item.content = [{ type: "output_text", text }];
    const ids = { response_id: a.id, item_id: a.item.id, output_index: 0, content_index: 0 };
    this.send({ type: "response.output_text.done", ...ids, text });
    this.send({ type: "response.content_part.done", ...ids, part: { type: "text", text } });
    this.send({ type: "response.output_item.done", response_id: a.id, output_index: 0, item: a.item });
    this.send({ type: "conversation.item.done", previous_item_id: previous, item: a.item });
    const st = res.stats ?? this.conv.stats;
    const usage = {
      total_tokens: res.promptTokens + res.outputTokens,
      input_tokens: res.promptTokens,
      output_tokens: res.outputTokens,
      input_token_details: {
        text_tokens: res.promptTokens,
        audio_tokens: 0,
        image_tokens: 0,
        cached_tokens: 0,
      },
      output_token_details: { text_tokens: res.outputTokens, audio_tokens: 0 },
      sinkstream: {
        policy: st?.policy ?? this.conv.options.policy,
        sinks: st?.sinks ?? 0,
        window: st?.capacity ?? this.ctx.scheduler.capacityOf(this.conv.options),
        cached_tokens: st?.cached ?? 0,
        seen_tokens: st?.seen ?? 0,
        evicted_tokens: st?.evicted ?? 0,
        cache_bytes: st?.bytes ?? 0,
      },
    };
    if (this.active === a) this.active = null;
    this.send({
      type: "response.done",
      response: { ...base, status, status_details: details, output: [a.item], usage },
    });
  }

  #responseCancel(obj: unknown, eventId: string | null): void {
    const r = ResponseCancelSchema.safeParse(obj);
    if (!r.success) {
      const { message, param } = zodMessage(r.error);
      this.sendError("invalid_value", message, eventId, param);
      return;
    }
    const a = this.active;
    if (!a || (r.data.response_id !== undefined && r.data.response_id !== a.id)) {
      this.sendError("response_cancel_not_active", "there is no active response to cancel", eventId);
      return;
    }
    a.job?.cancel("client");
  }

  /** Cancel the running response (if any) and wait for its final event. */
  async cancelActive(detail: string): Promise<void> {
    const a = this.active;
    if (!a) return;
    a.job?.cancel(detail);
    await a.done;
  }
}
