/** OpenAI-shaped JSON errors for HTTP endpoints. */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export function openaiError(
  c: Context,
  status: ContentfulStatusCode,
  message: string,
  code: string | null = null,
  param: string | null = null,
  type = status >= 500 ? "server_error" : "invalid_request_error",
): Response {
  return c.json({ error: { message, type, param, code } }, status);
}
