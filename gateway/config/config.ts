/**
 * Gateway configuration: command-line flags, SINKSTREAM_* environment
 * variables and an optional JSON config file, merged (flags > env > file >
 * defaults) and validated with zod (the loader: options.ts; the options the
 * edge shares: server_options.ts). Every problem is reported as one clear
 * line naming the flag / variable / file key.
 */
import { z } from "zod";
import { KV_DTYPES, WEIGHT_DTYPES } from "../../runtime/types.ts";
import { ConfigError, type FieldSpec, type LoadOptions, loadOptions, usageText } from "./options.ts";
import {
  positiveInt,
  SERVER_FIELDS,
  serverOptionRules,
  serverOptionShape,
  TemperatureSchema,
} from "./server_options.ts";

export { ConfigError, TemperatureSchema };

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
  ...serverOptionShape,
  maxSessions: positiveInt.default(64),
  /** KV memory budget over all live sequences, in MiB (worst case: full windows). 0 = unlimited. */
  kvBudgetMb: z.number().min(0).default(0),
  /** Seconds a disconnected session keeps its cache for a resume. */
  sessionTtl: z.number().min(0).default(60),
  /** SIGTERM / SIGINT: seconds running responses may take to finish before they are cancelled (0 = none). */
  drainTimeout: z.number().min(0).default(0),
  /** UTF-8 bytes of items a Realtime session may hold unanswered (input_budget.ts); 0 = no cap. */
  maxPendingBytes: z.number().int().min(0).default(2 << 20),
  /** Tokens one response's rendered turn may have (HTTP and Realtime); 0 = no cap. */
  maxPromptTokens: z.number().int().min(0).default(1 << 20),
  /** MiB of client input not yet consumed (pending items + rendered prompts) over all sessions; 0 = no cap. */
  inputBudgetMb: z.number().min(0).default(512),
  /** Seconds a stored Responses API response is kept (GET, previous_response_id). */
  responsesTtl: z.number().gt(0).default(3600),
  /** Stored responses at most; past it the oldest go first. 0 = store none. */
  responsesMax: z.number().int().min(0).default(1000),
  /** MiB of stored responses (their objects and the token ids to rebuild their chains) at most. */
  responsesMaxMb: z.number().min(0).default(64),
  /** Idle Responses API chains whose engine sequence is kept for the next turn (past it: rebuilt on demand). */
  responsesLive: z.number().int().min(0).default(16),
  maxBatchTokens: positiveInt.default(512),
  /** Largest prefill chunk of one sequence in one step. */
  prefillChunk: positiveInt.default(128),
  /** A long prompt's chunk is sized to take about this long per step, ms (0 = off; prefill_pacing.ts). */
  prefillStepMs: z.number().min(0).max(60_000).default(20),
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
}).check(...serverOptionRules);

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

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
  ...SERVER_FIELDS,
  { key: "maxSessions", flag: "max-sessions", env: "MAX_SESSIONS", kind: "int", help: "live sessions" },
  { key: "kvBudgetMb", flag: "kv-budget-mb", env: "KV_BUDGET_MB", kind: "number", help: "KV MiB (0 = off)" },
  { key: "sessionTtl", flag: "session-ttl", env: "SESSION_TTL", kind: "number", help: "resume TTL seconds" },
  {
    key: "drainTimeout",
    flag: "drain-timeout",
    env: "DRAIN_TIMEOUT",
    kind: "number",
    help: "seconds running responses may finish after SIGTERM",
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
    key: "responsesTtl",
    flag: "responses-ttl",
    env: "RESPONSES_TTL",
    kind: "number",
    help: "seconds a stored Responses API response is kept",
  },
  {
    key: "responsesMax",
    flag: "responses-max",
    env: "RESPONSES_MAX",
    kind: "int",
    help: "stored responses at most (0 = none)",
  },
  {
    key: "responsesMaxMb",
    flag: "responses-max-mb",
    env: "RESPONSES_MAX_MB",
    kind: "number",
    help: "MiB of stored responses at most",
  },
  {
    key: "responsesLive",
    flag: "responses-live",
    env: "RESPONSES_LIVE",
    kind: "int",
    help: "idle response chains whose cache stays live",
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
    key: "prefillStepMs",
    flag: "prefill-step-ms",
    env: "PREFILL_STEP_MS",
    kind: "number",
    help: "ms per step for a long prompt's chunk",
  },
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
  return usageText("deno task start", ConfigSchema, FIELDS, true);
}

export type LoadConfigOptions = LoadOptions;

/** Merge and validate flags, environment and config file. Throws ConfigError with one clear line. */
export function loadConfig(opts: LoadConfigOptions = {}) {
  return loadOptions(ConfigSchema, FIELDS, { ...opts, readFile: opts.readFile ?? Deno.readTextFileSync });
}
