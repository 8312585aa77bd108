/**
 * createApp(): the whole gateway as a Hono app plus a handle to serve it and
 * shut it down. The engine and tokenizer are injected (runtime/types.ts
 * interfaces) — this module never touches FFI; gateway/main.ts wires the
 * native engine in.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Engine, Tokenizer } from "../runtime/types.ts";
import { ChatRenderer } from "./chat/template.ts";
import type { Config } from "./config/config.ts";
import { chatCompletions } from "./http/chat_completions.ts";
import { apiError } from "./errors.ts";
import { openaiError } from "./http/errors.ts";
import { Metrics } from "./metrics/metrics.ts";
import { apiKeyAuth } from "./middleware/auth.ts";
import { originGuard } from "./middleware/origin.ts";
import { SessionManager } from "./realtime/manager.ts";
import { errorEvent, newEventId, sessionUpdateSchema } from "./realtime/protocol.ts";
import { Admission } from "./response/admission.ts";
import { InputBudget } from "./response/input_budget.ts";
import { createWebRoutes } from "./web/routes.ts";
import type { SessionContext } from "./realtime/session.ts";
import { Scheduler } from "./scheduler/scheduler.ts";
import { listenAndServe, type Server } from "./server/serve.ts";

export interface CreateAppOptions {
  engine: Engine;
  tokenizer: Tokenizer;
  config: Config;
  /** Name in /v1/models and responses (default: config.modelName or "sinkstream"). */
  modelName?: string;
  metrics?: Metrics;
  /** Serve the chat page at / (default true). */
  web?: boolean;
}

export interface ServeOptions {
  hostname?: string;
  port?: number;
  cert?: string;
  key?: string;
  onListen?: (addr: Deno.NetAddr) => void;
}

export interface Gateway {
  app: Hono;
  scheduler: Scheduler;
  sessions: SessionManager;
  metrics: Metrics;
  ctx: SessionContext;
  /** Start a real server (port 0 = any free port); throws Deno's listen error (e.g. AddrInUse). */
  serve(opts?: ServeOptions): Server;
  /** Graceful shutdown: refuse new work, cancel in-flight responses with final events, free every sequence. */
  shutdown(): Promise<void>;
}

export function createApp(opts: CreateAppOptions): Gateway {
  const { engine, tokenizer, config } = opts;
  const metrics = opts.metrics ?? new Metrics();
  const scheduler = new Scheduler(engine, {
    maxBatchTokens: config.maxBatchTokens,
    prefillChunk: config.prefillChunk,
    kvBudgetBytes: config.kvBudgetMb * 1024 * 1024,
    metrics,
  });
  const modelName = opts.modelName ?? config.modelName ?? "sinkstream";
  const ctx: SessionContext = {
    config,
    scheduler,
    admission: new Admission(config.maxSessions, metrics),
    inputBudget: new InputBudget(config.inputBudgetMb * 1024 * 1024, metrics),
    maxPromptTokens: config.maxPromptTokens,
    sessionUpdate: sessionUpdateSchema(engine.limits),
    renderer: new ChatRenderer(tokenizer),
    tokenizer,
    metrics,
    modelName,
  };
  const sessions = new SessionManager(ctx);
  const created = Math.floor(Date.now() / 1000);
  let shuttingDown: Promise<void> | null = null;
  const servers: Server[] = [];

  const app = new Hono();
  app.onError((err, c) => openaiError(c, 500, `internal error: ${err.message}`, "internal_error"));
  app.notFound((c) => openaiError(c, 404, `no route for ${c.req.method} ${c.req.path}`, "not_found"));

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get(
    "/readyz",
    (c) =>
      ctx.admission.draining
        ? c.json({ status: "shutting_down" }, 503)
        : c.json({ status: "ready", model: modelName, backend: engine.backend }),
  );
  // --metrics-auth: the same origin / Host and Bearer checks as /v1; off, Prometheus scrapers need no key.
  if (config.metricsAuth) app.use("/metrics", originGuard(config), apiKeyAuth({ keys: config.apiKeys }));
  app.get(
    "/metrics",
    (c) => c.text(metrics.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
  );

  const v1 = new Hono();
  v1.use("*", originGuard(config));
  v1.use("*", apiKeyAuth({ keys: config.apiKeys }));
  v1.get("/realtime", (c) => sessions.handle(c));
  v1.post(
    "/chat/completions",
    bodyLimit({
      maxSize: config.maxBodyBytes,
      onError: (c) =>
        openaiError(c, 413, `request body is larger than ${config.maxBodyBytes} bytes`, "request_too_large"),
    }),
    (c) => chatCompletions(c, ctx),
  );
  const modelObject = {
    id: modelName,
    object: "model",
    created,
    owned_by: "sinkstream",
    sinkstream: {
      format: engine.info.format,
      weight_dtype: engine.info.weightDtype,
      source_dtype: engine.info.sourceDtype,
      weight_bytes_per_token: engine.info.weightBytesPerToken,
      kv_bytes_per_token: engine.kvBytesPerToken,
      n_params: engine.info.nParams,
    },
  };
  v1.get("/models", (c) => c.json({ object: "list", data: [modelObject] }));
  v1.get(
    "/models/:id",
    (c) =>
      c.req.param("id") === modelName ? c.json(modelObject) : openaiError(
        c,
        404,
        `the model \`${c.req.param("id")}\` does not exist`,
        "model_not_found",
        "model",
      ),
  );
  app.route("/v1", v1);

  if (opts.web !== false) app.route("/", createWebRoutes());

  return {
    app,
    scheduler,
    sessions,
    metrics,
    ctx,
    serve(so: ServeOptions = {}) {
      const server = listenAndServe(app.fetch, {
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
          // The Realtime error event, as the sessions send them.
          errorMessage: (code, message) =>
            JSON.stringify({ event_id: newEventId(), ...errorEvent(code, message) }),
        },
        // What the server answers itself (malformed heads, timeouts, bad upgrades): OpenAI-shaped JSON.
        errorResponse: (status, code, message) =>
          Response.json({ error: apiError(code, message) }, { status }),
        onListen: so.onListen,
      });
      servers.push(server);
      return server;
    },
    shutdown() {
      shuttingDown ??= (async () => {
        await sessions.shutdown();
        await scheduler.close("shutdown");
        ctx.renderer.close(); // its tokenizer worker, if a large turn started one
        // HTTP streams end once their jobs are cancelled; then the servers close.
        await Promise.all(servers.map((s) => s.shutdown().catch(() => {})));
      })();
      return shuttingDown;
    },
  };
}
