/**
 * The parameters of `POST /v1/chat/completions` (OpenAI's, as the `openai` SDK types list them) that this
 * server does not implement, and the ones it accepts although they change nothing here; docs/gateway.md
 * lists both. A request that asks for an unsupported one, or names a parameter OpenAI does not have, gets
 * 400 (`unsupported_parameter` / `unknown_parameter`, `param` set) before anything runs.
 */
import {
  ACCEPTED_HINTS,
  asksAudio,
  asksUnless,
  isEmptyValue,
  type ParamProblem,
  requestProblem,
  type UnsupportedRule,
} from "../response/unsupported.ts";

const NO_TOOLS = "tools (function calling) are not implemented";
const NO_AUDIO = "responses are text only";

export const CHAT_UNSUPPORTED: readonly UnsupportedRule[] = [
  { param: "tools", why: NO_TOOLS },
  { param: "tool_choice", why: NO_TOOLS, asks: asksUnless("none", "auto") },
  { param: "functions", why: NO_TOOLS },
  { param: "function_call", why: NO_TOOLS, asks: asksUnless("none", "auto") },
  { param: "n", why: "one choice per request", asks: (v) => v != null && v !== 1 },
  { param: "audio", why: NO_AUDIO },
  { param: "modalities", why: NO_AUDIO, asks: asksAudio },
  { param: "frequency_penalty", why: "penalties are not implemented", asks: asksUnless(0) },
  { param: "presence_penalty", why: "penalties are not implemented", asks: asksUnless(0) },
  { param: "logit_bias", why: "logit bias is not implemented" },
  { param: "prediction", why: "predicted outputs are not implemented" },
  { param: "reasoning_effort", why: "the model has no reasoning settings" },
  { param: "verbosity", why: "the model has no verbosity setting" },
  { param: "web_search_options", why: "web search is not available" },
  { param: "moderation", why: "moderation is not available" },
  {
    param: "store",
    why: "chat completions are not stored (the Responses API stores)",
    asks: (v) => v === true,
  },
  { param: "metadata", why: "chat completions are not stored, so there is nothing to attach it to" },
  { param: "service_tier", why: "there is one tier", asks: asksUnless("auto", "default") },
];

/** Implemented, or accepted as they change nothing here (identifiers, cache hints: docs/gateway.md). */
const CHAT_KNOWN: ReadonlySet<string> = new Set([
  "messages",
  "model",
  "stream",
  "stream_options",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "seed",
  "stop",
  "logprobs",
  "top_logprobs",
  "response_format",
  "parallel_tool_calls",
  ...ACCEPTED_HINTS,
]);

/** The first parameter of a chat completion request (a JSON object) this server refuses; null when none. */
export function chatParamProblem(body: Record<string, unknown>): ParamProblem | null {
  return requestProblem(body, CHAT_UNSUPPORTED, CHAT_KNOWN, toolCallsProblem);
}

/** A tool message, or an assistant message with tool calls. */
function toolCallsProblem(body: Record<string, unknown>): ParamProblem | null {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as { tool_calls?: unknown; role?: unknown } | null;
    if (m?.role === "tool" || m?.role === "function") {
      const param = `messages.${i}.role`;
      return {
        code: "unsupported_parameter",
        param,
        message: `${param} ${m.role} is not supported: ${NO_TOOLS}`,
      };
    }
    const calls = m?.tool_calls;
    if (!isEmptyValue(calls)) {
      const param = `messages.${i}.tool_calls`;
      return { code: "unsupported_parameter", param, message: `${param} is not supported: ${NO_TOOLS}` };
    }
  }
  return null;
}
