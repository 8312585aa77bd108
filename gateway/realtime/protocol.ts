/**
 * The text subset of the OpenAI Realtime API event protocol: zod schemas of
 * the client events we accept, the client event types we refuse as
 * unsupported, the `error` event, and the ids of server events.
 */
import { z } from "zod";
import type { SequenceLimits } from "../../runtime/types.ts";
import { TemperatureSchema } from "../config/server_options.ts";
import { apiError, type ErrorCode } from "../errors.ts";
import { TextConfigSchema } from "../grammar/format.ts";

/**
 * Our namespaced extension of `session` (session.update) — cache and sampling settings. The numeric
 * bounds are the engine's (Engine.limits, from the C library); the rules between settings (sinks <
 * window, top_p in (0, 1]) are checked by the engine itself (Engine.checkSequenceOptions).
 */
export function sinkstreamSessionSchema(limits: SequenceLimits) {
  return z.object({
    policy: z.enum(["streaming", "window", "dense"]).optional(),
    sinks: z.number().int().min(0).max(limits.maxCapacity - 1).optional(),
    window: z.number().int().min(limits.minCapacity).max(limits.maxCapacity).optional(),
    top_k: z.number().int().min(0).max(limits.maxTopK).optional(),
    top_p: z.number().optional(),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  }).strict();
}
export type SinkstreamSession = z.infer<ReturnType<typeof sinkstreamSessionSchema>>;

const maxOutputTokens = z.union([z.number().int().min(1), z.literal("inf")]);
const temperature = TemperatureSchema;
const modalities = z.array(z.enum(["text", "audio"]));

/** `session.update` with the engine's bounds (built once per gateway). */
export function sessionUpdateSchema(limits: SequenceLimits) {
  return z.object({
    type: z.literal("session.update"),
    event_id: z.string().optional(),
    session: z.looseObject({
      type: z.enum(["realtime"]).optional(),
      instructions: z.string().optional(),
      max_output_tokens: maxOutputTokens.optional(),
      max_response_output_tokens: maxOutputTokens.optional(),
      temperature: temperature.optional(),
      output_modalities: modalities.optional(),
      modalities: modalities.optional(),
      model: z.string().optional(),
      /** Our extension: structured outputs as the Responses API's `text.format` (gateway/grammar/format.ts). */
      text: TextConfigSchema.optional(),
      sinkstream: sinkstreamSessionSchema(limits).optional(),
    }),
  });
}
export type SessionUpdateSchema = ReturnType<typeof sessionUpdateSchema>;

const ContentSchema = z.object({
  type: z.enum(["input_text", "text", "output_text"]),
  text: z.string(),
}).loose();

export const ItemCreateSchema = z.object({
  type: z.literal("conversation.item.create"),
  event_id: z.string().optional(),
  previous_item_id: z.string().nullable().optional(),
  item: z.object({
    id: z.string().max(64).optional(),
    type: z.literal("message"),
    object: z.literal("realtime.item").optional(),
    status: z.string().optional(),
    role: z.enum(["user", "system", "assistant"]),
    content: z.array(ContentSchema).min(1),
  }),
});

export const ResponseCreateSchema = z.object({
  type: z.literal("response.create"),
  event_id: z.string().optional(),
  response: z.looseObject({
    instructions: z.string().optional(),
    max_output_tokens: maxOutputTokens.optional(),
    temperature: temperature.optional(),
    output_modalities: modalities.optional(),
    modalities: modalities.optional(),
    conversation: z.enum(["auto"]).optional(),
    metadata: z.record(z.string(), z.string()).nullable().optional(),
    /** This response's output format, in place of the session's (our extension, as in session.update). */
    text: TextConfigSchema.optional(),
  }).optional(),
});

export const ResponseCancelSchema = z.object({
  type: z.literal("response.cancel"),
  event_id: z.string().optional(),
  response_id: z.string().optional(),
});

/** Deletes an item not yet answered (items already in the KV cache cannot be taken out of it). */
export const ItemDeleteSchema = z.object({
  type: z.literal("conversation.item.delete"),
  event_id: z.string().optional(),
  item_id: z.string(),
});

export type SessionUpdate = z.infer<SessionUpdateSchema>;
export type ItemCreate = z.infer<typeof ItemCreateSchema>;
export type ResponseCreate = z.infer<typeof ResponseCreateSchema>;
export type ResponseCancel = z.infer<typeof ResponseCancelSchema>;

/** Client event types of the full API that the text subset does not serve. */
export const UNSUPPORTED_TYPES = new Set([
  "input_audio_buffer.append",
  "input_audio_buffer.commit",
  "input_audio_buffer.clear",
  "output_audio_buffer.clear",
  "conversation.item.retrieve",
  "conversation.item.truncate",
  "transcription_session.update",
]);

let counter = 0;
/** Short unique ids with an OpenAI-like prefix, e.g. "evt_…", "resp_…". */
export function newId(prefix: string): string {
  counter = (counter + 1) % 0x1000000;
  const rand = crypto.getRandomValues(new Uint8Array(8));
  let s = "";
  for (const b of rand) s += b.toString(36).padStart(2, "0");
  return `${prefix}_${s.slice(0, 14)}${counter.toString(36)}`;
}

/** Random per process; event ids are this plus a counter (unique, cheap: one per streamed token). */
const EVENT_BASE = (() => {
  const rand = crypto.getRandomValues(new Uint8Array(6));
  let s = "";
  for (const b of rand) s += b.toString(36).padStart(2, "0");
  return `event_${s.slice(0, 10)}`;
})();
let eventCounter = 0;

/** A unique `event_…` id for a server event, without the random draw of newId(). */
export function newEventId(): string {
  return EVENT_BASE + ++eventCounter; // decimal: much cheaper than toString(36)
}

export function zodMessage(err: z.ZodError): { message: string; param: string | null } {
  const issue = err.issues[0];
  const param = issue.path.length ? issue.path.join(".") : null;
  return { message: param ? `${param}: ${issue.message}` : issue.message, param };
}

/** The `error` server event; `eventId` is the offending client event's id. */
export function errorEvent(
  code: ErrorCode,
  message: string,
  eventId: string | null = null,
  param: string | null = null,
): Record<string, unknown> {
  return { type: "error", error: { ...apiError(code, message, param), event_id: eventId } };
}
