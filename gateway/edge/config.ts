/**
 * Edge configuration (`deno task edge`): flags and SINKSTREAM_* environment variables (no config file: on
 * Deno Deploy the environment is the configuration, and the edge reads no files), validated like the
 * gateway's with the options both share (config/server_options.ts). Changing the backend list needs a
 * restart of the edge, nothing else.
 */
import { z } from "zod";
import { type FieldSpec, type LoadOptions, loadOptions, usageText } from "../config/options.ts";
import {
  port,
  positiveInt,
  SERVER_FIELDS,
  serverOptionRules,
  serverOptionShape,
} from "../config/server_options.ts";

/** A backend's base URL: http(s), no path beyond "/". */
const BackendUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === "http:" || u.protocol === "https:") && u.pathname === "/" && !u.search && !u.hash;
  } catch {
    return false;
  }
}, { message: "a backend is an http:// or https:// base URL (scheme, host, port)" });

export const EdgeConfigSchema = z.object({
  ...serverOptionShape,
  port: port.default(8080),
  /** Required at the edge: it is how the backends know it. */
  backendKey: z.string().min(16),
  backends: z.array(BackendUrl).min(1),
  /** Deno KV: a SQLite path, ":memory:" or a denokv URL; unset = Deno.openKv() (managed KV on Deno Deploy). */
  kv: z.string().min(1).optional(),
  /** Realtime sessions this edge relays at once. */
  maxSessions: positiveInt.default(10_000),
  /** Seconds a session's directory entry and checkpoint live after its last turn (resume window). */
  sessionTtl: z.number().gt(0).default(3600),
  /** Client events an edge holds per session since its last checkpoint (for a restore) or while it moves. */
  maxReplayBytes: positiveInt.default(4 << 20),
  /** Seconds for a connection to a backend (TCP + WebSocket upgrade, or an HTTP answer's head). */
  connectTimeout: z.number().gt(0).default(5),
  /** Seconds between two reads of every backend's /readyz and /metrics. */
  healthInterval: z.number().gt(0).default(2),
}).strict().check(...serverOptionRules);

export type EdgeConfig = z.infer<typeof EdgeConfigSchema>;
export type EdgeConfigInput = z.input<typeof EdgeConfigSchema>;

const FIELDS: FieldSpec[] = [
  { key: "backends", flag: "backend", env: "BACKENDS", kind: "list", help: "backend base URL (repeat)" },
  { key: "kv", flag: "kv", env: "KV", kind: "string", help: "Deno KV: SQLite path, :memory: or URL" },
  ...SERVER_FIELDS,
  { key: "maxSessions", flag: "max-sessions", env: "MAX_SESSIONS", kind: "int", help: "relayed sessions" },
  {
    key: "sessionTtl",
    flag: "session-ttl",
    env: "SESSION_TTL",
    kind: "number",
    help: "seconds a session can be resumed after its last turn",
  },
  {
    key: "maxReplayBytes",
    flag: "max-replay-bytes",
    env: "MAX_REPLAY_BYTES",
    kind: "int",
    help: "client event bytes held per session since its checkpoint",
  },
  {
    key: "connectTimeout",
    flag: "connect-timeout",
    env: "CONNECT_TIMEOUT",
    kind: "number",
    help: "seconds to connect to a backend",
  },
  {
    key: "healthInterval",
    flag: "health-interval",
    env: "HEALTH_INTERVAL",
    kind: "number",
    help: "seconds between backend health reads",
  },
];

export function edgeUsage(): string {
  return usageText("deno task edge", EdgeConfigSchema, FIELDS, false);
}

export function loadEdgeConfig(opts: Omit<LoadOptions, "readFile"> = {}) {
  return loadOptions(EdgeConfigSchema, FIELDS, opts);
}
