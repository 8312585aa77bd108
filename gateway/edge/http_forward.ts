/**
 * The HTTP endpoints of the edge that the backends answer:
 *  - `POST /v1/chat/completions` goes to a backend chosen like a new session; a backend that cannot be
 *    reached, or answers 429 (busy) or 503 (shutting down) before any byte of its answer, is left for
 *    the next one. From the first byte on the answer is the client's, streamed through as it comes
 *    (SSE included), read from the backend only while the client's connection has less than
 *    `--backpressure-bytes` queued; a client that goes away aborts the backend request.
 *  - `GET /v1/models` lists the models of the backends that take sessions (read at most once per
 *    `--health-interval`), `GET /v1/models/:id` one of them.
 */
import type { Context } from "hono";
import { openaiError } from "../http/errors.ts";
import type { ServerEnv } from "../server/upgrade.ts";
import type { Backend, BackendPool } from "./backend_pool.ts";

/** Response fields the edge does not pass on (the server writes its own framing). */
const DROPPED_FIELDS = new Set(["content-length", "transfer-encoding", "connection", "keep-alive", "date"]);
/** How often a paused body looks whether the client has read enough, ms. */
const PACE_POLL_MS = 5;

interface ModelObject {
  id: string;
  [k: string]: unknown;
}

/** `body`, pulled only while `buffered()` is at most `limit` (backpressure into the backend's TCP stream). */
function paced(
  body: ReadableStream<Uint8Array>,
  buffered: () => number,
  limit: number,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      while (buffered() > limit) await new Promise((r) => setTimeout(r, PACE_POLL_MS));
      const r = await reader.read();
      if (r.done) ctrl.close();
      else ctrl.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

export class HttpForwarder {
  #models: { at: number; list: ModelObject[] } | null = null;

  constructor(readonly pool: BackendPool, readonly backpressureBytes: number, readonly cacheMs: number) {}

  async completion(c: Context): Promise<Response> {
    const body = new Uint8Array(await c.req.arrayBuffer());
    const env = c.env as Partial<ServerEnv> | undefined;
    const buffered = () => env?.bufferedAmount ?? 0;
    const tried = new Set<Backend>();
    const clientGone = c.req.raw.signal;
    for (;;) {
      const b = this.pool.choose(tried);
      if (b === null) {
        return openaiError(c, 503, "no backend can take a request now; retry later", "backend_unavailable");
      }
      tried.add(b);
      let res: Response;
      try {
        res = await this.pool.fetch(b, "/v1/chat/completions", {
          method: "POST",
          body,
          headers: { "content-type": c.req.header("content-type") ?? "application/json" },
          signal: clientGone,
        });
      } catch (e) {
        if (clientGone.aborted) throw e;
        this.pool.connectFailed(b);
        continue;
      }
      if (res.status === 429 || res.status === 503) {
        await res.body?.cancel();
        if (res.status === 503) this.pool.markDraining(b);
        continue;
      }
      const headers = new Headers();
      for (const [k, v] of res.headers) if (!DROPPED_FIELDS.has(k)) headers.set(k, v);
      const out = res.body ? paced(res.body, buffered, this.backpressureBytes) : null;
      return new Response(out, { status: res.status, headers });
    }
  }

  /** The models every backend that takes sessions serves (each id once). */
  async models(): Promise<ModelObject[]> {
    if (this.#models && Date.now() - this.#models.at < this.cacheMs) return this.#models.list;
    const lists = await Promise.all(
      this.pool.backends.filter((b) => b.takesSessions()).map(async (b) => {
        try {
          const r = await this.pool.fetch(b, "/v1/models");
          if (!r.ok) {
            await r.body?.cancel();
            return [];
          }
          return ((await r.json()) as { data?: ModelObject[] }).data ?? [];
        } catch {
          return [];
        }
      }),
    );
    const byId = new Map<string, ModelObject>();
    for (const m of lists.flat()) if (typeof m?.id === "string" && !byId.has(m.id)) byId.set(m.id, m);
    const list = [...byId.values()];
    this.#models = { at: Date.now(), list };
    return list;
  }
}
