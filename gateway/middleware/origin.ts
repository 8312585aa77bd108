/**
 * Browser origin allow-list. Requests without an Origin header (servers,
 * CLIs, SDKs) pass; a browser origin passes when it is the server's own
 * origin (same host:port) or listed in `allowed` ("*" allows any).
 */
import type { MiddlewareHandler } from "hono";
import { openaiError } from "../http/errors.ts";

export interface OriginGuardOptions {
  allowed: readonly string[];
}

export function originGuard(opts: OriginGuardOptions): MiddlewareHandler {
  const any = opts.allowed.includes("*");
  const allowed = new Set(opts.allowed.map((o) => o.replace(/\/+$/, "").toLowerCase()));
  return async (c, next) => {
    const origin = c.req.header("origin");
    if (!origin || any) return await next();
    const o = origin.toLowerCase();
    let sameHost = false;
    try {
      sameHost = new URL(o).host === (c.req.header("host") ?? "").toLowerCase();
    } catch { /* "null" or garbage: not same-origin */ }
    if (sameHost || allowed.has(o)) return await next();
    return openaiError(
      c,
      403,
      `origin ${origin.slice(0, 200)} is not allowed (see --allow-origin)`,
      "origin_not_allowed",
    );
  };
}
