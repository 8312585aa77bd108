/**
 * The options the gateway and the edge share, written once: where they listen, who may call them (API
 * keys, browser origins, Host names), what one connection may cost (gateway/server limits), the shared
 * secret between an edge and its backends, and the sampling temperature's API domain. Each program's
 * schema spreads `serverOptionShape` and applies `serverOptionRules`; its option table lists
 * `SERVER_FIELDS`. No file system access here (the edge imports it).
 */
import { z } from "zod";
import type { FieldSpec } from "./options.ts";

export const port = z.number().int().min(0).max(65535);
export const positiveInt = z.number().int().min(1);

/** Sampling temperature, as every front end accepts it (0 = greedy). */
export const TemperatureSchema = z.number().min(0).max(2);

export const serverOptionShape = {
  host: z.string().min(1).default("127.0.0.1"),
  port: port.default(8000),
  apiKeys: z.array(z.string().min(1)).default([]),
  /** Allowed browser origins besides same-origin; "*" allows any. */
  allowedOrigins: z.array(z.string().min(1)).default([]),
  /** Host names allowed without API keys beyond loopback, besides IPs, localhost and --host; "*" = any. */
  allowedHosts: z.array(z.string().min(1)).default([]),
  /** Put /metrics behind the API key. */
  metricsAuth: z.boolean().default(false),
  /** Shared secret of an edge and its backends (docs/edge.md); unset on a backend: no internal events. */
  backendKey: z.string().min(16).optional(),
  maxFrameBytes: positiveInt.default(256 * 1024),
  /** Largest HTTP request body (chat completions); larger ones get 413. */
  maxBodyBytes: positiveInt.default(1 << 20),
  /** A session whose socket buffers more than this many bytes is paused. */
  backpressureBytes: positiveInt.default(1 << 20),
  /** Connection limits of gateway/server (docs/gateway.md "Limits and timeouts"); times in seconds. */
  maxConnections: positiveInt.default(1024),
  maxHeadBytes: z.number().int().min(1024).default(32 * 1024),
  headerTimeout: z.number().gt(0).default(10),
  bodyTimeout: z.number().gt(0).default(30),
  wsIdleTimeout: z.number().gt(0).default(60),
  /** Per WebSocket: sustained read rate in bytes/s (each frame counts at least 1 KiB) and burst; 0 = off. */
  wsReadRate: z.number().int().min(0).default(1 << 20),
  wsReadBurst: positiveInt.default(4 << 20),
  /** Bytes queued for one connection past which it is closed (must exceed backpressureBytes). */
  maxSendBufferBytes: positiveInt.default(8 << 20),
};

export type ServerOptions = z.infer<z.ZodObject<typeof serverOptionShape>>;

/** The rules between shared options, as zod refinements: `schema.check(...serverOptionRules)`. */
export const serverOptionRules = [
  z.refine<ServerOptions>((c) => !c.metricsAuth || c.apiKeys.length > 0, {
    message: "--metrics-auth needs an --api-key",
  }),
  z.refine<ServerOptions>((c) => c.maxSendBufferBytes > c.backpressureBytes, {
    message: "must be larger than --backpressure-bytes",
    path: ["maxSendBufferBytes"],
  }),
];

export const SERVER_FIELDS: FieldSpec[] = [
  { key: "host", flag: "host", env: "HOST", kind: "string", help: "listen address" },
  { key: "port", flag: "port", env: "PORT", kind: "int", help: "listen port (0 = any)" },
  { key: "apiKeys", flag: "api-key", env: "API_KEYS", kind: "list", help: "accepted API key (repeat)" },
  {
    key: "allowedOrigins",
    flag: "allow-origin",
    env: "ALLOWED_ORIGINS",
    kind: "list",
    help: "browser origin allowed (repeat; * = any)",
  },
  {
    key: "allowedHosts",
    flag: "allow-host",
    env: "ALLOWED_HOSTS",
    kind: "list",
    help: "Host name allowed without --api-key beyond loopback (repeat; * = any)",
  },
  {
    key: "metricsAuth",
    flag: "metrics-auth",
    env: "METRICS_AUTH",
    kind: "bool",
    help: "/metrics needs the API key",
  },
  {
    key: "backendKey",
    flag: "backend-key",
    env: "BACKEND_KEY",
    kind: "string",
    help: "shared secret of an edge and its backends (16+ characters; see docs/edge.md)",
  },
  { key: "maxFrameBytes", flag: "max-frame-bytes", env: "MAX_FRAME_BYTES", kind: "int", help: "frame limit" },
  {
    key: "maxBodyBytes",
    flag: "max-body-bytes",
    env: "MAX_BODY_BYTES",
    kind: "int",
    help: "HTTP body limit",
  },
  {
    key: "backpressureBytes",
    flag: "backpressure-bytes",
    env: "BACKPRESSURE_BYTES",
    kind: "int",
    help: "pause threshold",
  },
  {
    key: "maxConnections",
    flag: "max-connections",
    env: "MAX_CONNECTIONS",
    kind: "int",
    help: "open connections",
  },
  {
    key: "maxHeadBytes",
    flag: "max-head-bytes",
    env: "MAX_HEAD_BYTES",
    kind: "int",
    help: "HTTP head limit",
  },
  {
    key: "headerTimeout",
    flag: "header-timeout",
    env: "HEADER_TIMEOUT",
    kind: "number",
    help: "seconds for a request head",
  },
  {
    key: "bodyTimeout",
    flag: "body-timeout",
    env: "BODY_TIMEOUT",
    kind: "number",
    help: "seconds for a request body",
  },
  {
    key: "wsIdleTimeout",
    flag: "ws-idle-timeout",
    env: "WS_IDLE_TIMEOUT",
    kind: "number",
    help: "silent seconds before a ping",
  },
  {
    key: "wsReadRate",
    flag: "ws-read-rate",
    env: "WS_READ_RATE",
    kind: "int",
    help: "bytes/s read from one WebSocket (0 = unlimited)",
  },
  {
    key: "wsReadBurst",
    flag: "ws-read-burst",
    env: "WS_READ_BURST",
    kind: "int",
    help: "bytes a WebSocket may read at once above the rate",
  },
  {
    key: "maxSendBufferBytes",
    flag: "max-send-buffer-bytes",
    env: "MAX_SEND_BUFFER_BYTES",
    kind: "int",
    help: "queued bytes before a close",
  },
];
