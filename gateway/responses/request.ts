/**
 * The request body of `POST /v1/responses` (the subset we serve), the parameters we refuse by name, and the
 * input items as chat turns.
 */
import { z } from "zod";
import type { ChatMessage } from "../chat/template.ts";
import { TemperatureSchema } from "../config/config.ts";
import { MAX_TOP_LOGPROBS } from "../response/logprobs.ts";
import { TextConfigSchema } from "../grammar/format.ts";
import {
  ACCEPTED_HINTS,
  asksUnless,
  isEmptyValue,
  type ParamProblem,
  requestProblem,
  type UnsupportedRule,
} from "../response/unsupported.ts";

/** The `include` value that asks for output-text logprobs (with `top_logprobs` alternatives). */
export const INCLUDE_LOGPROBS = "message.output_text.logprobs";

const TextPart = z.object({
  type: z.enum(["input_text", "output_text", "text"]),
  text: z.string(),
}).loose();

const MessageItem = z.object({
  type: z.literal("message").optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(TextPart)]),
  id: z.string().optional(),
  status: z.string().optional(),
}).loose();

export const ResponsesRequestSchema = z.object({
  model: z.string().optional(),
  input: z.union([z.string(), z.array(MessageItem).min(1)]),
  instructions: z.string().nullable().optional(),
  max_output_tokens: z.number().int().min(1).nullable().optional(),
  temperature: TemperatureSchema.nullable().optional(),
  /** In (0, 1]: the engine checks it, the error names `top_p`. */
  top_p: z.number().nullable().optional(),
  store: z.boolean().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  previous_response_id: z.string().nullable().optional(),
  metadata: z.record(z.string(), z.string().max(512)).nullable().optional()
    .refine((m) => m == null || Object.keys(m).length <= 16, "at most 16 pairs"),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullable().optional(),
  include: z.array(z.string()).nullable().optional(),
  /** Structured outputs: text.format (gateway/grammar/format.ts). */
  text: TextConfigSchema.nullable().optional(),
}).loose();

export type ResponsesRequest = z.infer<typeof ResponsesRequestSchema>;

const NO_TOOLS = "tools (function calling, built-in tools) are not implemented";

export const RESPONSES_UNSUPPORTED: readonly UnsupportedRule[] = [
  { param: "tools", why: NO_TOOLS },
  { param: "tool_choice", why: NO_TOOLS, asks: asksUnless("none", "auto") },
  {
    param: "include",
    why: `only "${INCLUDE_LOGPROBS}" is available`,
    asks: (v) => Array.isArray(v) && v.some((x) => x !== INCLUDE_LOGPROBS),
  },
  {
    param: "reasoning",
    why: "the model has no reasoning settings",
    asks: (v) => !isEmptyValue(v) && Object.values(v as object).some((x) => x != null),
  },
  { param: "background", why: "responses run while their request is open", asks: (v) => v === true },
  { param: "conversation", why: "conversation objects are not available; use previous_response_id" },
  { param: "prompt", why: "stored prompts are not available" },
  { param: "service_tier", why: "there is one tier", asks: asksUnless("auto", "default") },
  { param: "moderation", why: "moderation is not available" },
  { param: "image", why: "image generation is not available" },
  { param: "context_management", why: "the cache policy decides what the context holds" },
  { param: "access_programs", why: "access programs are not available" },
];

/** Implemented, or accepted as they change nothing here (docs/gateway.md). */
const RESPONSES_KNOWN: ReadonlySet<string> = new Set([
  "model",
  "input",
  "instructions",
  "max_output_tokens",
  "temperature",
  "top_p",
  "store",
  "stream",
  "stream_options",
  "previous_response_id",
  "metadata",
  "top_logprobs",
  "text",
  "truncation",
  "parallel_tool_calls",
  "max_tool_calls",
  ...ACCEPTED_HINTS,
]);

/** The first parameter or input item this server refuses; null when none. */
export function responsesParamProblem(body: Record<string, unknown>): ParamProblem | null {
  return requestProblem(body, RESPONSES_UNSUPPORTED, RESPONSES_KNOWN, inputProblem);
}

/** An input item other than a text message. */
function inputProblem(body: Record<string, unknown>): ParamProblem | null {
  if (!Array.isArray(body.input)) return null;
  for (let i = 0; i < body.input.length; i++) {
    const item = body.input[i] as { type?: unknown; content?: unknown } | null;
    const type = item?.type ?? "message";
    if (type !== "message") {
      const param = `input.${i}`;
      return {
        code: "unsupported_parameter",
        param,
        message: `${param}: input items of type ${JSON.stringify(type)} are not supported (only messages)`,
      };
    }
    const parts = Array.isArray(item?.content) ? item.content : [];
    for (let j = 0; j < parts.length; j++) {
      const t = (parts[j] as { type?: unknown } | null)?.type;
      if (t === "input_image" || t === "input_file" || t === "input_audio") {
        const param = `input.${i}.content.${j}`;
        return {
          code: "unsupported_parameter",
          param,
          message: `${param}: ${t} is not supported (text only)`,
        };
      }
    }
  }
  return null;
}

/** The request's input as chat turns (developer = system, content parts joined). */
export function inputMessages(req: ResponsesRequest): ChatMessage[] {
  if (typeof req.input === "string") return [{ role: "user", content: req.input }];
  return req.input.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join(""),
  }));
}

/** Alternatives per token when the request asks for logprobs (ResponseSpec.logprobs); else undefined. */
export function responsesLogprobs(req: ResponsesRequest): number | undefined {
  return req.include?.includes(INCLUDE_LOGPROBS) ? req.top_logprobs ?? 0 : undefined;
}
