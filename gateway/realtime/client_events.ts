/**
 * The checks every client frame of `/v1/realtime` goes through before any session state is touched: a
 * text frame within the size limit, JSON, an object with a string `type`, a type this server handles,
 * and the type's schema. The session (session.ts) and the edge (gateway/edge/relay.ts) both run them, so
 * bad input gets the same typed error from either, and the edge forwards only events that pass.
 */
import type { z } from "zod";
import type { ErrorCode } from "../errors.ts";
import { UNSUPPORTED_TYPES, zodMessage } from "./protocol.ts";

/** Why a frame is refused: what its `error` event says. */
export interface FrameRefusal {
  refused: true;
  code: ErrorCode;
  message: string;
  eventId: string | null;
  param: string | null;
}

/** A frame that is a JSON object with a string `type`. */
export interface ClientEvent {
  refused: false;
  type: string;
  obj: Record<string, unknown>;
  eventId: string | null;
}

/** The client event types a Realtime session handles (their schemas: protocol.ts). */
export const CLIENT_EVENT_TYPES: ReadonlySet<string> = new Set([
  "session.update",
  "conversation.item.create",
  "response.create",
  "response.cancel",
  "conversation.item.delete",
]);

function refusal(
  code: ErrorCode,
  message: string,
  eventId: string | null = null,
  param: string | null = null,
) {
  return { refused: true as const, code, message, eventId, param };
}

/** UTF-8 bytes of `data` when it may exceed `limit` (counted only when the length cannot decide). */
function overLimit(data: string, limit: number): boolean {
  return data.length > limit || (data.length * 3 > limit && new TextEncoder().encode(data).length > limit);
}

/** The first checks of a frame: a refusal, or the event to dispatch on its type. */
export function readClientFrame(data: unknown, maxFrameBytes: number): ClientEvent | FrameRefusal {
  if (typeof data !== "string") {
    return refusal("binary_not_supported", "binary frames are not supported; send JSON text frames");
  }
  if (overLimit(data, maxFrameBytes)) {
    return refusal("frame_too_large", `frame exceeds the limit of ${maxFrameBytes} bytes`);
  }
  let msg: unknown;
  try {
    msg = JSON.parse(data);
  } catch {
    return refusal("invalid_json", "frame is not valid JSON");
  }
  if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
    return refusal("invalid_event", "an event must be a JSON object with a string `type`");
  }
  const obj = msg as Record<string, unknown>;
  const eventId = typeof obj.event_id === "string" ? obj.event_id : null;
  if (typeof obj.type !== "string") {
    return refusal("invalid_event", "an event must be a JSON object with a string `type`", eventId, "type");
  }
  return { refused: false, type: obj.type, obj, eventId };
}

/** The refusal of an event whose type no session handles: unsupported (audio, ...) or unknown. */
export function unhandledEvent(type: string, eventId: string | null): FrameRefusal {
  if (UNSUPPORTED_TYPES.has(type)) {
    return refusal(
      "unsupported_event",
      `${type} is not supported: this server speaks the text subset of the Realtime API`,
      eventId,
      "type",
    );
  }
  return refusal("unknown_event", `unknown event type "${type.slice(0, 80)}"`, eventId, "type");
}

/** The event as `schema` reads it, or the `invalid_value` refusal naming what is wrong. */
export function parseEvent<T>(schema: z.ZodType<T>, obj: unknown, eventId: string | null): T | FrameRefusal {
  const r = schema.safeParse(obj);
  if (r.success) return r.data;
  const { message, param } = zodMessage(r.error);
  return refusal("invalid_value", message, eventId, param);
}

export function isRefusal(x: unknown): x is FrameRefusal {
  return typeof x === "object" && x !== null && (x as { refused?: unknown }).refused === true;
}
