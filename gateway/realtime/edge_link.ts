/**
 * The backend side of an edge-relayed session (the protocol: internal_protocol.ts). Created by the
 * session manager only for a connection that carried the right `--backend-key`; it
 *  - counts the client events the session handles (`seq`, in the edge's numbering),
 *  - sends a checkpoint when a response has finished and on every attach,
 *  - runs a restore: settings, then the cached ids prefilled through the scheduler (admission: the KV
 *    budget; the input budget holds the ids meanwhile), then the pending ids left for the next turn,
 *    then `replay` client events handled silently; then `sinkstream.restored`,
 *  - tells the edge when the backend starts draining.
 */
import { InvalidArgumentError } from "../../runtime/errors.ts";
import { isRefusal as isAdmissionRefusal } from "../response/admission.ts";
import { PROMPT_TOKEN_BYTES } from "../response/input_budget.ts";
import { sequenceOptions } from "../response/options.ts";
import { FedTokens } from "../scheduler/fed_tokens.ts";
import { type ClientEvent, isRefusal, parseEvent } from "./client_events.ts";
import { type Checkpoint, INTERNAL, restoreBeginSchema, RestoreTokensSchema } from "./internal_protocol.ts";
import type { RealtimeSession } from "./session.ts";
import type { ErrorCode } from "../errors.ts";

interface Restoring {
  /** tokens: receiving ids; prefill: restore.end came, the cache is being prefilled; fed: prefill done. */
  phase: "tokens" | "prefill" | "fed";
  eventId: string | null;
  cacheCount: number;
  pendingCount: number;
  cache: number[];
  pending: number[];
  seq: number;
  /** Input budget bytes held for the ids until they are fed. */
  held: number;
}

export class EdgeLink {
  /** Client events handled, in the edge's numbering (silent replays not counted: the restore sets it). */
  seq = 0;
  #muted = 0;
  #restore: Restoring | null = null;
  /** Client events after the current restore's end to handle silently. */
  #replay = 0;
  /** A restore is only allowed as a new session's first business. */
  #restoreAllowed = true;

  constructor(readonly session: RealtimeSession) {}

  /** Handling a replayed event: the session sends nothing. */
  get muted(): boolean {
    return this.#muted > 0;
  }

  get restoring(): boolean {
    return this.#restore !== null;
  }

  /** An ordinary client event is about to be handled: false (after an error) while a restore cannot take one. */
  admit(eventId: string | null): boolean {
    const r = this.#restore;
    if (r === null || this.#muted > 0) {
      this.#restoreAllowed = false;
      return true;
    }
    this.session.sendError("session_restoring", "the session is being restored; wait for it", eventId);
    return false;
  }

  /** The client event admitted last was handled. */
  handled(): void {
    if (this.#muted === 0) {
      this.seq++;
      return;
    }
    this.#muted--;
    this.#maybeRestored();
  }

  /** An internal event from the edge. */
  handle(ev: ClientEvent): void {
    switch (ev.type) {
      case INTERNAL.restoreBegin:
        return this.#begin(ev);
      case INTERNAL.restoreTokens:
        return this.#tokens(ev);
      case INTERNAL.restoreEnd:
        return void this.#end(ev);
    }
    this.session.sendError(
      "unknown_event",
      `unknown event type "${ev.type.slice(0, 80)}"`,
      ev.eventId,
      "type",
    );
  }

  /** After session.created: the event count, and a checkpoint of what the session holds (its defaults when new). */
  onAttach(): void {
    this.session.send({ type: INTERNAL.attached, seq: this.seq });
    if (this.session.active === null) void this.checkpoint();
  }

  onDraining(): void {
    this.session.send({ type: INTERNAL.draining });
  }

  /** The first response of the conversation is about to be submitted: remember the ids it feeds. */
  rememberFedTokens(): void {
    const conv = this.session.conv;
    if (conv.fed !== null) return;
    conv.fed = new FedTokens(conv.options.sinks ?? 0, this.session.capacity());
  }

  /**
   * Send the session's checkpoint (no-op without a socket). The ids are read between engine steps. Never
   * rejects: a checkpoint that cannot be made is logged and skipped (the edge keeps the previous one).
   */
  async checkpoint(): Promise<void> {
    const { session } = this;
    if (session.socket === null) return;
    const conv = session.conv;
    const scheduler = session.ctx.scheduler;
    let cached: number[];
    try {
      cached = await scheduler.betweenSteps(() => {
        if (conv.seq === null || conv.fed === null || conv.released) return [];
        return conv.fed.idsAt(scheduler.engine.cacheIndices(conv.seq));
      });
    } catch (e) {
      console.error(`sinkstream: no checkpoint for session ${session.id}: ${(e as Error).message}`);
      return;
    }
    if (this.#restore !== null || session.socket === null) return; // a restore's own state is not one yet
    const checkpoint: Checkpoint = {
      seq: this.seq,
      state: session.state(),
      cache_tokens: cached,
      pending_tokens: [...conv.pending],
      items: session.unansweredItems(),
    };
    session.send({ type: INTERNAL.checkpoint, checkpoint });
  }

  #fail(code: ErrorCode, message: string, eventId: string | null, param: string | null = null): void {
    const r = this.#restore;
    if (r !== null) {
      this.session.ctx.inputBudget.release(r.held);
      this.#restore = null;
    }
    this.#muted = 0;
    this.#restoreAllowed = false;
    this.session.sendError(code, message, eventId, param);
  }

  #begin(ev: ClientEvent): void {
    const { session } = this;
    const ctx = session.ctx;
    if (!this.#restoreAllowed || this.#restore !== null || session.turns > 0 || session.conv.started) {
      this.#fail("invalid_event", "a restore must be the first thing a new session does", ev.eventId, "type");
      return;
    }
    const engine = ctx.scheduler.engine;
    const b = parseEvent(restoreBeginSchema(engine.limits), ev.obj, ev.eventId);
    if (isRefusal(b)) return this.#fail(b.code, b.message, b.eventId, b.param);
    const state = b.state ?? session.state();
    const options = sequenceOptions(ctx.config, state.sinkstream);
    try {
      engine.checkSequenceOptions({ ...options, ...session.samplingOf(state) });
    } catch (e) {
      if (!(e instanceof InvalidArgumentError)) throw e;
      return this.#fail("invalid_value", e.message, ev.eventId, "state.sinkstream");
    }
    const capacity = ctx.scheduler.capacityOf(options);
    if (b.cache_tokens > capacity) {
      const msg = `${b.cache_tokens} cached tokens do not fit a cache of ${capacity}`;
      return this.#fail("invalid_value", msg, ev.eventId, "cache_tokens");
    }
    if (ctx.maxPromptTokens > 0 && b.pending_tokens > ctx.maxPromptTokens) {
      const msg = `${b.pending_tokens} pending tokens exceed --max-prompt-tokens ${ctx.maxPromptTokens}`;
      return this.#fail("prompt_too_large", msg, ev.eventId, "pending_tokens");
    }
    const held = (b.cache_tokens + b.pending_tokens) * PROMPT_TOKEN_BYTES;
    const over = ctx.inputBudget.hold(held, "this restore");
    if (over) return this.#fail(over.code, over.message, ev.eventId);
    session.applyState(state);
    this.#restore = {
      phase: "tokens",
      eventId: ev.eventId,
      cacheCount: b.cache_tokens,
      pendingCount: b.pending_tokens,
      cache: [],
      pending: [],
      seq: b.seq,
      held,
    };
    this.#muted = 0;
    this.#replay = b.replay;
  }

  #tokens(ev: ClientEvent): void {
    const r = this.#restore;
    if (r === null || r.phase !== "tokens") {
      return this.#fail("invalid_event", "restore tokens outside a restore", ev.eventId, "type");
    }
    const t = parseEvent(RestoreTokensSchema, ev.obj, ev.eventId);
    if (isRefusal(t)) return this.#fail(t.code, t.message, t.eventId, t.param);
    const vocab = this.session.ctx.scheduler.engine.info.vocabSize;
    for (const id of t.tokens) {
      if (id >= vocab) {
        return this.#fail("invalid_value", `token ${id} is not below ${vocab}`, ev.eventId, "tokens");
      }
      if (r.cache.length < r.cacheCount) r.cache.push(id);
      else if (r.pending.length < r.pendingCount) r.pending.push(id);
      else {return this.#fail(
          "invalid_value",
          "more tokens than restore.begin announced",
          ev.eventId,
          "tokens",
        );}
    }
  }

  async #end(ev: ClientEvent): Promise<void> {
    const r = this.#restore;
    if (r === null || r.phase !== "tokens") {
      return this.#fail("invalid_event", "restore.end outside a restore", ev.eventId, "type");
    }
    if (r.cache.length !== r.cacheCount || r.pending.length !== r.pendingCount) {
      return this.#fail("invalid_value", "fewer tokens than restore.begin announced", ev.eventId, "tokens");
    }
    const { session } = this;
    const { conv, ctx } = session;
    r.phase = "prefill";
    this.#muted = this.#replay;
    if (r.cache.length > 0) {
      this.rememberFedTokens();
      const job = ctx.admission.submit(ctx.scheduler, conv, {
        prompt: r.cache,
        maxTokens: 0,
        sampling: session.samplingOf(session.state()),
        stopTokens: new Set(),
        onToken: () => {},
      });
      if (isAdmissionRefusal(job)) return this.#fail(job.code, job.message, r.eventId);
      const done = await job.done;
      if (this.#restore !== r) return; // failed meanwhile
      if (done.reason !== "length") {
        const why = done.error?.message ?? `the prefill ended ${done.reason}`;
        return this.#fail("engine_error", `restore failed: ${why}`, r.eventId);
      }
    }
    conv.pending = r.pending;
    r.phase = "fed";
    this.#maybeRestored();
  }

  #maybeRestored(): void {
    const r = this.#restore;
    if (r === null || r.phase !== "fed" || this.#muted > 0) return;
    this.session.ctx.inputBudget.release(r.held);
    this.#restore = null;
    this.#restoreAllowed = false;
    this.seq = r.seq;
    this.session.send({ type: INTERNAL.restored, seq: this.seq, session: this.session.sessionObject() });
  }
}
