/**
 * Test client for a backend's edge protocol: the edge's own upstream socket (gateway/edge/upstream_socket.ts)
 * with the backend key header, and an event queue like WsClient's.
 */
import { UpstreamSocket } from "../../../gateway/edge/upstream_socket.ts";
import { BACKEND_KEY_HEADER } from "../../../gateway/realtime/internal_protocol.ts";
import type { Ev } from "../_gateway.ts";

export const BACKEND_KEY = "test-backend-key-0123456789";

export class InternalClient {
  readonly events: Ev[] = [];
  #cursor = 0;
  #waiters: (() => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(readonly socket: UpstreamSocket) {
    this.closed = (async () => {
      for (;;) {
        const m = await socket.next();
        if (m === null) break;
        this.events.push(JSON.parse(m));
        for (const w of this.#waiters.splice(0)) w();
      }
      for (const w of this.#waiters.splice(0)) w();
    })();
  }

  static async open(wsUrl: string, key = BACKEND_KEY, query = ""): Promise<InternalClient> {
    const socket = await UpstreamSocket.connect(new URL(wsUrl + query), {
      headers: { [BACKEND_KEY_HEADER]: key },
      protocols: ["realtime"],
      maxMessageBytes: 64 << 20,
      connectTimeoutMs: 5000,
    });
    return new InternalClient(socket);
  }

  send(ev: unknown): void {
    this.socket.send(typeof ev === "string" ? ev : JSON.stringify(ev));
  }

  /** Next event (after the previous `next`) of this type or matching the predicate. */
  async next(match: string | ((e: Ev) => boolean), timeoutMs = 20_000): Promise<Ev> {
    const pred = typeof match === "string" ? (e: Ev) => e.type === match : match;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = this.#cursor; i < this.events.length; i++) {
        if (pred(this.events[i])) {
          this.#cursor = i + 1;
          return this.events[i];
        }
      }
      if (this.socket.closeCode !== null) {
        throw new Error(`socket closed (${this.socket.closeCode}) before ${match}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${String(match)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async turn(text: string, response: Ev = {}): Promise<Ev> {
    this.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    this.send({ type: "response.create", response });
    return await this.next("response.done");
  }

  async close(): Promise<void> {
    this.socket.close();
    await this.closed;
  }
}
