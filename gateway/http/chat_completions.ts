/**
 * OpenAI-compatible `POST /v1/chat/completions`, streaming (SSE) and not. Each request runs on its
 * own short-lived conversation through the response runner (gateway/response/runner.ts); this file
 * translates the runner's outcome into chat completion JSON or chunks.
 *
 * A completion that did not end by itself (EOS, a stop string, max_tokens) never reads as a quiet
 * "stop": an engine failure is 500 `engine_error`, a completion cut short by the server (shutdown)
 * is 503 `server_shutting_down`; when streaming, the same error object is the last event before
 * `[DONE]`. (A client that goes away cancels its completion too, but nobody reads that answer.)
 */
import type { Context } from "hono";
import type { Config } from "../config/config.ts";
import { apiError } from "../errors.ts";
import { newId } from "../realtime/protocol.ts";
import { isRefusal } from "../response/admission.ts";
import { sequenceOptions } from "../response/options.ts";
import { type Finished, type ResponseContext, ResponseRun, type ResponseSink } from "../response/runner.ts";
import { Conversation } from "../scheduler/scheduler.ts";
import { ChatRequestSchema, logprobsOf, stopStrings, toMessages } from "./chat_request.ts";
import { chatFormat, formatSpec } from "../grammar/format.ts";
import type { TokenLogprob } from "../response/logprobs.ts";
import { chatParamProblem } from "./chat_unsupported.ts";
import { openaiError } from "./errors.ts";
import { readRequest } from "./read_request.ts";
import { cutShort, type Failure, notStartedFailure } from "./failures.ts";
import { SseStream } from "./sse.ts";
import type { ServerEnv } from "../server/upgrade.ts";

export interface CompletionContext extends ResponseContext {
  config: Config;
  modelName: string;
}

function usage(o: Finished) {
  return {
    prompt_tokens: o.promptTokens,
    completion_tokens: o.outputTokens,
    total_tokens: o.promptTokens + o.outputTokens,
  };
}

export async function chatCompletions(c: Context, ctx: CompletionContext): Promise<Response> {
  const fail = (f: Failure) => openaiError(c, f.status, f.message, f.code, f.param ?? null);
  const model = ctx.modelName;
  const req = await readRequest(c, ChatRequestSchema, chatParamProblem, model);
  if (req instanceof Response) return req;
  const slot = ctx.admission.acquire("completion");
  if (isRefusal(slot)) return fail(notStartedFailure({ kind: "refused", ...slot }));

  const cfg = ctx.config;
  const conv = new Conversation(sequenceOptions(cfg));
  const id = newId("chatcmpl");
  const created = Math.floor(Date.now() / 1000);
  const logprobs = logprobsOf(req);
  /** A choice's `logprobs` (OpenAI: null when not asked for). */
  const lp = (entries: TokenLogprob[] | null | undefined) =>
    logprobs === undefined ? null : { content: entries ?? [], refusal: null };
  const chunk = (delta: Record<string, unknown>, finish: string | null, entries?: TokenLogprob[]) => ({
    id,
    object: "chat.completion.chunk",
    created,
    model,
    system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: entries ? lp(entries) : null, finish_reason: finish }],
  });
  const cancel = () => run.cancel("client");
  const sse = req.stream ? new SseStream(cancel) : null;
  const env = c.env as Partial<ServerEnv> | undefined;
  const sink: ResponseSink = sse
    ? {
      onStart: () => sse.send(chunk({ role: "assistant", content: "" }, null)),
      onText: (text, entries) => sse.send(chunk({ content: text }, null, entries)),
    }
    : { onText: () => false }; // JSON: the text comes with the outcome
  const run = new ResponseRun(ctx, {
    conv,
    messages: toMessages(req),
    first: true,
    maxTokens: req.max_completion_tokens ?? req.max_tokens ?? cfg.maxOutputTokens,
    sampling: {
      temperature: req.temperature ?? cfg.temperature,
      topP: req.top_p ?? 1,
      ...(req.seed != null ? { seed: req.seed } : {}),
    },
    stops: stopStrings(req),
    logprobs,
    format: formatSpec(chatFormat(req.response_format), "response_format"),
    // Backpressure, as for a Realtime socket: a stream whose client does not read is paused while the
    // connection's send queue holds more than --backpressure-bytes (our server says how much, c.env).
    isPaused: sse && env ? () => (env.bufferedAmount ?? 0) > cfg.backpressureBytes : undefined,
  }, sink);
  // A client that goes away (closes the connection, aborts the fetch) cancels its completion: Deno
  // aborts the request's signal when the connection closes, streaming or not.
  const signal = c.req.raw.signal;
  if (signal.aborted) cancel();
  else signal.addEventListener("abort", cancel, { once: true });
  const done = run.done.then((o) => {
    signal.removeEventListener("abort", cancel);
    ctx.scheduler.release(conv);
    slot.release();
    return o as Finished; // read only once `started` said the completion runs
  });
  const failed = await run.started;
  if (failed) return fail(notStartedFailure(failed));

  if (!sse) {
    const o = await done;
    const cut = cutShort(o);
    if (cut) return fail(cut);
    return c.json({
      id,
      object: "chat.completion",
      created,
      model,
      system_fingerprint: null,
      choices: [{
        index: 0,
        message: { role: "assistant", content: o.text, refusal: null },
        logprobs: lp(o.logprobs),
        finish_reason: o.reason,
      }],
      usage: usage(o),
    });
  }
  const includeUsage = req.stream_options?.include_usage === true;
  done.then((o) => {
    const cut = cutShort(o);
    sse.send(cut ? { error: apiError(cut.code, cut.message) } : chunk({}, o.reason));
    if (includeUsage) {
      sse.send({ id, object: "chat.completion.chunk", created, model, choices: [], usage: usage(o) });
    }
    sse.end();
  });
  return sse.response();
}
