/**
 * The Realtime API fields of `session.update` and `response.create` that this text-only server does not
 * implement (audio, tools, tracing, prompts, ...), as rules for gateway/response/unsupported.ts, and the
 * fields it knows. A `session.update` applies what it can and answers each unsupported or unknown field
 * with a non-fatal error event naming it; a `response.create` that asks for one is refused (its response
 * would not be what was asked for).
 */
import {
  asksAudio,
  asksUnless,
  findUnsupported,
  isEmptyValue,
  unknownKeys,
  type Unsupported,
  type UnsupportedRule,
} from "../response/unsupported.ts";

const NO_AUDIO = "this server speaks the text subset of the Realtime API (no audio in or out)";
const NO_TOOLS = "tools (function calling) are not implemented";

/** Audio settings of the GA `session.audio` object, each refused by name. */
const AUDIO_FIELDS: Record<string, readonly string[]> = {
  input: ["format", "transcription", "turn_detection", "noise_reduction"],
  output: ["format", "voice", "speed"],
};

const AUDIO_RULES: UnsupportedRule[] = Object.entries(AUDIO_FIELDS).flatMap(([dir, keys]) =>
  keys.map((k) => ({ param: `audio.${dir}.${k}`, why: NO_AUDIO }))
);

/** What a session and a response both refuse: audio output, tools. */
const TEXT_ONLY: UnsupportedRule[] = [
  { param: "output_modalities", why: `${NO_AUDIO}; responses are text`, asks: asksAudio },
  { param: "modalities", why: `${NO_AUDIO}; responses are text`, asks: asksAudio },
  { param: "tools", why: NO_TOOLS },
  { param: "tool_choice", why: NO_TOOLS, asks: asksUnless("none", "auto") },
];

export const SESSION_UNSUPPORTED: readonly UnsupportedRule[] = [
  ...TEXT_ONLY,
  ...AUDIO_RULES,
  // The beta API's flat audio fields.
  ...["voice", "input_audio_format", "output_audio_format", "input_audio_transcription", "turn_detection"]
    .map((param) => ({ param, why: NO_AUDIO })),
  { param: "input_audio_noise_reduction", why: NO_AUDIO },
  { param: "speed", why: NO_AUDIO },
  { param: "tracing", why: "traces are not recorded" },
  { param: "prompt", why: "stored prompts are not available" },
  { param: "include", why: "input audio transcription is not available" },
  { param: "reasoning", why: "the model has no reasoning settings" },
  // Our cache evicts the oldest tokens past the sinks (StreamingLLM): that is what "auto" asks for.
  { param: "truncation", why: "the cache policy decides what is evicted", asks: asksUnless("auto") },
];

/** `session` fields applied (protocol.ts sessionUpdateSchema) or accepted as they ask for nothing. */
const SESSION_KNOWN: ReadonlySet<string> = new Set([
  "type",
  "model",
  "instructions",
  "max_output_tokens",
  "max_response_output_tokens",
  "temperature",
  "text",
  "sinkstream",
  "parallel_tool_calls",
]);

export const RESPONSE_UNSUPPORTED: readonly UnsupportedRule[] = [
  ...TEXT_ONLY,
  ...["audio", "voice", "output_audio_format"].map((param) => ({ param, why: NO_AUDIO })),
  { param: "input", why: "a response answers the conversation's items (custom input is not available)" },
  { param: "prompt", why: "stored prompts are not available" },
];

const RESPONSE_KNOWN: ReadonlySet<string> = new Set([
  "instructions",
  "max_output_tokens",
  "temperature",
  "conversation",
  "metadata",
  "text",
  "parallel_tool_calls",
]);

/** What a `session` or `response` object asks for that this server does not do (unknown fields included). */
export interface FieldProblems {
  unsupported: Unsupported[];
  /** Full paths of fields the Realtime API does not have. */
  unknown: string[];
}

function problems(
  obj: unknown,
  rules: readonly UnsupportedRule[],
  known: ReadonlySet<string>,
  prefix: string,
): FieldProblems {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return { unsupported: [], unknown: [] };
  const o = obj as Record<string, unknown>;
  const unknown = unknownKeys(o, known, rules).map((k) => prefix + k);
  return { unsupported: findUnsupported(o, rules, prefix), unknown };
}

/** The problems of a `session.update`'s `session` (audio settings beyond the named ones count as unknown). */
export function sessionFieldProblems(session: unknown): FieldProblems {
  const p = problems(session, SESSION_UNSUPPORTED, SESSION_KNOWN, "session.");
  const audio = (session as { audio?: unknown } | null)?.audio;
  if (typeof audio === "object" && audio !== null && !Array.isArray(audio)) {
    for (const [dir, v] of Object.entries(audio)) {
      const keys = AUDIO_FIELDS[dir];
      if (!keys) {
        if (!isEmptyValue(v)) p.unknown.push(`session.audio.${dir}`);
        continue;
      }
      if (typeof v !== "object" || v === null) continue;
      for (const k of Object.keys(v)) if (!keys.includes(k)) p.unknown.push(`session.audio.${dir}.${k}`);
    }
  }
  return p;
}

/** The problems of a `response.create`'s `response`. */
export function responseFieldProblems(response: unknown): FieldProblems {
  return problems(response, RESPONSE_UNSUPPORTED, RESPONSE_KNOWN, "response.");
}
