/**
 * listenAndServe(): our HTTP/1.1 + WebSocket server over Deno.listen / Deno.listenTls (ALPN http/1.1),
 * instead of Deno.serve, so that every limit of docs/gateway.md ("Limits and timeouts") is ours to enforce:
 * head size and time, body time, open connections, bytes queued per connection, WebSocket message size and
 * idle time. The handler is a fetch handler (Hono's `app.fetch`); its second argument is a ServerEnv.
 */
import { withDeadline } from "./conn_reader.ts";
import { type ErrorResponse, type Handler, HttpConnection } from "./http_connection.ts";
import { type ServerLimits, SHUTDOWN_GRACE_MS, type WebSocketLimits } from "./limits.ts";
import { writeFinalResponse } from "./response_writer.ts";
import { SendQueue } from "./send_queue.ts";
import type { WsFault } from "./ws_socket.ts";

export interface ServeOptions {
  hostname: string;
  port: number;
  /** PEM certificate chain and key: serve HTTPS / WSS. */
  cert?: string;
  key?: string;
  limits: ServerLimits;
  websocket: WebSocketLimits & {
    /** The last text message of a socket closed for a client fault (default: none). */
    errorMessage?: (fault: WsFault, message: string) => string | null;
  };
  /** Responses the server writes itself (400, 408, 431, 503, ...); default: plain text. */
  errorResponse?: ErrorResponse;
  onListen?: (addr: Deno.NetAddr) => void;
}

export interface Server {
  readonly addr: Deno.NetAddr;
  /** Open connections (HTTP and WebSocket). */
  readonly connections: number;
  /** Resolves once shutdown() has finished. */
  readonly finished: Promise<void>;
  /** Stop accepting, close idle connections, let busy ones finish (WebSockets: close 1001), then resolve. */
  shutdown(): Promise<void>;
}

/** Pause after a failed accept (out of file descriptors, say) before the next, ms. */
const ACCEPT_RETRY_MS = 100;

const plainError: ErrorResponse = (status, _code, message) =>
  new Response(`${message}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8" } });

/** Listen (throws Deno's error synchronously, e.g. Deno.errors.AddrInUse) and serve `handler`. */
export function listenAndServe(handler: Handler, opts: ServeOptions): Server {
  const listener: Deno.Listener = opts.cert && opts.key
    ? Deno.listenTls({
      hostname: opts.hostname,
      port: opts.port,
      cert: opts.cert,
      key: opts.key,
      alpnProtocols: ["http/1.1"],
    })
    : Deno.listen({ hostname: opts.hostname, port: opts.port });
  const addr = listener.addr as Deno.NetAddr;
  const errorResponse = opts.errorResponse ?? plainError;
  const connections = new Map<HttpConnection, Promise<void>>();
  const refusals = new Set<Promise<void>>();
  let draining = false;
  const ctx = {
    handler,
    limits: opts.limits,
    websocket: {
      ...opts.websocket,
      maxSendBufferBytes: opts.limits.maxSendBufferBytes,
      errorMessage: opts.websocket.errorMessage ?? (() => null),
    },
    errorResponse,
    scheme: opts.cert ? "https" as const : "http" as const,
    draining: () => draining,
  };

  /** Over the connection cap: a 503 (plain TCP) and close; nothing is read. */
  const refuse = (conn: Deno.Conn) => {
    if (opts.cert) {
      conn.close();
      return;
    }
    const queue = new SendQueue(conn);
    const res = errorResponse(
      503,
      "too_many_connections",
      "the server is at its connection limit; retry later",
    );
    const done = writeFinalResponse(res, queue).then(() => withDeadline(queue.flushed(), Date.now() + 1000))
      .finally(() => {
        conn.close();
        refusals.delete(done);
      }).then(() => {});
    refusals.add(done);
  };

  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (draining || e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        console.error("sinkstream: accept failed:", (e as Error).message);
        await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS)); // e.g. out of file descriptors
        continue;
      }
      if (connections.size >= opts.limits.maxConnections) {
        refuse(conn);
        continue;
      }
      if (!opts.cert) (conn as Deno.TcpConn).setNoDelay(true); // token frames go out at once
      const c = new HttpConnection(conn, ctx);
      connections.set(c, c.run().finally(() => connections.delete(c)));
    }
  })();

  let finished: Promise<void> | null = null;
  let resolveFinished = () => {};
  const finishedPromise = new Promise<void>((r) => (resolveFinished = r));
  opts.onListen?.(addr);
  return {
    addr,
    get connections() {
      return connections.size;
    },
    finished: finishedPromise,
    shutdown() {
      finished ??= (async () => {
        draining = true;
        try {
          listener.close();
        } catch { /* closed */ }
        await accepting;
        for (const c of connections.keys()) c.drain();
        const all = Promise.all([...connections.values(), ...refusals]);
        if ((await withDeadline(all, Date.now() + SHUTDOWN_GRACE_MS)) === "timeout") {
          for (const c of connections.keys()) {
            try {
              c.conn.close();
            } catch { /* closed meanwhile */ }
          }
          await all;
        }
        resolveFinished();
      })();
      return finished;
    },
  };
}
