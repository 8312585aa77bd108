/**
 * The start of `GET /v1/realtime`, for a backend (manager.ts) and an edge (gateway/edge/app.ts) alike: a
 * request that is not a WebSocket upgrade gets 426; an upgrade is accepted through the server's hook
 * (gateway/server/upgrade.ts: `realtime` selected when offered, else the API-key protocol), with the
 * resume parameters of the URL.
 */
import type { Context } from "hono";
import { openaiError } from "../http/errors.ts";
import { upgradeWebSocket } from "../server/upgrade.ts";

export interface RealtimeUpgrade {
  socket: WebSocket;
  response: Response;
  /** `?session_id=…&resume_token=…`: reattach to that session. */
  resume: { id: string; token: string } | null;
}

export function realtimeUpgrade(c: Context): RealtimeUpgrade | Response {
  const req = c.req.raw;
  if ((req.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
    return openaiError(
      c,
      426,
      "this endpoint speaks WebSocket; send an Upgrade: websocket request",
      "upgrade_required",
    );
  }
  const { socket, response } = upgradeWebSocket(c, { protocols: ["realtime", "openai-insecure-api-key.*"] });
  const url = new URL(req.url);
  const id = url.searchParams.get("session_id");
  return {
    socket,
    response,
    resume: id === null ? null : { id, token: url.searchParams.get("resume_token") ?? "" },
  };
}
