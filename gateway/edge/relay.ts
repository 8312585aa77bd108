/**
 * One client's Realtime session at the edge: a client socket, one upstream socket to the backend session
 * that serves it, and what it takes to move that session (docs/edge.md).
 *
 * Client -> backend: every frame passes the checks a backend runs first (client_events.ts), so a bad one
 * gets the same typed error from the edge and never reaches a backend; the rest go up unchanged, numbered
 * (`seq`, the count the backend keeps too). Events that change state (session.update, item create/delete)
 * are kept until a checkpoint covers them (at most `--max-replay-bytes` with those waiting to go up): a
 * restore replays them.
 * Backend -> client: unchanged, one message at a time, read only while the client's socket has less than
 * `--backpressure-bytes` queued (the backend's own pause takes over behind that); the internal events are
 * consumed here, the session objects get the edge's session id and resume token.
 * Moves: a lost upstream (drop, refused connection) is first resumed on the same backend session; if that
 * session is gone, the move is claimed in the directory and the session is restored elsewhere from its
 * checkpoint (+ the kept events); the client gets `sinkstream.session.migrated`, and a response that was
 * running ends `failed` with `backend_lost`. A draining backend's sessions move when they are idle.
 */
import { apiError, type ErrorCode } from "../errors.ts";
import { constantTimeIn } from "../middleware/auth.ts";
import {
  CLIENT_EVENT_TYPES,
  isRefusal,
  parseEvent,
  readClientFrame,
  unhandledEvent,
} from "../realtime/client_events.ts";
import { type Checkpoint, CheckpointSchema, INTERNAL, restoreFrames } from "../realtime/internal_protocol.ts";
import { errorEvent, newEventId, newId } from "../realtime/protocol.ts";
import { utf8Bytes } from "../response/input_budget.ts";
import type { z } from "zod";
import type { Backend, BackendPool } from "./backend_pool.ts";
import {
  type Attached,
  isFailure,
  openBackendSession,
  type OpenFailure,
  restoreInto,
} from "./backend_session.ts";
import type { EdgeConfig } from "./config.ts";
import { type Directory, tokenHash, type Versioned } from "./directory.ts";
import { edgeSessionObject, frameType, type ServerEvent } from "./frames.ts";
import type { EdgeMetrics } from "./metrics.ts";
import type { UpstreamSocket } from "./upstream_socket.ts";

/** The client event the edge sends when a session has moved to another backend. */
export const MIGRATED = "sinkstream.session.migrated";
/** How long a move claim holds before another edge may take it over, ms. */
const MOVE_LEASE_MS = 150_000;
/** After a dropped upstream: how often, and how long apart, "session in use" is retried (the backend has
 * not noticed the drop yet). */
const IN_USE_RETRIES = 5;
const IN_USE_RETRY_MS = 200;
/** How often a paused relay looks whether its client has read enough, ms. */
const DRAIN_POLL_MS = 5;
const OPEN = 1;
/** Client events whose effect a checkpoint holds, so a restore must replay them until one covers them. */
const STATE_EVENTS = new Set(["session.update", "conversation.item.create", "conversation.item.delete"]);

export interface EdgeContext {
  config: EdgeConfig;
  pool: BackendPool;
  directory: Directory;
  metrics: EdgeMetrics;
  /** This edge instance (move claims name it). */
  edgeId: string;
  /** Sessions with a client attached at this edge, by the edge's session id. */
  live: Map<string, EdgeSession>;
  /** Schemas of the client events, by type (session.update with representable bounds only). */
  schemas: ReadonlyMap<string, z.ZodType>;
  log(line: string): void;
}

interface Kept {
  seq: number;
  frame: string;
  type: string;
  bytes: number;
}

type Reason = "backend_lost" | "draining" | "resume";

function randomToken(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

export class EdgeSession {
  id: string;
  resumeToken: string;
  #at: Versioned | null = null;
  #backend: Backend | null = null;
  #up: UpstreamSocket | null = null;
  #relaying = false;
  #closed = false;
  #moving = false;
  /** The client got its session.created. */
  #greeted = false;
  /** Client events sent up so far (the backend session's own count, in the same numbering). */
  #seq = 0;
  #kept: Kept[] = [];
  #keptBytes = 0;
  #held: { frame: string; type: string }[] = [];
  #heldBytes = 0;
  #checkpoint: Checkpoint | null = null;
  #saving: Promise<void> = Promise.resolve();
  /** The response the client asked for and has not seen end: its event id until response.created, then its id. */
  #requested: { eventId: string | null } | null = null;
  #responseId: string | null = null;
  #planned: Reason | null = null;
  /** The backend and backend session relayed to (or last relayed to). */
  #where = "";

  private constructor(readonly ctx: EdgeContext, readonly client: WebSocket, id: string, token: string) {
    this.id = id;
    this.resumeToken = token;
  }

  /** A client socket just opened: a new session, or a resume of `resume`. Never throws. */
  static accept(ctx: EdgeContext, client: WebSocket, resume: { id: string; token: string } | null): void {
    if (ctx.live.size >= ctx.config.maxSessions) {
      return reject(
        client,
        "server_busy",
        `this edge is at its limit of ${ctx.config.maxSessions} sessions`,
        1013,
      );
    }
    const s = new EdgeSession(ctx, client, resume?.id ?? newId("sess"), resume?.token ?? randomToken());
    if (resume && ctx.live.has(resume.id)) {
      return reject(client, "session_in_use", "the session is attached to another connection", 4409);
    }
    ctx.live.set(s.id, s);
    ctx.metrics.openSessions.set(ctx.live.size);
    client.addEventListener("message", (ev) => {
      try {
        s.#onClientFrame(ev.data);
      } catch (e) {
        s.#sendError("internal_error", `internal error: ${(e as Error).message}`);
      }
    });
    client.addEventListener("close", () => s.#onClientClose());
    const opening = resume ? s.#resume() : s.#place();
    opening.catch((e) => s.#failed(e));
  }

  // ---- client -> backend -------------------------------------------------------------------------

  #onClientFrame(data: unknown): void {
    if (this.#closed) return;
    const ev = readClientFrame(data, this.ctx.config.maxFrameBytes);
    if (ev.refused) return this.#sendError(ev.code, ev.message, ev.eventId, ev.param);
    const schema = CLIENT_EVENT_TYPES.has(ev.type) ? this.ctx.schemas.get(ev.type) : undefined;
    const checked = schema ? parseEvent(schema, ev.obj, ev.eventId) : unhandledEvent(ev.type, ev.eventId);
    if (isRefusal(checked)) {
      return this.#sendError(checked.code, checked.message, checked.eventId, checked.param);
    }
    const frame = data as string;
    const bytes = utf8Bytes(frame);
    if (this.#keptBytes + this.#heldBytes + bytes > this.ctx.config.maxReplayBytes) {
      return this.#sendError(
        "input_too_large",
        `this session holds ${this.ctx.config.maxReplayBytes} bytes of events not yet covered by a checkpoint ` +
          "(see --max-replay-bytes); wait for the running response to finish",
        ev.eventId,
      );
    }
    if (ev.type === "response.create") this.#requested = { eventId: ev.eventId };
    if (this.#relaying) this.#forward(frame, ev.type);
    else {
      this.#held.push({ frame, type: ev.type });
      this.#heldBytes += bytes;
    }
  }

  /** Send one client event up, numbered; keep it if a restore would need it. */
  #forward(frame: string, type: string): void {
    this.#seq++;
    if (STATE_EVENTS.has(type)) {
      const bytes = utf8Bytes(frame);
      this.#kept.push({ seq: this.#seq, frame, type, bytes });
      this.#keptBytes += bytes;
    }
    this.#up!.send(frame);
  }

  #flushHeld(): void {
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const h of held) this.#forward(h.frame, h.type);
  }

  #onClientClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#relaying = false;
    if (this.ctx.live.get(this.id) === this) this.ctx.live.delete(this.id);
    this.ctx.metrics.openSessions.set(this.ctx.live.size);
    this.#detach();
  }

  /** Let go of the upstream (the backend keeps its session for its --session-ttl: a resume finds it). */
  #detach(): void {
    const up = this.#up;
    this.#up = null;
    if (up) up.close(1000, "client left");
    if (this.#backend) this.ctx.pool.count(this.#backend, -1);
    this.#backend = null;
  }

  // ---- backend -> client -------------------------------------------------------------------------

  #send(frame: string): void {
    if (this.client.readyState !== OPEN) return;
    try {
      this.client.send(frame);
    } catch { /* gone: the close handler cleans up */ }
  }

  #sendEvent(ev: Record<string, unknown>): void {
    this.#send(JSON.stringify({ event_id: newEventId(), ...ev }));
  }

  #sendError(
    code: ErrorCode,
    message: string,
    eventId: string | null = null,
    param: string | null = null,
  ): void {
    this.#sendEvent(errorEvent(code, message, eventId, param));
  }

  /** The client's session object, from a backend's. */
  #sessionObject(session: ServerEvent): ServerEvent {
    return edgeSessionObject(session, this.id, this.resumeToken);
  }

  async #pump(up: UpstreamSocket): Promise<void> {
    const limit = this.ctx.config.backpressureBytes;
    const relay = this.ctx.metrics.relayLatency;
    for (;;) {
      while (this.client.readyState === OPEN && this.client.bufferedAmount > limit && this.#up === up) {
        await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      }
      const frame = await up.next();
      if (frame === null) break;
      if (this.#up !== up) continue; // an upstream being replaced: nothing of it goes to the client
      const t0 = performance.now();
      this.#fromBackend(frame);
      relay.observe((performance.now() - t0) / 1000);
    }
    // A move under way (a draining backend closing its end) replaces this upstream anyway.
    if (this.#up === up && !this.#closed && !this.#moving) await this.#lost(up);
  }

  #fromBackend(frame: string): void {
    const type = frameType(frame);
    switch (type) {
      case "response.output_text.delta":
        return this.#send(frame); // the hot path
      case INTERNAL.checkpoint:
        return this.#onCheckpoint(JSON.parse(frame).checkpoint);
      case INTERNAL.draining:
        this.ctx.pool.markDraining(this.#backend!);
        return this.#plan("draining");
      case "session.created":
      case "session.updated": {
        const ev = JSON.parse(frame);
        return this.#sendEvent({ ...ev, session: this.#sessionObject(ev.session) });
      }
      case "response.created":
        this.#responseId = JSON.parse(frame).response?.id ?? null;
        this.#requested = null;
        return this.#send(frame);
      case "response.done":
        this.#responseId = null;
        this.#requested = null;
        this.#send(frame);
        return this.#runPlanned();
      case "error": {
        const ev = JSON.parse(frame);
        if (this.#requested !== null && ev.error?.event_id === this.#requested.eventId) {
          this.#requested = null;
          this.#send(frame);
          return this.#runPlanned();
        }
        return this.#send(frame);
      }
    }
    if (!type.startsWith("sinkstream.")) this.#send(frame); // internal events never reach a client
  }

  #onCheckpoint(raw: unknown): void {
    const r = CheckpointSchema.safeParse(raw);
    if (!r.success) return;
    const cp = r.data;
    this.#checkpoint = cp;
    let dropped = 0;
    while (dropped < this.#kept.length && this.#kept[dropped].seq <= cp.seq) {
      this.#keptBytes -= this.#kept[dropped++].bytes;
    }
    if (dropped > 0) this.#kept.splice(0, dropped);
    this.#saving = this.#saving.then(() => this.#save(cp)).catch((e) => {
      console.error(`sinkstream-edge: checkpoint of ${this.id} not stored:`, (e as Error).message);
    });
  }

  async #save(cp: Checkpoint): Promise<void> {
    for (let attempt = 0; attempt < 2 && this.#at !== null; attempt++) {
      const next = await this.ctx.directory.saveCheckpoint(this.id, this.#at, cp);
      if (next !== null) {
        this.#at = next;
        return;
      }
      // Changed meanwhile: store it again only if the session still lives where this edge relays it.
      const now = await this.ctx.directory.get(this.id);
      if (now === null || now.entry.backendUrl !== this.#at.entry.backendUrl || now.entry.moving !== null) {
        return;
      }
      this.#at = now;
    }
  }

  // ---- opening ------------------------------------------------------------------------------------

  /** A new session: the first backend (by placement) that takes it. */
  async #place(): Promise<void> {
    const tried = new Set<Backend>();
    for (;;) {
      const b = this.ctx.pool.choose(tried);
      if (b === null) {
        return this.#end("backend_unavailable", "no backend can take a session now; retry later", 1013);
      }
      tried.add(b);
      this.ctx.pool.count(b, 1); // counted from the choice on: concurrent placements see it
      const a = await openBackendSession(this.ctx.pool, b, null);
      if (this.#closed || isFailure(a)) {
        this.ctx.pool.count(b, -1);
        if (this.#closed) return void (isFailure(a) || a.socket.close());
        continue;
      }
      const entry = {
        tokenHash: await tokenHash(this.resumeToken),
        backendUrl: b.base.href,
        backendSessionId: String(a.session.id),
        backendResumeToken: String(a.session.sinkstream?.resume_token ?? ""),
        epoch: 0,
        moving: null,
        checkpoint: null,
      };
      this.#at = await this.ctx.directory.create(this.id, entry);
      if (this.#at === null) {
        this.ctx.pool.count(b, -1);
        a.socket.close();
        return this.#end("internal_error", "the session directory refused a new session", 1011);
      }
      this.ctx.metrics.placements.inc(b.name);
      this.#adopt(a, a.seq);
      this.ctx.log(`placed ${this.id} on ${b.name} (${b.base.origin}); ${this.#loads()}`);
      this.#greet(a.session);
      return this.#startRelay();
    }
  }

  /** A reconnect with the edge's id and token: the same backend session when it lives, else a restore. */
  async #resume(): Promise<void> {
    const at = await this.ctx.directory.get(this.id);
    if (this.#closed) return;
    if (at === null || !constantTimeIn(await tokenHash(this.resumeToken), [at.entry.tokenHash])) {
      return this.#end("session_not_found", "no session to resume with this id and token", 4404);
    }
    this.#at = at;
    await this.#follow(at, "resume");
  }

  /**
   * Attach to the backend session the directory names; if it is gone, move the session. `reason` says why
   * (a reconnect, or a move another edge made). Ends the client's session when it cannot be had.
   */
  async #follow(at: Versioned, reason: Reason): Promise<void> {
    this.#at = at;
    const b = this.ctx.pool.byUrl(at.entry.backendUrl);
    // After a drop the backend may not have seen its end of the socket close yet: "in use" for a moment.
    for (let attempt = 0; b !== undefined; attempt++) {
      this.ctx.pool.count(b, 1);
      const a = await openBackendSession(this.ctx.pool, b, {
        id: at.entry.backendSessionId,
        token: at.entry.backendResumeToken,
      });
      if (this.#closed || isFailure(a)) this.ctx.pool.count(b, -1);
      if (this.#closed) return void (isFailure(a) || a.socket.close());
      if (!isFailure(a)) {
        const before = this.#where;
        this.#switchTo(a, a.seq);
        if (reason === "resume") this.ctx.metrics.reattached.inc();
        if (!this.#greeted) this.#greet(a.session);
        else if (this.#where !== before) {
          this.#sendEvent({ type: MIGRATED, reason, session: this.#sessionObject(a.session) });
        }
        this.#moving = false;
        return this.#startRelay();
      }
      if (a.kind !== "in_use") break;
      if (reason !== "backend_lost" || attempt >= IN_USE_RETRIES) {
        return this.#end("session_in_use", "the session is attached to another connection", 4409);
      }
      await new Promise((r) => setTimeout(r, IN_USE_RETRY_MS));
    }
    await this.#restoreElsewhere(at.entry.backendUrl, reason);
  }

  /** Relay to `a` (already counted on its backend) from now on; `seq`: the events its session has handled. */
  #adopt(a: Attached, seq: number): void {
    this.#backend = a.backend;
    this.#up = a.socket;
    this.#where = `${a.backend.base.href} ${a.session.id}`;
    if (seq < this.#seq) this.#renumberLost(seq);
    this.#seq = seq;
  }

  /**
   * The backend session handled fewer events than were sent (they were lost with the connection): the
   * kept events after what it has are sent again (events that are not kept are lost: a response.create
   * was answered with backend_lost already).
   */
  #renumberLost(has: number): void {
    const lost = this.#kept.filter((k) => k.seq > has);
    this.#kept = this.#kept.filter((k) => k.seq <= has);
    this.#keptBytes = this.#kept.reduce((n, k) => n + k.bytes, 0);
    this.#held = [...lost.map((k) => ({ frame: k.frame, type: k.type })), ...this.#held];
    this.#heldBytes += lost.reduce((n, k) => n + k.bytes, 0);
  }

  #greet(session: ServerEvent): void {
    this.#greeted = true;
    this.#sendEvent({ type: "session.created", session: this.#sessionObject(session) });
  }

  #startRelay(): void {
    this.#relaying = true;
    this.#flushHeld();
    this.#pump(this.#up!).catch((e) => this.#failed(e));
  }

  /** A bug, not a client's or backend's doing: end the session with internal_error rather than hang. */
  #failed(e: unknown): void {
    console.error(`sinkstream-edge: session ${this.id} failed:`, e);
    this.#end("internal_error", `internal error: ${(e as Error).message}`, 1011);
  }

  #loads(): string {
    return this.ctx.pool.backends.map((b) => `${b.name}=${b.mine}${b.takesSessions() ? "" : "(out)"}`).join(
      " ",
    );
  }

  // ---- moves --------------------------------------------------------------------------------------

  /** The upstream ended without this edge closing it. */
  async #lost(up: UpstreamSocket): Promise<void> {
    this.#up = null;
    this.#relaying = false;
    const b = this.#backend!;
    this.ctx.pool.count(b, -1);
    this.#backend = null;
    this.#endResponse();
    if (up.closeCode === 1001) {
      this.ctx.pool.markDraining(b);
      await this.#restoreElsewhere(b.base.href, "draining");
      return;
    }
    // A dropped connection: the backend may live (resume the same session) or be gone (restore).
    this.#moving = true;
    await this.#follow(this.#at!, "backend_lost");
  }

  /** A response was running (or asked for) on the lost backend: it ends for the client now. */
  #endResponse(): void {
    const message = "the backend serving this session was lost; the session continues on another backend";
    if (this.#responseId !== null) {
      this.#sendEvent({
        type: "response.done",
        response: {
          id: this.#responseId,
          object: "realtime.response",
          status: "failed",
          status_details: { type: "failed", error: apiError("backend_lost", message) },
          output: [],
          usage: null,
        },
      });
    } else if (this.#requested !== null) {
      this.#sendError("backend_lost", `${message}; send response.create again`, this.#requested.eventId);
    }
    this.#responseId = null;
    this.#requested = null;
  }

  /** Move the session off a draining backend once no response runs there. */
  #plan(reason: Reason): void {
    this.#planned = reason;
    if (this.#responseId === null && this.#requested === null) this.#runPlanned();
  }

  #runPlanned(): void {
    const reason = this.#planned;
    if (reason === null || this.#moving || this.#responseId !== null || this.#requested !== null) return;
    this.#planned = null;
    this.#relaying = false; // client events wait until the session has moved
    this.#restoreElsewhere(this.#backend!.base.href, reason).catch((e) => this.#failed(e));
  }

  /**
   * Claim the move in the directory and restore the session on another backend. Once claimed, the move is
   * finished even if the client leaves meanwhile (a later resume then finds the new backend session).
   */
  async #restoreElsewhere(fromUrl: string, reason: Reason): Promise<void> {
    this.#moving = true;
    const dir = this.ctx.directory;
    const claim = await dir.claimMove(this.id, fromUrl, this.ctx.edgeId, MOVE_LEASE_MS);
    if (!claim.claimed) {
      if (this.#closed) return;
      // Another edge moved it, or is moving it: follow it to where it lives then.
      const now = claim.at === null ? null : await dir.settled(this.id, this.ctx.edgeId);
      if (now === null) return this.#end("session_not_found", "the session expired", 4404);
      if (now.entry.backendUrl === fromUrl) return await this.#restoreElsewhere(fromUrl, reason); // lease ran out
      return await this.#follow(now, reason);
    }
    const cp = await this.#newestCheckpoint(claim.at);
    const tried = new Set<Backend>();
    const from = this.ctx.pool.byUrl(fromUrl);
    if (from) tried.add(from);
    for (;;) {
      const b = this.ctx.pool.choose(tried);
      if (b === null) {
        await dir.update(this.id, claim.at, { ...claim.at.entry, moving: null });
        return this.#end(
          "backend_unavailable",
          "no backend can take this session now; resume it later",
          1013,
        );
      }
      tried.add(b);
      this.ctx.pool.count(b, 1);
      const a = await this.#restoreOn(b, cp);
      if (isFailure(a)) {
        this.ctx.pool.count(b, -1);
        continue;
      }
      const moved = await dir.update(this.id, claim.at, {
        ...claim.at.entry,
        backendUrl: b.base.href,
        backendSessionId: String(a.attached.session.id),
        backendResumeToken: String(a.attached.session.sinkstream?.resume_token ?? ""),
        moving: null,
      });
      if (moved === null) {
        this.ctx.pool.count(b, -1);
        a.attached.socket.close();
        return this.#end(
          "backend_unavailable",
          "the session was moved by another edge meanwhile; reconnect",
          1013,
        );
      }
      this.#at = moved;
      this.ctx.metrics.restores.inc();
      this.ctx.metrics.failovers.inc(reason);
      this.ctx.log(
        `moved ${this.id} from ${from?.name ?? fromUrl} to ${b.name} (${reason}): ` +
          `${cp?.cache_tokens.length ?? 0} cached tokens restored, ${a.replayed} events replayed`,
      );
      if (this.#closed) {
        this.ctx.pool.count(b, -1);
        return a.attached.socket.close(1000, "client left"); // the backend keeps it for a resume
      }
      this.#switchTo(a.attached, a.restored.seq);
      if (!this.#greeted) this.#greet(a.restored.session);
      this.#sendEvent({ type: MIGRATED, reason, session: this.#sessionObject(a.restored.session) });
      this.#moving = false;
      return this.#startRelay();
    }
  }

  /** Relay to `a` instead of the upstream relayed to until now (closed: the old backend frees it later). */
  #switchTo(a: Attached, seq: number): void {
    const old = this.#up;
    if (this.#backend) this.ctx.pool.count(this.#backend, -1);
    this.#backend = null;
    this.#up = null;
    old?.close(1000, "moved");
    this.#adopt(a, seq);
  }

  /** Open a new session on `b` and restore `cp` (or nothing) plus the kept events into it. */
  async #restoreOn(b: Backend, cp: Checkpoint | null) {
    const a = await openBackendSession(this.ctx.pool, b, null);
    if (isFailure(a)) return a;
    const later = this.#kept.filter((k) => cp === null || k.seq > cp.seq).map((k) => k.frame);
    const frames = restoreFrames(cp, later, this.#seq, newEventId());
    const restored = await restoreInto(this.ctx.pool, a, frames);
    if (isFailure(restored)) return restored as OpenFailure;
    return { attached: a, restored, replayed: later.length };
  }

  /** This edge's checkpoint when it is the newest, else the directory's. */
  async #newestCheckpoint(at: Versioned): Promise<Checkpoint | null> {
    const ref = at.entry.checkpoint;
    const mine = this.#checkpoint;
    if (mine !== null && (ref === null || mine.seq >= ref.seq)) return mine;
    if (ref === null) return null;
    const cp = await this.ctx.directory.loadCheckpoint(this.id, ref);
    if (cp !== null) this.#checkpoint = cp;
    return cp;
  }

  /** End the client's session with a last error event and a close. */
  #end(code: ErrorCode, message: string, closeCode: number): void {
    this.#sendError(code, message);
    try {
      this.client.close(closeCode, code);
    } catch { /* gone */ }
    this.#onClientClose();
  }

  /** Edge shutdown: close the client socket (1001: it may resume at another edge) and the upstream. */
  shutdown(): void {
    try {
      this.client.close(1001, "edge shutting down");
    } catch { /* gone */ }
    this.#onClientClose();
  }

  /** For metrics and tests: where the session lives now. */
  get backend(): Backend | null {
    return this.#backend;
  }
}

function reject(client: WebSocket, code: ErrorCode, message: string, closeCode: number): void {
  try {
    client.send(JSON.stringify({ event_id: newEventId(), ...errorEvent(code, message) }));
    client.close(closeCode, code);
  } catch { /* gone */ }
}
