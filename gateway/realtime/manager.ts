/**
 * Session registry and the `GET /v1/realtime` WebSocket endpoint.
 *
 * Limits (gateway/response/admission.ts): a new session takes one of the
 * `--max-sessions` slots, held until it is gone (attached or waiting for a
 * resume); without one it gets an `error` (server_busy) and a 1013 close, never
 * a hang. During shutdown: `server_shutting_down` and a 1001 close.
 * Resume: `?session_id=…&resume_token=…` reattaches to a detached session.
 * Edge sessions: a connection with the right `--backend-key` header is an edge's; its session gets an
 * EdgeLink (edge_link.ts), and only such a connection can resume it. A wrong key (or none configured
 * here) is refused before the upgrade with 401.
 */
import type { Context } from "hono";
import type { ErrorCode } from "../errors.ts";
import { openaiError } from "../http/errors.ts";
import { isRefusal, type Refusal, SHUTTING_DOWN, type Slot } from "../response/admission.ts";
import type { SessionContext, SessionSocket } from "./session.ts";
import { RealtimeSession } from "./session.ts";
import { errorEvent, newEventId } from "./protocol.ts";
import { realtimeUpgrade } from "./realtime_upgrade.ts";
import { EdgeLink } from "./edge_link.ts";
import { BACKEND_KEY_HEADER, backendKeyMatches } from "./internal_protocol.ts";

function safeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

export class SessionManager {
  readonly sessions = new Map<string, RealtimeSession>();
  readonly #slots = new Map<RealtimeSession, Slot>();

  constructor(readonly ctx: SessionContext) {
    ctx.inputBudget.reclaim = (bytes) => this.#expireDetached(bytes);
  }

  /** Input memory is short: end detached sessions, longest detached first, until `bytes` are free. */
  #expireDetached(bytes: number): void {
    const detached = [...this.sessions.values()].filter((s) => s.detachedAt !== null && s.input.held > 0)
      .sort((a, b) => a.detachedAt! - b.detachedAt!);
    let freed = 0;
    for (const s of detached) {
      if (freed >= bytes) break;
      freed += s.input.held;
      this.remove(s);
    }
  }

  #updateGauge(): void {
    this.ctx.metrics.sessions.set(this.sessions.size);
  }

  remove(s: RealtimeSession): void {
    s.dispose();
    if (this.sessions.get(s.id) === s) this.sessions.delete(s.id);
    this.#slots.get(s)?.release();
    this.#slots.delete(s);
    this.#updateGauge();
  }

  /** Hono handler for the WebSocket upgrade. */
  handle(c: Context): Response {
    const req = c.req.raw;
    const backendKey = this.ctx.config.backendKey;
    const edge = backendKeyMatches(req.headers, backendKey);
    if (!edge && req.headers.has(BACKEND_KEY_HEADER)) {
      const why = backendKey === undefined
        ? "this backend was started without --backend-key: it takes no edge sessions"
        : "incorrect backend key";
      return openaiError(c, 401, why, "invalid_api_key");
    }
    const up = realtimeUpgrade(c);
    if (up instanceof Response) return up;
    const { socket, resume } = up;
    socket.addEventListener(
      "open",
      () => this.#onOpen(socket, resume?.id ?? null, resume?.token ?? "", edge),
    );
    return up.response;
  }

  #reject(socket: WebSocket, code: ErrorCode, message: string, closeCode: number): void {
    try {
      socket.send(JSON.stringify({ event_id: newEventId(), ...errorEvent(code, message) }));
      socket.close(closeCode, code);
    } catch { /* already gone */ }
  }

  /** A refused connection: busy closes with 1013 (try again later), shutting down with 1001 (going away). */
  #refuse(socket: WebSocket, r: Refusal): void {
    this.#reject(socket, r.code, r.message, r.code === "server_busy" ? 1013 : 1001);
  }

  #onOpen(socket: WebSocket, resumeId: string | null, resumeToken: string, edge: boolean): void {
    const admission = this.ctx.admission;
    if (admission.draining) return this.#refuse(socket, SHUTTING_DOWN);
    let session: RealtimeSession | undefined;
    if (resumeId !== null) {
      session = this.sessions.get(resumeId);
      if (!session || !safeEqual(session.resumeToken, resumeToken) || (session.link !== null) !== edge) {
        return this.#reject(socket, "session_not_found", "no session to resume with this id and token", 4404);
      }
      if (session.socket !== null) {
        return this.#reject(socket, "session_in_use", "the session is attached to another connection", 4409);
      }
    } else {
      const slot = admission.acquire("session");
      if (isRefusal(slot)) return this.#refuse(socket, slot);
      session = new RealtimeSession(this.ctx);
      if (edge) session.link = new EdgeLink(session);
      this.sessions.set(session.id, session);
      this.#slots.set(session, slot);
      this.#updateGauge();
    }
    const s = session;
    const sock = socket as SessionSocket;
    s.attach(sock);
    socket.addEventListener("message", (ev) => {
      if (s.socket === sock) s.handleFrame(ev.data);
    });
    socket.addEventListener("close", () => {
      if (s.socket !== sock) return;
      s.detach(admission.draining ? 0 : this.ctx.config.sessionTtl * 1000, () => this.remove(s));
    });
  }

  /** Drain (SIGTERM with --drain-timeout): new sessions are refused; edges are told to move theirs. */
  drain(): void {
    this.ctx.admission.drain();
    for (const s of this.sessions.values()) if (s.socket !== null) s.link?.onDraining();
  }

  /** Responses running now (active from response.create to their last event). */
  get activeResponses(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.active !== null) n++;
    return n;
  }

  /** Shutdown: refuse new sessions, cancel running responses (final events), close sockets, free all. */
  async shutdown(): Promise<void> {
    this.ctx.admission.drain();
    const all = [...this.sessions.values()];
    await Promise.all(all.map((s) => s.cancelActive("shutdown")));
    for (const s of all) {
      try {
        s.socket?.close(1001, "server shutting down");
      } catch { /* ignore */ }
      this.remove(s);
    }
  }
}
