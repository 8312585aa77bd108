/**
 * OpenAI-compatible `POST /v1/chat/completions` (streaming SSE and not) and
 * `GET /v1/models`. Each request runs on its own short-lived sequence.
 */
import type { Context } from "hono";
import { z } from "zod";
import type { ChatMessage } from "../chat/template.ts";
import { Detokenizer } from "../../runtime/detokenizer.ts";
import { StopMatcher } from "../chat/stop.ts";
import { BusyError, Conversation, type GenerateResult, type JobHandle } from "../scheduler/scheduler.ts";
import type { SessionManager } from "../realtime/manager.ts";
import { newId, zodMessage } from "../realtime/protocol.ts";
import { openaiError } from "./errors.ts";

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
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  stop: z.union([z.string(), z.array(z.string().min(1)).max(4)]).nullable().optional(),
  n: z.literal(1).nullable().optional(),
}).loose();

export interface CompletionDeps {
  sessions: SessionManager;
}

function toMessages(req: z.infer<typeof ChatRequestSchema>): ChatMessage[] {
  return req.messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: m.content === null
      ? ""
      : typeof m.content === "string"
      ? m.content
      : m.content.map((p) => p.text).join(""),
  }));
}

function finishReason(r: GenerateResult, stopped: boolean): "stop" | "length" {
  return r.reason === "length" && !stopped ? "length" : "stop";
}

export async function chatCompletions(c: Context, deps: CompletionDeps): Promise<Response> {
  const { sessions } = deps;
  const ctx = sessions.ctx;
  if (sessions.draining) return openaiError(c, 503, "the server is shutting down", "server_shutting_down");
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    return openaiError(c, 400, "request body is not valid JSON", "invalid_json");
  }
  const parsed = ChatRequestSchema.safeParse(body);
  if (!parsed.success) {
    const { message, param } = zodMessage(parsed.error);
    return openaiError(c, 400, message, "invalid_value", param);
  }
  const req = parsed.data;
  if (req.model && req.model !== ctx.modelName) {
    return openaiError(
      c,
      404,
      `the model \`${req.model}\` does not exist; this server serves \`${ctx.modelName}\``,
      "model_not_found",
      "model",
    );
  }
  if (!sessions.hasRoom()) {
    ctx.metrics.rejected.inc();
    return openaiError(
      c,
      429,
      `the server is at its limit of ${ctx.config.maxSessions} sessions; try again later`,
      "server_busy",
    );
  }
  let prompt: number[];
  try {
    prompt = ctx.renderer.encodeTurn(toMessages(req), true);
  } catch (e) {
    return openaiError(
      c,
      400,
      `cannot render messages: ${(e as Error).message}`,
      "invalid_value",
      "messages",
    );
  }
  const cfg = ctx.config;
  const conv = new Conversation({
    policy: cfg.policy,
    sinks: cfg.sinks,
    capacity: cfg.window > 0 ? cfg.window : undefined,
  });
  const stops = req.stop == null ? [] : typeof req.stop === "string" ? [req.stop] : req.stop;
  const matcher = new StopMatcher(stops);
  const detok = new Detokenizer(ctx.tokenizer, { stripLeadingSpace: !ctx.renderer.usesTemplate });
  const maxTokens = req.max_completion_tokens ?? req.max_tokens ?? cfg.maxOutputTokens;
  const id = newId("chatcmpl");
  const created = Math.floor(Date.now() / 1000);
  let collected = "";
  let onText: (s: string) => void = (s) => {
    collected += s;
  };
  let job: JobHandle;
  sessions.httpActive++;
  try {
    job = ctx.scheduler.submit(conv, {
      prompt,
      maxTokens,
      sampling: {
        temperature: req.temperature ?? 1,
        topP: req.top_p ?? 1,
        ...(req.seed != null ? { seed: req.seed } : {}),
      },
      stopTokens: new Set([ctx.tokenizer.eosId]),
      onToken: (t) => {
        const out = matcher.push(detok.push(t));
        if (out !== "") onText(out);
        return matcher.stopped;
      },
    });
  } catch (e) {
    sessions.httpActive--;
    if (e instanceof BusyError) return openaiError(c, 429, e.message, "server_busy");
    throw e;
  }
  // A client that goes away (closes the connection, aborts the fetch) cancels its generation: Deno
  // aborts the request's signal when the connection closes, streaming or not.
  const signal = c.req.raw.signal;
  const onAbort = () => job.cancel("client");
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  const cleanup = (r: GenerateResult) => {
    signal.removeEventListener("abort", onAbort);
    ctx.scheduler.release(conv);
    sessions.httpActive--;
    return r;
  };
  const done = job.done.then(cleanup);
  const usage = (r: GenerateResult) => ({
    prompt_tokens: r.promptTokens,
    completion_tokens: r.outputTokens,
    total_tokens: r.promptTokens + r.outputTokens,
  });
  const model = ctx.modelName;

  if (!req.stream) {
    const r = await done;
    if (r.reason === "error") {
      return openaiError(c, 500, r.error?.message ?? "generation failed", "engine_error");
    }
    const content = collected + matcher.push(detok.flush()) + matcher.flush();
    return c.json({
      id,
      object: "chat.completion",
      created,
      model,
      system_fingerprint: null,
      choices: [{
        index: 0,
        message: { role: "assistant", content, refusal: null },
        logprobs: null,
        finish_reason: finishReason(r, matcher.stopped),
      }],
      usage: usage(r),
    });
  }

  const enc = new TextEncoder();
  const includeUsage = req.stream_options?.include_usage === true;
  const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
    id,
    object: "chat.completion.chunk",
    created,
    model,
    system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  const { metrics, scheduler } = ctx;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (obj: unknown): boolean => {
        try {
          controller.enqueue(enc.encode(`data: ${JSON.stringify(obj)}\n\n`));
          return true;
        } catch {
          return false; // stream closed
        }
      };
      write(chunk({ role: "assistant", content: "" }, null));
      // Called from the scheduler while it routes a step's tokens: time since that step resolved.
      onText = (s) => {
        if (write(chunk({ content: s }, null))) {
          metrics.gatewayTokenLatency.observe((performance.now() - scheduler.stepResolvedAt) / 1000);
        }
      };
      done.then((r) => {
        const tail = matcher.push(detok.flush()) + matcher.flush();
        if (tail !== "") write(chunk({ content: tail }, null));
        if (r.reason === "error") {
          write({
            error: {
              message: r.error?.message ?? "generation failed",
              type: "server_error",
              code: "engine_error",
            },
          });
        } else write(chunk({}, finishReason(r, matcher.stopped)));
        if (includeUsage) {
          write({ id, object: "chat.completion.chunk", created, model, choices: [], usage: usage(r) });
        }
        try {
          controller.enqueue(enc.encode("data: [DONE]\n\n"));
          controller.close();
        } catch { /* closed */ }
      });
    },
    cancel() {
      job.cancel("client");
    },
  });
  return new Response(stream, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "connection": "keep-alive" },
  });
}
