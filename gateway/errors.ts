/**
 * OpenAI-shaped errors, `{message, type, param, code}`, for both front ends: HTTP bodies
 * (`{error: …}`, gateway/http/errors.ts), Realtime `error` events (`{type: "error", error: {…,
 * event_id}}`) and the error object of an SSE stream. Every code the gateway sends is listed here,
 * and its `type` follows from it.
 */

import type { HttpErrorCode } from "./server/http1.ts";
import type { WsFault } from "./server/ws_socket.ts";

/** Every `error.code` the gateway sends (docs/gateway.md lists them per front end). */
export type ErrorCode =
  // What our HTTP/WebSocket server answers itself (gateway/server/).
  | HttpErrorCode
  | WsFault
  // Client input (both front ends).
  | "invalid_json"
  | "invalid_value"
  | "input_too_large"
  | "prompt_too_large"
  | "unsupported_parameter"
  | "unknown_parameter"
  // Realtime events.
  | "invalid_event"
  | "binary_not_supported"
  | "frame_too_large"
  | "unknown_event"
  | "unsupported_event"
  | "conversation_already_has_active_response"
  | "response_cancel_not_active"
  | "session_settings_locked"
  | "item_not_found"
  | "session_not_found"
  | "session_in_use"
  // Edge sessions (docs/edge.md).
  | "session_restoring"
  | "backend_lost"
  | "backend_unavailable"
  // HTTP.
  | "model_not_found"
  | "previous_response_not_found"
  | "request_too_large"
  | "not_found"
  | "upgrade_required"
  | "invalid_api_key"
  | "origin_not_allowed"
  | "host_not_allowed"
  // The server's side.
  | "server_busy"
  | "server_shutting_down"
  | "engine_error"
  | "internal_error";

export type ErrorType = "invalid_request_error" | "server_error";

const SERVER_SIDE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "server_busy",
  "server_shutting_down",
  "engine_error",
  "internal_error",
  "too_many_connections",
  "backend_lost",
  "backend_unavailable",
]);

export interface ApiError {
  message: string;
  type: ErrorType;
  param: string | null;
  code: ErrorCode;
}

/** The error object: `type` is "server_error" for the server's own failures and limits, else "invalid_request_error". */
export function apiError(code: ErrorCode, message: string, param: string | null = null): ApiError {
  return { message, type: SERVER_SIDE.has(code) ? "server_error" : "invalid_request_error", param, code };
}
