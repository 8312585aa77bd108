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
}

function constantTimeIn(candidate: string, keys: readonly string[]): boolean {
  let ok = false;
  for (const k of keys) {
    let d = candidate.length ^ k.length;
    for (let i = 0; i < k.length; i++) d |= (candidate.charCodeAt(i) | 0) ^ k.charCodeAt(i);
    if (d === 0) ok = true;
  }
  return ok;
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
    if (keys.length === 0) return await next();
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
