/**
 * What our server (gateway/server/) is told by the gateway's and the edge's options: the connection limits,
 * the WebSocket limits, and the shape of the server's own refusals (OpenAI-shaped JSON over HTTP, a
 * Realtime `error` event before a WebSocket close). One mapping for both programs.
 */
import type { ServerOptions } from "./config/server_options.ts";
import { apiError } from "./errors.ts";
import { errorEvent, newEventId } from "./realtime/protocol.ts";
import type { Handler } from "./server/http_connection.ts";
import { listenAndServe, type ServeOptions, type Server } from "./server/serve.ts";

export interface ListenOptions {
  hostname?: string;
  port?: number;
  cert?: string;
  key?: string;
  onListen?: (addr: Deno.NetAddr) => void;
}

/** Our server's options for a program configured with `config`. */
export function serveOptions(config: ServerOptions, so: ListenOptions = {}): ServeOptions {
  return {
    hostname: so.hostname ?? config.host,
    port: so.port ?? config.port,
    ...(so.cert && so.key ? { cert: so.cert, key: so.key } : {}),
    limits: {
      maxHeadBytes: config.maxHeadBytes,
      headerTimeoutMs: config.headerTimeout * 1000,
      bodyTimeoutMs: config.bodyTimeout * 1000,
      maxConnections: config.maxConnections,
      maxSendBufferBytes: config.maxSendBufferBytes,
    },
    websocket: {
      maxMessageBytes: config.maxFrameBytes,
      idleTimeoutMs: config.wsIdleTimeout * 1000,
      readBytesPerSecond: config.wsReadRate,
      readBurstBytes: config.wsReadBurst,
      // The Realtime error event, as the sessions send them.
      errorMessage: (code, message) =>
        JSON.stringify({ event_id: newEventId(), ...errorEvent(code, message) }),
    },
    // What the server answers itself (malformed heads, timeouts, bad upgrades): OpenAI-shaped JSON.
    errorResponse: (status, code, message) => Response.json({ error: apiError(code, message) }, { status }),
    onListen: so.onListen,
  };
}

/** Listen with our server (throws Deno's listen error, e.g. AddrInUse) and serve `handler`. */
export function serveWithOurServer(handler: Handler, config: ServerOptions, so: ListenOptions = {}): Server {
  return listenAndServe(handler, serveOptions(config, so));
}
