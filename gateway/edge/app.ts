/**
 * createEdge(): the edge front as a Hono app (docs/edge.md). It runs no native code and touches no files:
 * sessions are relayed to backends (relay.ts), the session directory is Deno KV (directory.ts), the
 * backends are watched and chosen by backend_pool.ts. Served by our own server when self-hosted
 * (serve()), or by Deno.serve on Deno Deploy (serve_deploy.ts); gateway/edge/main.ts decides.
 */
import { Hono } from "hono";
import type { ZodType } from "zod";
import { openaiError } from "../http/errors.ts";
import { completionBodyLimit, metricsRoute, v1Router, withOpenaiErrors } from "../app_routes.ts";
import { apiKeyAuth } from "../middleware/auth.ts";
import { UNBOUNDED_LIMITS } from "../realtime/internal_protocol.ts";
import {
  ItemCreateSchema,
  ItemDeleteSchema,
  newId,
  ResponseCancelSchema,
  ResponseCreateSchema,
  sessionUpdateSchema,
} from "../realtime/protocol.ts";
import { realtimeUpgrade } from "../realtime/realtime_upgrade.ts";
import { type ListenOptions, serveWithOurServer } from "../serve_options.ts";
import type { Server } from "../server/serve.ts";
import { BackendPool } from "./backend_pool.ts";
import type { EdgeConfig } from "./config.ts";
import { Directory } from "./directory.ts";
import { HttpForwarder } from "./http_forward.ts";
import { EdgeMetrics } from "./metrics.ts";
import { type EdgeContext, EdgeSession } from "./relay.ts";

export interface EdgeOptions {
  config: EdgeConfig;
  kv: Deno.Kv;
  /** One line per placement and per move (default: stdout with a `sinkstream-edge:` prefix). */
  log?: (line: string) => void;
}

export interface Edge {
  app: Hono;
  ctx: EdgeContext;
  pool: BackendPool;
  metrics: EdgeMetrics;
  /** Read the backends once, then keep reading them (call before serving). */
  start(): Promise<void>;
  /** Serve with our server (self-hosted); throws Deno's listen error. */
  serve(opts?: ListenOptions): Server;
  /** Close every client socket (1001: resume at another edge), stop reading the backends, close servers. */
  shutdown(): Promise<void>;
}

export function createEdge(opts: EdgeOptions): Edge {
  const { config, kv } = opts;
  const metrics = new EdgeMetrics();
  const pool = new BackendPool(config.backends, {
    backendKey: config.backendKey,
    intervalMs: config.healthInterval * 1000,
    timeoutMs: config.connectTimeout * 1000,
    metrics,
  });
  const ctx: EdgeContext = {
    config,
    pool,
    directory: new Directory(kv, config.sessionTtl * 1000),
    metrics,
    edgeId: newId("edge"),
    live: new Map(),
    schemas: new Map<string, ZodType>([
      ["session.update", sessionUpdateSchema(UNBOUNDED_LIMITS)],
      ["conversation.item.create", ItemCreateSchema],
      ["response.create", ResponseCreateSchema],
      ["response.cancel", ResponseCancelSchema],
      ["conversation.item.delete", ItemDeleteSchema],
    ]),
    log: opts.log ?? ((line) => console.log(`sinkstream-edge: ${line}`)),
  };
  const http = new HttpForwarder(pool, config.backpressureBytes, config.healthInterval * 1000);
  const servers: Server[] = [];
  let stopping: Promise<void> | null = null;

  const app = new Hono();
  withOpenaiErrors(app);
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const up = pool.backends.filter((b) => b.takesSessions()).length;
    if (stopping !== null) return c.json({ status: "shutting_down" }, 503);
    return up > 0 ? c.json({ status: "ready", backends: up }) : c.json({ status: "no_backend" }, 503);
  });
  const auth = apiKeyAuth({ keys: config.apiKeys });
  metricsRoute(app, config, auth, () => metrics.render());

  const v1 = v1Router(config, auth);
  v1.get("/realtime", (c) => {
    const up = realtimeUpgrade(c);
    if (up instanceof Response) return up;
    up.socket.addEventListener("open", () => {
      if (stopping !== null) {
        up.socket.close(1001, "server_shutting_down");
        return;
      }
      EdgeSession.accept(ctx, up.socket, up.resume);
    });
    return up.response;
  });
  v1.post(
    "/chat/completions",
    completionBodyLimit(config),
    (c) => http.completion(c),
  );
  v1.get("/models", async (c) => c.json({ object: "list", data: await http.models() }));
  v1.get("/models/:id", async (c) => {
    const id = c.req.param("id");
    const m = (await http.models()).find((m) => m.id === id);
    return m
      ? c.json(m)
      : openaiError(c, 404, `the model \`${id}\` does not exist`, "model_not_found", "model");
  });
  app.route("/v1", v1);

  return {
    app,
    ctx,
    pool,
    metrics,
    start: () => pool.start(),
    serve(so: ListenOptions = {}) {
      const server = serveWithOurServer(app.fetch, config, so);
      servers.push(server);
      return server;
    },
    shutdown() {
      stopping ??= (async () => {
        for (const s of [...ctx.live.values()]) s.shutdown();
        await pool.stop();
        await Promise.all(servers.map((s) => s.shutdown().catch(() => {})));
      })();
      return stopping;
    },
  };
}
