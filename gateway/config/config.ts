/**
 * Gateway configuration: command-line flags, SINKSTREAM_* environment
 * variables and an optional JSON config file, merged (flags > env > file >
 * defaults) and validated with zod. Every problem is reported as one clear
 * line naming the flag / variable / file key.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { KV_DTYPES, WEIGHT_DTYPES } from "../../runtime/types.ts";

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().min(1);

/** Sampling temperature, as every front end accepts it (0 = greedy). */
export const TemperatureSchema = z.number().min(0).max(2);

export const ConfigSchema = z.object({
  model: z.string().min(1).optional(),
  tokenizer: z.string().min(1).optional(),
  backend: z.enum(["cpu", "cuda"]).default("cpu"),
  threads: z.number().int().min(0).default(0),
  /** Convert the weights to this type at load (absent: keep the file's types). */
  weights: z.enum(WEIGHT_DTYPES).optional(),
  /** KV-cache element type of the CPU backend (absent: the engine's default, f16). */
  kvDtype: z.enum(KV_DTYPES).optional(),
  policy: z.enum(["streaming", "window", "dense"]).default("streaming"),
  /** Checked against the engine's rules at start (gateway/main.ts: Engine.checkSequenceOptions). */
  sinks: z.number().int().min(0).default(4),
  /** Cache capacity per sequence in tokens; 0 = the model's training context. */
  window: z.number().int().min(0).default(0),
  host: z.string().min(1).default("127.0.0.1"),
  port: port.default(8000),
  maxSessions: positiveInt.default(64),
  /** KV memory budget over all live sequences, in MiB (worst case: full windows). 0 = unlimited. */
  kvBudgetMb: z.number().min(0).default(0),
  apiKeys: z.array(z.string().min(1)).default([]),
  /** Allowed browser origins besides same-origin; "*" allows any. */
  allowedOrigins: z.array(z.string().min(1)).default([]),
  /** Host names allowed without API keys beyond loopback, besides IPs, localhost and --host; "*" = any. */
  allowedHosts: z.array(z.string().min(1)).default([]),
  /** Put /metrics behind the API key. */
  metricsAuth: z.boolean().default(false),
  /** Seconds a disconnected session keeps its cache for a resume. */
  sessionTtl: z.number().min(0).default(60),
  maxFrameBytes: positiveInt.default(256 * 1024),
  /** Largest HTTP request body (chat completions); larger ones get 413. */
  maxBodyBytes: positiveInt.default(1 << 20),
  /** UTF-8 bytes of items a Realtime session may hold unanswered (input_budget.ts); 0 = no cap. */
  maxPendingBytes: z.number().int().min(0).default(2 << 20),
  /** Tokens one response's rendered turn may have (HTTP and Realtime); 0 = no cap. */
  maxPromptTokens: z.number().int().min(0).default(1 << 20),
  /** MiB of client input not yet consumed (pending items + rendered prompts) over all sessions; 0 = no cap. */
  inputBudgetMb: z.number().min(0).default(512),
  /** A session whose socket buffers more than this many bytes is paused. */
  backpressureBytes: positiveInt.default(1 << 20),
  /** Connection limits of gateway/server (docs/gateway.md "Limits and timeouts"); times in seconds. */
  maxConnections: positiveInt.default(1024),
  maxHeadBytes: z.number().int().min(1024).default(32 * 1024),
  headerTimeout: z.number().gt(0).default(10),
  bodyTimeout: z.number().gt(0).default(30),
  wsIdleTimeout: z.number().gt(0).default(60),
  /** Bytes queued for one connection past which it is closed (must exceed backpressureBytes). */
  maxSendBufferBytes: positiveInt.default(8 << 20),
  maxBatchTokens: positiveInt.default(512),
  /** Largest prefill chunk of one sequence in one step. */
  prefillChunk: positiveInt.default(128),
  /** Default max output tokens of a response. */
  maxOutputTokens: positiveInt.default(256),
  /** Temperature of a response that does not set one, Realtime and HTTP alike (decisions.md). */
  temperature: TemperatureSchema.default(0),
  cacheDir: z.string().min(1).optional(),
  modelName: z.string().min(1).optional(),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
}).strict().refine((c) => !!c.tlsCert === !!c.tlsKey, {
  message: "--tls-cert and --tls-key must be given together",
}).refine((c) => !c.metricsAuth || c.apiKeys.length > 0, { message: "--metrics-auth needs an --api-key" })
  .refine((c) => c.maxSendBufferBytes > c.backpressureBytes, {
    message: "must be larger than --backpressure-bytes",
    path: ["maxSendBufferBytes"],
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

type Kind = "string" | "int" | "number" | "list" | "bool";
interface FieldSpec {
  key: keyof Config;
  flag: string;
  env: string;
  kind: Kind;
  help: string;
}

const FIELDS: FieldSpec[] = [
  {
    key: "model",
    flag: "model",
    env: "MODEL",
    kind: "string",
    help: "model path or hf:REPO[/FILE] (none: stories260K from the Hub)",
  },
  { key: "tokenizer", flag: "tokenizer", env: "TOKENIZER", kind: "string", help: "tokenizer path" },
  { key: "backend", flag: "backend", env: "BACKEND", kind: "string", help: "cpu | cuda" },
  { key: "threads", flag: "threads", env: "THREADS", kind: "int", help: "CPU threads (0 = all)" },
  {
    key: "weights",
    flag: "weights",
    env: "WEIGHTS",
    kind: "string",
    help: `convert the weights at load: ${WEIGHT_DTYPES.join(" | ")} (default: the file's types)`,
  },
  {
    key: "kvDtype",
    flag: "kv-dtype",
    env: "KV_DTYPE",
    kind: "string",
    help: "CPU KV cache: f32 | f16 (default f16)",
  },
  { key: "policy", flag: "policy", env: "POLICY", kind: "string", help: "streaming | window | dense" },
  { key: "sinks", flag: "sinks", env: "SINKS", kind: "int", help: "attention sinks" },
  {
    key: "window",
    flag: "window",
    env: "WINDOW",
    kind: "int",
    help: "cache tokens per session (0 = the model's context)",
  },
  { key: "host", flag: "host", env: "HOST", kind: "string", help: "listen address" },
  { key: "port", flag: "port", env: "PORT", kind: "int", help: "listen port (0 = any)" },
  { key: "maxSessions", flag: "max-sessions", env: "MAX_SESSIONS", kind: "int", help: "live sessions" },
  { key: "kvBudgetMb", flag: "kv-budget-mb", env: "KV_BUDGET_MB", kind: "number", help: "KV MiB (0 = off)" },
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
  { key: "sessionTtl", flag: "session-ttl", env: "SESSION_TTL", kind: "number", help: "resume TTL seconds" },
  { key: "maxFrameBytes", flag: "max-frame-bytes", env: "MAX_FRAME_BYTES", kind: "int", help: "frame limit" },
  {
    key: "maxBodyBytes",
    flag: "max-body-bytes",
    env: "MAX_BODY_BYTES",
    kind: "int",
    help: "HTTP body limit",
  },
  {
    key: "maxPendingBytes",
    flag: "max-pending-bytes",
    env: "MAX_PENDING_BYTES",
    kind: "int",
    help: "unanswered item bytes per session (0 = no cap)",
  },
  {
    key: "maxPromptTokens",
    flag: "max-prompt-tokens",
    env: "MAX_PROMPT_TOKENS",
    kind: "int",
    help: "tokens of one turn (0 = no cap)",
  },
  {
    key: "inputBudgetMb",
    flag: "input-budget-mb",
    env: "INPUT_BUDGET_MB",
    kind: "number",
    help: "MiB of unprocessed input, all sessions (0 = no cap)",
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
    key: "maxSendBufferBytes",
    flag: "max-send-buffer-bytes",
    env: "MAX_SEND_BUFFER_BYTES",
    kind: "int",
    help: "queued bytes before a close",
  },
  {
    key: "maxBatchTokens",
    flag: "max-batch-tokens",
    env: "MAX_BATCH_TOKENS",
    kind: "int",
    help: "step tokens",
  },
  { key: "prefillChunk", flag: "prefill-chunk", env: "PREFILL_CHUNK", kind: "int", help: "prefill chunk" },
  {
    key: "maxOutputTokens",
    flag: "max-output-tokens",
    env: "MAX_OUTPUT_TOKENS",
    kind: "int",
    help: "default response length",
  },
  {
    key: "temperature",
    flag: "temperature",
    env: "TEMPERATURE",
    kind: "number",
    help: "default sampling temperature (0 = greedy)",
  },
  { key: "cacheDir", flag: "cache-dir", env: "CACHE_DIR", kind: "string", help: "model download cache" },
  { key: "modelName", flag: "model-name", env: "MODEL_NAME", kind: "string", help: "name in /v1/models" },
  { key: "tlsCert", flag: "tls-cert", env: "TLS_CERT", kind: "string", help: "TLS certificate (PEM)" },
  { key: "tlsKey", flag: "tls-key", env: "TLS_KEY", kind: "string", help: "TLS private key (PEM)" },
];

export function usage(): string {
  // Defaults come from the schema itself, so the help text cannot drift from them.
  const defaults = ConfigSchema.safeParse({});
  const lines = FIELDS.map((f) => {
    const value = defaults.success ? defaults.data[f.key] : undefined;
    const shown = value === undefined || (Array.isArray(value) && value.length === 0)
      ? ""
      : `; default ${value}`;
    return `  --${f.flag.padEnd(20)} ${f.help}${shown} (env SINKSTREAM_${f.env})`;
  });
  return [
    "usage: deno task start [options]",
    "  --config FILE          JSON config file (env SINKSTREAM_CONFIG); keys as camelCase",
    ...lines,
    "  --help                 this text",
  ].join("\n");
}

function convert(raw: string, kind: Kind, where: string): unknown {
  if (kind === "string") return raw;
  if (kind === "list") return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (kind === "bool") {
    if (/^(1|true|yes)$/i.test(raw.trim())) return true;
    if (/^(0|false|no)$/i.test(raw.trim())) return false;
    throw new ConfigError(`${where}: expected true or false, got "${raw}"`);
  }
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n)) {
    throw new ConfigError(`${where}: expected a number, got "${raw}"`);
  }
  return n;
}

export interface LoadConfigOptions {
  args?: string[];
  env?: Record<string, string | undefined>;
  /** Reads a config file; defaults to Deno.readTextFileSync. */
  readFile?: (path: string) => string;
}

export interface LoadedConfig {
  config: Config;
  help: boolean;
}

/** Merge and validate flags, environment and config file. Throws ConfigError with one clear line. */
export function loadConfig(opts: LoadConfigOptions = {}): LoadedConfig {
  const args = opts.args ?? [];
  const env = opts.env ?? {};
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {
    config: { type: "string" },
    help: { type: "boolean" },
  };
  for (const f of FIELDS) {
    options[f.flag] = { type: f.kind === "bool" ? "boolean" : "string", multiple: f.kind === "list" };
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ConfigError(`${(e as Error).message.split("\n")[0]} (see --help)`);
  }
  if (parsed.positionals.length > 0) {
    throw new ConfigError(`unexpected argument "${parsed.positionals[0]}" (see --help)`);
  }
  const values = parsed.values;
  const merged: Record<string, unknown> = {};

  const configPath = (values.config as string | undefined) ?? env.SINKSTREAM_CONFIG;
  if (configPath) {
    let text: string;
    try {
      text = (opts.readFile ?? Deno.readTextFileSync)(configPath);
    } catch (e) {
      throw new ConfigError(`cannot read config file ${configPath}: ${(e as Error).message}`);
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`config file ${configPath} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      throw new ConfigError(`config file ${configPath} must hold a JSON object`);
    }
    for (const [k, v] of Object.entries(obj)) {
      if (!FIELDS.some((f) => f.key === k)) {
        throw new ConfigError(`config file ${configPath}: unknown key "${k}"`);
      }
      merged[k] = v;
    }
  }
  for (const f of FIELDS) {
    const raw = env[`SINKSTREAM_${f.env}`];
    if (raw !== undefined && raw !== "") merged[f.key] = convert(raw, f.kind, `SINKSTREAM_${f.env}`);
  }
  for (const f of FIELDS) {
    const v = values[f.flag];
    if (v === undefined) continue;
    if (f.kind === "list") {
      merged[f.key] = (v as string[]).flatMap((s) => convert(s, "list", `--${f.flag}`) as string[]);
    } else if (f.kind === "bool") merged[f.key] = v;
    else merged[f.key] = convert(v as string, f.kind, `--${f.flag}`);
  }

  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue.path[0] as keyof Config | undefined;
    const spec = FIELDS.find((f) => f.key === key);
    const where = spec ? `--${spec.flag} / SINKSTREAM_${spec.env}` : "config";
    throw new ConfigError(`invalid ${where}: ${issue.message}`);
  }
  return { config: result.data, help: values.help === true };
}
