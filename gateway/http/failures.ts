/**
 * How an HTTP response (a chat completion, a Responses API response) that did not start, or did not end by
 * itself, is answered: one mapping from the runner's outcome to status, code and `param`.
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ErrorCode } from "../errors.ts";
import type { Finished, NotStarted } from "../response/runner.ts";

export interface Failure {
  status: ContentfulStatusCode;
  code: ErrorCode;
  message: string;
  param?: string;
}

/** Where each engine option comes from in the request body (for `error.param`). */
export const REQUEST_PARAM: Record<string, string> = {
  temperature: "temperature",
  topP: "top_p",
  seed: "seed",
};

/** Why a completion did not start, as an HTTP error. */
export function notStartedFailure(o: NotStarted, input = "messages"): Failure {
  if (o.kind === "invalid" && o.param !== undefined) {
    return { status: 400, code: "invalid_value", message: o.message, param: o.param };
  }
  if (o.kind === "invalid" && o.field !== undefined) {
    return {
      status: 400,
      code: "invalid_value",
      message: o.message,
      param: REQUEST_PARAM[o.field] ?? o.field,
    };
  }
  if (o.kind === "invalid") {
    return {
      status: 400,
      code: "invalid_value",
      message: `cannot render ${input}: ${o.message}`,
      param: input,
    };
  }
  if (o.kind === "too_large") {
    return { status: 400, code: "prompt_too_large", message: o.message, param: input };
  }
  return { status: o.code === "server_busy" ? 429 : 503, code: o.code, message: o.message };
}

/** A completion that did not end by itself, as an HTTP error; null when it did. */
export function cutShort(o: Finished): Failure | null {
  if (o.reason === "error") {
    return { status: 500, code: "engine_error", message: o.error?.message ?? "generation failed" };
  }
  if (o.reason === "cancelled") {
    return {
      status: 503,
      code: "server_shutting_down",
      message: "the server shut down before the completion ended",
    };
  }
  return null;
}
