/**
 * The first steps of every OpenAI-shaped HTTP request (chat completions, the Responses API): the body as JSON,
 * the parameters we refuse by name (before the schema: an unsupported item would otherwise read as a
 * malformed one), the schema, and the model. Each failure is the 4xx answer; else the parsed request.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { zodMessage } from "../realtime/protocol.ts";
import { isObject, type ParamProblem } from "../response/unsupported.ts";
import { openaiError } from "./errors.ts";

export async function readRequest<T extends { model?: string }>(
  c: Context,
  schema: z.ZodType<T>,
  problems: (body: Record<string, unknown>) => ParamProblem | null,
  modelName: string,
): Promise<T | Response> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    return openaiError(c, 400, "request body is not valid JSON", "invalid_json");
  }
  const problem = isObject(body) ? problems(body) : null;
  if (problem) return openaiError(c, 400, problem.message, problem.code, problem.param);
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const { message, param } = zodMessage(parsed.error);
    return openaiError(c, 400, message, "invalid_value", param);
  }
  const req = parsed.data;
  if (req.model && req.model !== modelName) {
    const message = `the model \`${req.model}\` does not exist; this server serves \`${modelName}\``;
    return openaiError(c, 404, message, "model_not_found", "model");
  }
  return req;
}
