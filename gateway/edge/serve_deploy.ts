/**
 * Serving the edge with Deno.serve, the only server Deno Deploy offers (self-hosted, our own server is used:
 * docs/decisions.md). The app sees the same ServerEnv hook as under our server, backed by
 * Deno.upgradeWebSocket with our subprotocol choice. What Deno.serve does not let us enforce, and Deploy's
 * own front takes care of or leaves open, is listed in docs/edge.md: head and body timeouts, the connection
 * cap, the frame size before buffering (Deno buffers a message up to 64 MiB; the relay then refuses one over
 * `--max-frame-bytes` with `frame_too_large` but keeps the socket), the send cap (`bufferedAmount` still
 * drives the relay's backpressure).
 */
import { apiError } from "../errors.ts";
import type { Handler } from "../server/http_connection.ts";
import { HttpError } from "../server/http1.ts";
import { offeredProtocols, selectProtocol, type ServerEnv, type UpgradeOptions } from "../server/upgrade.ts";

export interface DeployServer {
  readonly addr: Deno.NetAddr;
  shutdown(): Promise<void>;
}

/** A socket that never opens (an upgrade that was answered with an error). */
function neverOpens(): WebSocket {
  return new EventTarget() as unknown as WebSocket;
}

function env(info: Deno.ServeHandlerInfo<Deno.NetAddr>, idleTimeout: number): ServerEnv {
  return {
    remoteAddr: info.remoteAddr,
    bufferedAmount: 0, // Deno.serve applies its own backpressure to response bodies
    upgradeWebSocket(req: Request, opts?: UpgradeOptions) {
      try {
        const protocol = selectProtocol(
          offeredProtocols(req.headers.get("sec-websocket-protocol")),
          opts?.protocols ?? [],
        );
        return Deno.upgradeWebSocket(req, { protocol, idleTimeout });
      } catch (e) {
        const status = e instanceof HttpError ? e.status : 400;
        const code = e instanceof HttpError ? e.code : "bad_upgrade";
        const response = Response.json({ error: apiError(code, (e as Error).message) }, { status });
        return { socket: neverOpens(), response };
      }
    },
  };
}

export function serveWithDenoServe(
  handler: Handler,
  opts: { hostname: string; port: number; idleTimeoutS: number; onListen?: (addr: Deno.NetAddr) => void },
): DeployServer {
  const server = Deno.serve(
    { hostname: opts.hostname, port: opts.port, onListen: (addr) => opts.onListen?.(addr as Deno.NetAddr) },
    (req, info) => handler(req, env(info as Deno.ServeHandlerInfo<Deno.NetAddr>, opts.idleTimeoutS)),
  );
  return { addr: server.addr as Deno.NetAddr, shutdown: () => server.shutdown() };
}
