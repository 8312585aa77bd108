/**
 * createApp(): the whole gateway as a Hono app plus a handle to serve it and
 * shut it down. The engine and tokenizer are injected (runtime/types.ts
 * interfaces) — this module never touches FFI; gateway/main.ts wires the
 * native engine in.
 */
import { Hono } from "hono";
import type { Engine, Tokenizer } from "../runtime/types.ts";
import { ChatRenderer } from "./chat/template.ts";
import { GrammarSource } from "./grammar/grammars.ts";
import type { Config } from "./config/config.ts";
import { chatCompletions } from "./http/chat_completions.ts";
import { openaiError } from "./http/errors.ts";
import { Metrics } from "./metrics/metrics.ts";
import { apiKeyAuth, backendKeyMatches } from "./middleware/auth.ts";
import { SessionManager } from "./realtime/manager.ts";
import { sessionUpdateSchema } from "./realtime/protocol.ts";
import { Admission } from "./response/admission.ts";
import { InputBudget } from "./response/input_budget.ts";
import { createWebRoutes } from "./web/routes.ts";
import { completionBodyLimit, metricsRoute, v1Router, withOpenaiErrors } from "./app_routes.ts";
import type { SessionContext } from "./realtime/session.ts";
import { Scheduler } from "./scheduler/scheduler.ts";
import { createResponse, deleteResponse, getResponse, type ResponsesContext } from "./responses/handler.ts";
import { ResponseStore } from "./responses/store.ts";
import type { Server } from "./server/serve.ts";
import { type ListenOptions, serveWithOurServer } from "./serve_options.ts";

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

export type ServeOptions = ListenOptions;

export interface Gateway {
  app: Hono;
  scheduler: Scheduler;
  sessions: SessionManager;
  metrics: Metrics;
  ctx: SessionContext;
  /** Stored Responses API responses and their live chains. */
  responses: ResponseStore;
  /** Start a real server (port 0 = any free port); throws Deno's listen error (e.g. AddrInUse). */
  serve(opts?: ServeOptions): Server;
  /**
   * Drain: refuse new sessions and completions (readyz 503), tell edges to move their sessions, and wait
   * until no response runs or `timeoutMs` has passed. Then call shutdown().
   */
  drain(timeoutMs: number): Promise<void>;
  /** Graceful shutdown: refuse new work, cancel in-flight responses with final events, free every sequence. */
  shutdown(): Promise<void>;
}

/** How often a drain looks whether responses are still running, ms. */
const DRAIN_POLL_MS = 50;

export function createApp(opts: CreateAppOptions): Gateway {
  const { engine, tokenizer, config } = opts;
  const metrics = opts.metrics ?? new Metrics();
  const scheduler = new Scheduler(engine, {
    maxBatchTokens: config.maxBatchTokens,
    prefillChunk: config.prefillChunk,
    prefillStepMs: config.prefillStepMs,
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
    grammars: new GrammarSource(tokenizer, engine.info.vocabSize),
    tokenizer,
    metrics,
    modelName,
  };
  const sessions = new SessionManager(ctx);
  const responses = new ResponseStore(scheduler, {
    ttlMs: config.responsesTtl * 1000,
    maxRecords: config.responsesMax,
    maxBytes: config.responsesMaxMb * 1024 * 1024,
    maxLive: config.responsesLive,
  });
  const rctx: ResponsesContext = { ...ctx, responses };
  const created = Math.floor(Date.now() / 1000);
  let shuttingDown: Promise<void> | null = null;
  const servers: Server[] = [];

  const app = new Hono();
  withOpenaiErrors(app);

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get(
    "/readyz",
    (c) =>
      ctx.admission.draining
        ? c.json({ status: "shutting_down" }, 503)
        : c.json({ status: "ready", model: modelName, backend: engine.backend }),
  );
  // An edge in front of this backend authenticates with the shared --backend-key (docs/edge.md).
  const auth = apiKeyAuth({ keys: config.apiKeys, allow: (h) => backendKeyMatches(h, config.backendKey) });
  metricsRoute(app, config, auth, () => metrics.render());

  const v1 = v1Router(config, auth);
  v1.get("/realtime", (c) => sessions.handle(c));
  v1.post(
    "/chat/completions",
    completionBodyLimit(config),
    (c) => chatCompletions(c, ctx),
  );
  v1.post("/responses", completionBodyLimit(config), (c) => createResponse(c, rctx));
  v1.get("/responses/:id", (c) => getResponse(c, rctx));
  v1.delete("/responses/:id", (c) => deleteResponse(c, rctx));
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
    responses,
    serve(so: ServeOptions = {}) {
      const server = serveWithOurServer(app.fetch, config, so);
      servers.push(server);
      return server;
    },
    async drain(timeoutMs) {
      sessions.drain();
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && (sessions.activeResponses > 0 || ctx.admission.completions > 0)) {
        await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      }
    },
    shutdown() {
      shuttingDown ??= (async () => {
        await sessions.shutdown();
        responses.close();
        await scheduler.close("shutdown");
        ctx.renderer.close(); // its tokenizer worker, if a large turn started one
        await ctx.grammars.close(); // the schema probe's worker, if a format was compiled
        // HTTP streams end once their jobs are cancelled; then the servers close.
        await Promise.all(servers.map((s) => s.shutdown().catch(() => {})));
      })();
      return shuttingDown;
    },
  };
}
