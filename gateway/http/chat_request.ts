/** The request body of `POST /v1/chat/completions` (the subset we serve) and its messages as chat turns. */
import { z } from "zod";
import type { ChatMessage } from "../chat/template.ts";
import { TemperatureSchema } from "../config/config.ts";
import { MAX_TOP_LOGPROBS } from "../response/logprobs.ts";
import { ChatResponseFormatSchema } from "../grammar/format.ts";

const Content = z.union([
  z.string(),
  z.array(z.object({ type: z.literal("text"), text: z.string() }).loose()),
]);

export const ChatRequestSchema = z.object({
  model: z.string().optional(),
  messages: z.array(
    z.object({
      role: z.enum(["system", "developer", "user", "assistant"]),
      content: Content.nullable(),
      name: z.string().optional(),
    }).loose(),
  ).min(1),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).loose().nullable().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  temperature: TemperatureSchema.nullable().optional(),
  /** In (0, 1]: the engine checks it (Engine.checkSequenceOptions), the error names `top_p`. */
  top_p: z.number().nullable().optional(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  stop: z.union([z.string(), z.array(z.string().min(1)).max(4)]).nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullable().optional(),
  /** Structured outputs (gateway/grammar/format.ts). */
  response_format: ChatResponseFormatSchema.nullable().optional(),
  /** Values other than 1 are refused as unsupported (chat_unsupported.ts). */
  n: z.number().int().min(1).nullable().optional(),
}).loose().refine((r) => r.top_logprobs == null || r.logprobs === true, {
  message: "top_logprobs needs logprobs: true",
  path: ["top_logprobs"],
});

export type ChatRequest = z.infer<typeof ChatRequestSchema>;

export function toMessages(req: ChatRequest): ChatMessage[] {
  return req.messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: m.content === null
      ? ""
      : typeof m.content === "string"
      ? m.content
      : m.content.map((p) => p.text).join(""),
  }));
}

export function stopStrings(req: ChatRequest): string[] {
  return req.stop == null ? [] : typeof req.stop === "string" ? [req.stop] : req.stop;
}

/** Alternatives per token when the request asks for log-probabilities (ResponseSpec.logprobs); else undefined. */
export function logprobsOf(req: ChatRequest): number | undefined {
  return req.logprobs === true ? req.top_logprobs ?? 0 : undefined;
}
