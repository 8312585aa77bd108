/**
 * The pieces of a Hono app that the gateway (app.ts) and the edge (edge/app.ts) share: OpenAI-shaped 404
 * and 500 answers, `/metrics` (behind the /v1 checks with --metrics-auth), the `/v1` router with its
 * origin / Host and API-key checks, and the chat completions body limit.
 */
import type { Hono, MiddlewareHandler } from "hono";
import { Hono as HonoApp } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ServerOptions } from "./config/server_options.ts";
import { openaiError } from "./http/errors.ts";
import { originGuard } from "./middleware/origin.ts";

/** The app's answers to an unknown route and to a handler that threw. */
export function withOpenaiErrors(app: Hono): Hono {
  app.onError((err, c) => openaiError(c, 500, `internal error: ${err.message}`, "internal_error"));
  app.notFound((c) => openaiError(c, 404, `no route for ${c.req.method} ${c.req.path}`, "not_found"));
  return app;
}

/** GET /metrics: Prometheus text; with --metrics-auth behind the same checks as /v1. */
export function metricsRoute(
  app: Hono,
  config: ServerOptions,
  auth: MiddlewareHandler,
  render: () => string,
) {
  if (config.metricsAuth) app.use("/metrics", originGuard(config), auth);
  app.get(
    "/metrics",
    (c) => c.text(render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
  );
}

/** The /v1 router: browser origin and Host checks, then the API key. */
export function v1Router(config: ServerOptions, auth: MiddlewareHandler): Hono {
  const v1 = new HonoApp();
  v1.use("*", originGuard(config));
  v1.use("*", auth);
  return v1;
}

/** The body limit of POST /v1/chat/completions (413 request_too_large before parsing). */
export function completionBodyLimit(config: ServerOptions): MiddlewareHandler {
  return bodyLimit({
    maxSize: config.maxBodyBytes,
    onError: (c) =>
      openaiError(c, 413, `request body is larger than ${config.maxBodyBytes} bytes`, "request_too_large"),
  });
}
