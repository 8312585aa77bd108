/** OpenAI-shaped JSON error responses for HTTP endpoints (the error object: gateway/errors.ts). */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { apiError, type ErrorCode } from "../errors.ts";

export function openaiError(
  c: Context,
  status: ContentfulStatusCode,
  message: string,
  code: ErrorCode,
  param: string | null = null,
): Response {
  return c.json({ error: apiError(code, message, param) }, status);
}
