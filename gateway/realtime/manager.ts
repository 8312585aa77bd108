/**
 * Session registry and the `GET /v1/realtime` WebSocket endpoint.
 *
 * Limits: at most `maxSessions` sessions (attached or waiting for a resume);
 * one more gets an `error` (server_busy) and a 1013 close, never a hang.
 * Resume: `?session_id=…&resume_token=…` reattaches to a detached session.
 */
import type { Context } from "hono";
import type { SessionContext, SessionSocket } from "./session.ts";
import { RealtimeSession } from "./session.ts";
import { newId } from "./protocol.ts";
import { upgradeWebSocket } from "../server/upgrade.ts";

function safeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

export class SessionManager {
  readonly sessions = new Map<string, RealtimeSession>();
  /** Slots held by HTTP completions (they count against maxSessions too). */
  httpActive = 0;
  draining = false;

  constructor(readonly ctx: SessionContext) {}

  get count(): number {
    return this.sessions.size + this.httpActive;
  }

  hasRoom(): boolean {
    return this.count < this.ctx.config.maxSessions;
  }

  #updateGauge(): void {
    this.ctx.metrics.sessions.set(this.sessions.size);
  }

  remove(s: RealtimeSession): void {
    s.dispose();
    if (this.sessions.get(s.id) === s) this.sessions.delete(s.id);
    this.#updateGauge();
  }

  /** Hono handler for the WebSocket upgrade. */
  handle(c: Context): Response {
    const req = c.req.raw;
    if ((req.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
      return c.json({
        error: {
          message: "this endpoint speaks WebSocket; send an Upgrade: websocket request",
          type: "invalid_request_error",
          param: null,
          code: "upgrade_required",
        },
      }, 426);
    }
    // Our server's hook (gateway/server/upgrade.ts): selects `realtime` when offered, else the key protocol.
    const { socket, response } = upgradeWebSocket(c, {
      protocols: ["realtime", "openai-insecure-api-key.*"],
    });
    const url = new URL(req.url);
    const resumeId = url.searchParams.get("session_id");
    const resumeToken = url.searchParams.get("resume_token") ?? "";
    socket.addEventListener("open", () => this.#onOpen(socket, resumeId, resumeToken));
    return response;
  }

  #reject(socket: WebSocket, code: string, message: string, closeCode: number): void {
    try {
      socket.send(JSON.stringify({
        type: "error",
        event_id: newId("event"),
        error: {
          type: code === "server_busy" ? "server_error" : "invalid_request_error",
          code,
          message,
          param: null,
          event_id: null,
        },
      }));
      socket.close(closeCode, code);
    } catch { /* already gone */ }
  }

  #onOpen(socket: WebSocket, resumeId: string | null, resumeToken: string): void {
    if (this.draining) {
      return this.#reject(socket, "server_shutting_down", "the server is shutting down", 1001);
    }
    let session: RealtimeSession | undefined;
    if (resumeId !== null) {
      session = this.sessions.get(resumeId);
      if (!session || !safeEqual(session.resumeToken, resumeToken)) {
        return this.#reject(socket, "session_not_found", "no session to resume with this id and token", 4404);
      }
      if (session.socket !== null) {
        return this.#reject(socket, "session_in_use", "the session is attached to another connection", 4409);
      }
    } else {
      if (!this.hasRoom()) {
        this.ctx.metrics.rejected.inc();
        return this.#reject(
          socket,
          "server_busy",
          `the server is at its limit of ${this.ctx.config.maxSessions} sessions; try again later`,
          1013,
        );
      }
      session = new RealtimeSession(this.ctx);
      this.sessions.set(session.id, session);
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
      s.detach(this.draining ? 0 : this.ctx.config.sessionTtl * 1000, () => this.remove(s));
    });
  }

  /** Shutdown: refuse new sessions, cancel running responses (final events), close sockets, free all. */
  async shutdown(): Promise<void> {
    this.draining = true;
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
