/**
 * API-key authentication as the official SDKs send it: `Authorization:
 * Bearer <key>` (HTTP and server-side WebSockets) or the
 * `openai-insecure-api-key.<key>` WebSocket subprotocol (browsers). With no
 * keys configured every request passes.
 */
import type { MiddlewareHandler } from "hono";
import { openaiError } from "../http/errors.ts";

export interface ApiKeyAuthOptions {
  keys: readonly string[];
  /** A request this accepts passes without an API key (an edge carrying the backend key). */
  allow?: (headers: Headers) => boolean;
}

/** The header in which an edge sends `--backend-key` to its backends (docs/edge.md). */
export const BACKEND_KEY_HEADER = "x-sinkstream-backend-key";

/** Whether `candidate` is one of `keys`, in time independent of where they differ. */
export function constantTimeIn(candidate: string, keys: readonly string[]): boolean {
  let ok = false;
  for (const k of keys) {
    let d = candidate.length ^ k.length;
    for (let i = 0; i < k.length; i++) d |= (candidate.charCodeAt(i) | 0) ^ k.charCodeAt(i);
    if (d === 0) ok = true;
  }
  return ok;
}

/** Whether the request carries the backend key `key` (false when there is none on this side). */
export function backendKeyMatches(headers: Headers, key: string | undefined): boolean {
  const sent = headers.get(BACKEND_KEY_HEADER);
  return key !== undefined && sent !== null && constantTimeIn(sent, [key]);
}

/** The key a request carries, from the Authorization header or the WebSocket subprotocol list. */
export function requestApiKey(headers: Headers): string | null {
  const auth = headers.get("authorization");
  if (auth) {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1].trim();
  }
  const protos = headers.get("sec-websocket-protocol");
  if (protos) {
    for (const p of protos.split(",")) {
      const t = p.trim();
      if (t.startsWith("openai-insecure-api-key.")) return t.slice("openai-insecure-api-key.".length);
    }
  }
  return null;
}

export function apiKeyAuth(opts: ApiKeyAuthOptions): MiddlewareHandler {
  const keys = [...opts.keys];
  return async (c, next) => {
    if (keys.length === 0 || opts.allow?.(c.req.raw.headers)) return await next();
    const key = requestApiKey(c.req.raw.headers);
    if (key === null || !constantTimeIn(key, keys)) {
      const message = key === null
        ? "missing API key: send Authorization: Bearer <key> or the openai-insecure-api-key.<key> subprotocol"
        : "incorrect API key provided";
      return openaiError(c, 401, message, "invalid_api_key");
    }
    await next();
  };
}
