/**
 * One Realtime session = one conversation = one engine sequence (created on
 * the first response) whose KV cache persists across rounds. Each response
 * prefills only the new turn; the response runner (gateway/response/runner.ts)
 * runs it and response_events.ts writes its events. A disconnect cancels the
 * running response and keeps the session (its cache and the items not yet
 * answered) for a TTL so the client can resume.
 */
import { InvalidArgumentError } from "../../runtime/errors.ts";
import type { SamplingOptions } from "../../runtime/types.ts";
import type { z } from "zod";
import type { ChatMessage } from "../chat/template.ts";
import type { Config } from "../config/config.ts";
import type { ErrorCode } from "../errors.ts";
import { InputLedger, utf8Bytes } from "../response/input_budget.ts";
import { sequenceOptions } from "../response/options.ts";
import { type ResponseContext, ResponseRun } from "../response/runner.ts";
import { Conversation } from "../scheduler/scheduler.ts";
import { formatSpec, textFormat, textFormatObject, type TextFormatRequest } from "../grammar/format.ts";
import {
  errorEvent,
  ItemCreateSchema,
  ItemDeleteSchema,
  newEventId,
  newId,
  ResponseCancelSchema,
  ResponseCreateSchema,
  type SessionUpdateSchema,
  type SinkstreamSession,
} from "./protocol.ts";
import {
  type ClientEvent,
  type FrameRefusal,
  isRefusal,
  parseEvent,
  readClientFrame,
  unhandledEvent,
} from "./client_events.ts";
import { RealtimeResponse, type ResponseHost, type StoredItem } from "./response_events.ts";
import type { EdgeLink } from "./edge_link.ts";
import { responseFieldProblems, sessionFieldProblems } from "./unsupported_fields.ts";
import { type CheckpointItem, INTERNAL_PREFIX, type SessionState } from "./internal_protocol.ts";

/** What the session needs from the rest of the gateway. */
export interface SessionContext extends ResponseContext {
  config: Config;
  modelName: string;
  /** `session.update` with the engine's bounds (protocol.ts sessionUpdateSchema). */
  sessionUpdate: SessionUpdateSchema;
}

/** Where each engine option lives in `session.update` (for `error.param`). */
const SETTING_PARAM: Record<string, string> = {
  policy: "session.sinkstream.policy",
  sinks: "session.sinkstream.sinks",
  capacity: "session.sinkstream.window",
  topK: "session.sinkstream.top_k",
  topP: "session.sinkstream.top_p",
  seed: "session.sinkstream.seed",
  temperature: "session.temperature",
};

/** The minimal socket surface a session writes to (a WebSocket). */
export interface SessionSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** The response of this session, from response.create until its response.done. */
interface ActiveResponse {
  response: RealtimeResponse;
  run: ResponseRun;
  /** Resolves after the response's last event. */
  done: Promise<void>;
}

const OPEN = 1;
/** Item ids remembered for uniqueness and `previous_item_id` (ids only: the cache holds the content). */
const REMEMBERED_IDS = 1000;

/** An item added by the client and not answered yet, with the bytes its ledger holds for it. */
interface PendingItem {
  item: StoredItem;
  bytes: number;
}

function textOf(item: StoredItem): string {
  return item.content.map((c) => c.text).join("");
}

export class RealtimeSession implements ResponseHost {
  readonly id = newId("sess");
  readonly resumeToken: string;
  readonly conversationId = newId("conv");
  readonly conv: Conversation;
  socket: SessionSocket | null = null;
  instructions = "";
  #sentInstructions: string | null = null;
  maxOutputTokens: number | "inf";
  temperature: number;
  ext: SinkstreamSession = {};
  /** The session's output format as `session.text.format` set it (our extension); null: plain text. */
  textFormat: TextFormatRequest | null = null;
  /** Ids of the conversation's latest items, oldest first (at most REMEMBERED_IDS). */
  #ids: string[] = [];
  #idSet = new Set<string>();
  #unsent: PendingItem[] = [];
  /** Memory held by this session's unanswered items (input_budget.ts). */
  readonly input: InputLedger;
  #turns = 0;
  active: ActiveResponse | null = null;
  detachTimer: ReturnType<typeof setTimeout> | null = null;
  /** performance.now() of the last disconnect while the session waits for a resume; null when attached. */
  detachedAt: number | null = null;
  closed = false;
  /** Set when an edge relays this session (edge_link.ts): checkpoints, restore, event count. */
  link: EdgeLink | null = null;

  constructor(readonly ctx: SessionContext) {
    const bytes = crypto.getRandomValues(new Uint8Array(24));
    this.resumeToken = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    this.maxOutputTokens = ctx.config.maxOutputTokens;
    this.temperature = ctx.config.temperature;
    this.conv = new Conversation(sequenceOptions(ctx.config));
    this.input = new InputLedger(ctx.inputBudget, ctx.config.maxPendingBytes);
  }

  #remember(id: string): void {
    this.#ids.push(id);
    this.#idSet.add(id);
    if (this.#ids.length > REMEMBERED_IDS) this.#idSet.delete(this.#ids.shift()!);
  }

  #lastId(): string | null {
    return this.#ids.at(-1) ?? null;
  }

  capacity(): number {
    return this.ctx.scheduler.capacityOf(this.conv.options);
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
      text: { format: textFormatObject(textFormat(this.textFormat)) },
      tools: [],
      tool_choice: "none",
      sinkstream: {
        session_id: this.id,
        resume_token: this.resumeToken,
        policy: this.conv.options.policy,
        sinks: this.conv.options.sinks,
        window: this.capacity(),
        top_k: this.ext.top_k ?? 0,
        top_p: this.ext.top_p ?? 1,
        seed: this.ext.seed ?? null,
        cached_tokens: stats?.cached ?? 0,
        evicted_tokens: stats?.evicted ?? 0,
      },
    };
  }

  send(event: Record<string, unknown>): void {
    this.sendRaw(JSON.stringify({ event_id: newEventId(), ...event }));
  }

  sendRaw(frame: string): boolean {
    if (this.link?.muted) return true; // an event an edge replays: its answers went out before
    const s = this.socket;
    if (!s || s.readyState !== OPEN) return false;
    try {
      s.send(frame);
      return true;
    } catch {
      return false; // socket went away; the close handler cleans up
    }
  }

  sendError(code: ErrorCode, message: string, clientEventId?: string | null, param?: string | null): void {
    this.send(errorEvent(code, message, clientEventId ?? null, param ?? null));
  }

  /** Attach a socket (first connection or resume) and greet it. */
  attach(socket: SessionSocket): void {
    if (this.detachTimer !== null) {
      clearTimeout(this.detachTimer);
      this.detachTimer = null;
    }
    this.socket = socket;
    this.detachedAt = null;
    this.send({ type: "session.created", session: this.sessionObject() });
    this.link?.onAttach();
  }

  /** Responses that started in this conversation. */
  get turns(): number {
    return this.#turns;
  }

  /** Settings and turn state, for an edge checkpoint. */
  state(): SessionState {
    return {
      turns: this.#turns,
      instructions: this.instructions,
      sent_instructions: this.#sentInstructions,
      max_output_tokens: this.maxOutputTokens,
      temperature: this.temperature,
      text_format: this.textFormat,
      sinkstream: { ...this.ext },
    };
  }

  /** Take over a checkpoint's state (a restore, before anything else happened in this session). */
  applyState(s: SessionState): void {
    this.#turns = s.turns;
    this.instructions = s.instructions;
    this.#sentInstructions = s.sent_instructions;
    this.maxOutputTokens = s.max_output_tokens;
    this.temperature = s.temperature;
    this.textFormat = s.text_format ?? null;
    this.ext = { ...s.sinkstream };
    Object.assign(this.conv.options, sequenceOptions(this.ctx.config, this.ext));
  }

  /** The items added and not answered yet, oldest first. */
  unansweredItems(): CheckpointItem[] {
    return this.#unsent.map((p) => ({ id: p.item.id, role: p.item.role, content: p.item.content }));
  }

  /** Sampling options of a response under these settings. */
  samplingOf(s: Pick<SessionState, "sinkstream" | "temperature">): SamplingOptions {
    return this.#sampling(s.sinkstream, s.temperature);
  }

  /**
   * Socket closed: cancel the running response; keep the session (its cache, and the items not yet
   * answered) for `ttlMs` then free it. A session that holds neither expires at once.
   */
  detach(ttlMs: number, onExpire: () => void): void {
    this.socket = null;
    this.detachedAt = performance.now();
    this.active?.run.cancel("disconnected");
    if (ttlMs <= 0 || (!this.conv.started && this.#unsent.length === 0)) {
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
    this.active?.run.cancel("closed");
    this.ctx.scheduler.release(this.conv);
    this.#unsent = [];
    this.input.releaseAll();
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
    const ev = readClientFrame(data, this.ctx.config.maxFrameBytes);
    if (ev.refused) return this.#refuse(ev);
    const link = this.link;
    if (link !== null && ev.type.startsWith(INTERNAL_PREFIX)) return link.handle(ev);
    if (link !== null && !link.admit(ev.eventId)) return;
    this.#dispatch(ev);
    link?.handled();
  }

  #dispatch(ev: ClientEvent): void {
    const { obj, eventId } = ev;
    switch (ev.type) {
      case "session.update":
        return this.#sessionUpdate(obj, eventId);
      case "conversation.item.create":
        return this.#itemCreate(obj, eventId);
      case "response.create":
        return this.#responseCreate(obj, eventId);
      case "response.cancel":
        return this.#responseCancel(obj, eventId);
      case "conversation.item.delete":
        return this.#itemDelete(obj, eventId);
    }
    this.#refuse(unhandledEvent(ev.type, eventId));
  }

  #refuse(r: FrameRefusal): void {
    this.sendError(r.code, r.message, r.eventId, r.param);
  }

  /** The event as `schema` reads it, or null after an `invalid_value` error naming what is wrong. */
  #parse<T>(schema: z.ZodType<T>, obj: unknown, eventId: string | null): T | null {
    const r = parseEvent(schema, obj, eventId);
    if (!isRefusal(r)) return r;
    this.#refuse(r);
    return null;
  }

  /**
   * Applies every field it can. Each field this server does not implement (audio, tools, tracing, ...) or
   * that the Realtime API does not have gets a non-fatal error event naming it, and the rest of the update
   * applies (a client's default configuration never loses its instructions). A supported field with a
   * value the server refuses (a bad type, a locked or invalid cache setting) refuses the whole update.
   */
  #sessionUpdate(obj: unknown, eventId: string | null): void {
    const r = this.#parse(this.ctx.sessionUpdate, obj, eventId);
    if (!r) return;
    const s = r.session;
    const ext = s.sinkstream;
    if (ext) {
      const next = { ...this.ext, ...ext };
      const was = this.conv.options;
      const now = sequenceOptions(this.ctx.config, next);
      const cacheChange = now.policy !== was.policy || now.sinks !== was.sinks ||
        now.capacity !== was.capacity;
      if (cacheChange && (this.conv.started || this.active !== null)) {
        this.sendError(
          "session_settings_locked",
          "cache settings (policy, sinks, window) can only change before the first response",
          eventId,
          "session.sinkstream",
        );
        return;
      }
      // The engine's own rules (sinks < window, sampling bounds), checked now rather than at the first
      // response: a setting it refuses never reaches a response.
      try {
        this.ctx.scheduler.engine.checkSequenceOptions({
          ...now,
          ...this.#sampling(next, s.temperature ?? this.temperature),
        });
      } catch (e) {
        if (!(e instanceof InvalidArgumentError)) throw e;
        this.sendError("invalid_value", e.message, eventId, SETTING_PARAM[e.field ?? ""] ?? "session");
        return;
      }
      this.ext = next;
      Object.assign(this.conv.options, now);
    }
    const { unsupported, unknown } = sessionFieldProblems((obj as { session?: unknown }).session);
    for (const u of unsupported) this.sendError("unsupported_parameter", u.message, eventId, u.param);
    for (const param of unknown) {
      this.sendError("unknown_parameter", `unknown parameter ${param}; it was not applied`, eventId, param);
    }
    if (s.model !== undefined && s.model !== this.ctx.modelName) {
      this.sendError(
        "model_not_found",
        `the model \`${s.model}\` is not served here; the session goes on with \`${this.ctx.modelName}\``,
        eventId,
        "session.model",
      );
    }
    if (s.instructions !== undefined) this.instructions = s.instructions;
    const mot = s.max_output_tokens ?? s.max_response_output_tokens;
    if (mot !== undefined) this.maxOutputTokens = mot;
    if (s.temperature !== undefined) this.temperature = s.temperature;
    if (s.text?.format !== undefined) this.textFormat = s.text.format;
    this.send({ type: "session.updated", session: this.sessionObject() });
  }

  #itemCreate(obj: unknown, eventId: string | null): void {
    const r = this.#parse(ItemCreateSchema, obj, eventId);
    if (!r) return;
    const it = r.item;
    const id = it.id ?? newId("item");
    if (this.#idSet.has(id)) {
      this.sendError("invalid_value", `item id ${id} already exists`, eventId, "item.id");
      return;
    }
    let bytes = 0;
    for (const c of it.content) bytes += utf8Bytes(c.text);
    const refused = this.input.holdItem(bytes);
    if (refused) {
      this.sendError(refused.code, refused.message, eventId, "item");
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
    const previous = this.#lastId();
    this.#remember(id);
    this.#unsent.push({ item, bytes });
    // Three echoes of one item (up to a frame's worth of text): serialised once, not three times.
    const tail = `,"previous_item_id":${JSON.stringify(previous)},"item":${JSON.stringify(item)}}`;
    for (const type of ["conversation.item.added", "conversation.item.created", "conversation.item.done"]) {
      this.sendRaw(`{"event_id":"${newEventId()}","type":"${type}"${tail}`);
    }
  }

  #responseCreate(obj: unknown, eventId: string | null): void {
    const r = this.#parse(ResponseCreateSchema, obj, eventId);
    if (!r) return;
    if (this.active) {
      this.sendError(
        "conversation_already_has_active_response",
        `conversation already has an active response ${this.active.response.id}`,
        eventId,
      );
      return;
    }
    const p = r.response ?? {};
    const { unsupported, unknown } = responseFieldProblems(p);
    if (unsupported.length > 0) {
      this.sendError("unsupported_parameter", unsupported[0].message, eventId, unsupported[0].param);
      return;
    }
    if (unknown.length > 0) {
      this.sendError("unknown_parameter", `unknown parameter ${unknown[0]}`, eventId, unknown[0]);
      return;
    }
    // The turn: instructions when new, and every item added since the last response. Items added from
    // here on belong to the next turn; these go back if the response never starts.
    const instructions = p.instructions ?? this.instructions;
    const taken = this.#unsent;
    this.#unsent = [];
    const messages: ChatMessage[] = [];
    if (instructions !== "" && instructions !== this.#sentInstructions) {
      messages.push({ role: "system", content: instructions });
    }
    for (const p of taken) messages.push({ role: p.item.role, content: textOf(p.item) });
    const maxTokens = p.max_output_tokens ?? this.maxOutputTokens;
    const format = p.text?.format !== undefined
      ? formatSpec(textFormat(p.text.format), "response.text.format")
      : formatSpec(textFormat(this.textFormat), "session.text.format");
    this.link?.rememberFedTokens();
    const response = new RealtimeResponse(this, maxTokens, p.metadata ?? null);
    const run = new ResponseRun(this.ctx, {
      conv: this.conv,
      messages,
      first: this.#turns === 0,
      maxTokens: maxTokens === "inf" ? Infinity : maxTokens,
      sampling: this.#sampling(this.ext, p.temperature ?? this.temperature),
      format,
      isPaused: () => {
        const s = this.socket;
        return s !== null && s.bufferedAmount > this.ctx.config.backpressureBytes;
      },
    }, {
      onStart: () => {
        this.#turns++;
        this.#sentInstructions = instructions;
        this.#announce(response);
      },
      onText: (text) => response.delta(text),
    });
    // Active from here on: a second response.create is refused, a cancel cancels it, even while the
    // turn is still being rendered.
    const active: ActiveResponse = { response, run, done: Promise.resolve() };
    this.active = active;
    active.done = run.done.then(async (o) => {
      if (o.kind === "finished") {
        // The turn is in the conversation now (fed, or pending in the scheduler): its items are answered.
        for (const p of taken) this.input.releaseItem(p.bytes);
        if (!response.announced) this.#announce(response);
        // Relayed by an edge: the state after this response, before its closing events (still active, so
        // no response starts meanwhile).
        if (this.link) await this.link.checkpoint();
        if (this.active === active) this.active = null;
        response.finish(o);
        return;
      }
      if (this.active === active) this.active = null;
      this.#unsent = [...taken, ...this.#unsent];
      if (o.kind === "invalid" && o.param !== undefined) {
        this.sendError("invalid_value", o.message, eventId, o.param);
      } else if (o.kind === "invalid" && o.field !== undefined) {
        this.sendError("invalid_value", o.message, eventId, SETTING_PARAM[o.field] ?? null);
      } else if (o.kind === "invalid") {
        this.sendError("invalid_value", `cannot render the turn: ${o.message}`, eventId);
      } else if (o.kind === "too_large") {
        this.sendError("prompt_too_large", `${o.message}; delete items (conversation.item.delete)`, eventId);
      } else this.sendError(o.code, o.message, eventId);
    });
  }

  /** Sampling options of a response with these session settings. */
  #sampling(ext: SinkstreamSession, temperature: number): SamplingOptions {
    return {
      temperature,
      topK: ext.top_k ?? 0,
      topP: ext.top_p ?? 1,
      ...(ext.seed !== undefined ? { seed: ext.seed } : {}),
    };
  }

  #announce(response: RealtimeResponse): void {
    const previous = this.#lastId();
    this.#remember(response.item.id);
    response.announce(previous);
  }

  #itemDelete(obj: unknown, eventId: string | null): void {
    const r = this.#parse(ItemDeleteSchema, obj, eventId);
    if (!r) return;
    const id = r.item_id;
    const at = this.#unsent.findIndex((p) => p.item.id === id);
    if (at < 0) {
      const why = this.#idSet.has(id)
        ? `item ${id} was answered and is in the KV cache: only unanswered items can be deleted`
        : `no item ${id} in this conversation`;
      this.sendError("item_not_found", why, eventId, "item_id");
      return;
    }
    const [gone] = this.#unsent.splice(at, 1);
    this.input.releaseItem(gone.bytes);
    const i = this.#ids.lastIndexOf(id);
    if (i >= 0) this.#ids.splice(i, 1);
    this.#idSet.delete(id);
    this.send({ type: "conversation.item.deleted", item_id: id });
  }

  #responseCancel(obj: unknown, eventId: string | null): void {
    const r = this.#parse(ResponseCancelSchema, obj, eventId);
    if (!r) return;
    const a = this.active;
    if (!a || (r.response_id !== undefined && r.response_id !== a.response.id)) {
      this.sendError("response_cancel_not_active", "there is no active response to cancel", eventId);
      return;
    }
    a.run.cancel("client");
  }

  /** Cancel the running response (if any) and wait for its final event. */
  async cancelActive(detail: string): Promise<void> {
    const a = this.active;
    if (!a) return;
    a.run.cancel(detail);
    await a.done;
  }
}
