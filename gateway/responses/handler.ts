/**
 * The Responses API: `POST /v1/responses` (JSON or SSE), `GET /v1/responses/{id}`, `DELETE
 * /v1/responses/{id}`. Each response runs through the response runner like a chat completion; what is
 * particular here is the chain: a response with `previous_response_id` continues the previous response's live
 * sequence when it is still the chain's head (no re-prefill: `usage.input_tokens_details.cached_tokens` is
 * what the cache held), else a fresh sequence is rebuilt from the stored ids (`usage.sinkstream.cache:
 * "rebuilt"`). Stored responses, their bounds and live chains: store.ts.
 */
import type { Context } from "hono";
import type { CompletionContext } from "../http/chat_completions.ts";
import { openaiError } from "../http/errors.ts";
import { cutShort, type Failure, notStartedFailure } from "../http/failures.ts";
import { SseStream } from "../http/sse.ts";
import { readRequest } from "../http/read_request.ts";
import { isRefusal } from "../response/admission.ts";
import { sequenceOptions } from "../response/options.ts";
import { ResponseRun } from "../response/runner.ts";
import { Conversation } from "../scheduler/scheduler.ts";
import type { ServerEnv } from "../server/upgrade.ts";
import type { ChatMessage } from "../chat/template.ts";
import { formatSpec, textFormat } from "../grammar/format.ts";
import { keepShape, keptTokens } from "./kept_tokens.ts";
import { type CacheSource, ResponseObjects, responsesUsage } from "./objects.ts";
import {
  inputMessages,
  responsesLogprobs,
  responsesParamProblem,
  ResponsesRequestSchema,
} from "./request.ts";
import type { ResponseStore, StoredResponse } from "./store.ts";

export interface ResponsesContext extends CompletionContext {
  responses: ResponseStore;
}

/** Where the new response's conversation comes from. */
interface Chain {
  conv: Conversation;
  source: CacheSource;
  /** Tokens in the cache when the response starts (served from the live cache). */
  cachedBefore: number;
  /** Ids the cache is rebuilt from (0 unless rebuilt). */
  rebuilt: number;
  parent: StoredResponse | null;
}

function chainFor(ctx: ResponsesContext, parent: StoredResponse | null): Chain {
  if (parent === null) {
    return {
      conv: new Conversation(sequenceOptions(ctx.config)),
      source: "new",
      cachedBefore: 0,
      rebuilt: 0,
      parent,
    };
  }
  const live = ctx.responses.takeLive(parent.id);
  if (live) return { conv: live, source: "live", cachedBefore: live.stats?.cached ?? 0, rebuilt: 0, parent };
  const conv = new Conversation({ ...parent.options });
  conv.pending = Array.from(parent.kept); // fed first by the response's job: the rebuilt cache
  return { conv, source: "rebuilt", cachedBefore: 0, rebuilt: parent.kept.length, parent };
}

export async function createResponse(c: Context, ctx: ResponsesContext): Promise<Response> {
  const fail = (f: Failure) => openaiError(c, f.status, f.message, f.code, f.param ?? null);
  const model = ctx.modelName;
  const req = await readRequest(c, ResponsesRequestSchema, responsesParamProblem, model);
  if (req instanceof Response) return req;
  const store = ctx.responses;
  let parent: StoredResponse | null = null;
  if (req.previous_response_id != null) {
    parent = store.get(req.previous_response_id) ?? null;
    const param = "previous_response_id";
    if (parent === null) {
      return openaiError(
        c,
        400,
        `no stored response with id ${req.previous_response_id} (never stored, deleted or expired)`,
        "previous_response_not_found",
        param,
      );
    }
    if (!parent.done) {
      return openaiError(c, 400, `response ${parent.id} is still in progress`, "invalid_value", param);
    }
  }
  const slot = ctx.admission.acquire("completion");
  if (isRefusal(slot)) return fail(notStartedFailure({ kind: "refused", ...slot }, "input"));

  const cfg = ctx.config;
  const chain = chainFor(ctx, parent);
  const { conv } = chain;
  // Instructions already in the chain's cache are not fed again (a changed one is a new system message).
  const instructions = req.instructions ?? null;
  const chainInstructions = parent?.chainInstructions ?? null;
  const messages: ChatMessage[] = [];
  if (instructions !== null && instructions !== "" && instructions !== chainInstructions) {
    messages.push({ role: "system", content: instructions });
  }
  messages.push(...inputMessages(req));
  const logprobs = responsesLogprobs(req);
  const format = formatSpec(textFormat(req.text?.format), "text.format");
  const stored = req.store !== false;
  const temperature = req.temperature ?? cfg.temperature;
  const topP = req.top_p ?? 1;
  const sse = req.stream ? new SseStream(() => run.cancel("client")) : null;
  const objs = new ResponseObjects({
    model,
    instructions,
    maxOutputTokens: req.max_output_tokens ?? null,
    previousResponseId: parent?.id ?? null,
    store: stored,
    temperature,
    topP,
    topLogprobs: req.top_logprobs ?? 0,
    metadata: req.metadata ?? {},
    logprobs: logprobs !== undefined,
    format: format?.value ?? null,
  }, sse ? (type, ev) => sse.sendNamed(type, ev) : null);
  const record: StoredResponse | null = stored
    ? {
      id: objs.id,
      object: {},
      done: false,
      kept: new Int32Array(0),
      chainInstructions: instructions ?? chainInstructions,
      options: conv.options,
      expiresAt: Date.now() + cfg.responsesTtl * 1000,
      bytes: 0,
    }
    : null;
  const env = c.env as Partial<ServerEnv> | undefined;
  const run = new ResponseRun(ctx, {
    conv,
    messages,
    first: chain.source === "new",
    maxTokens: req.max_output_tokens ?? cfg.maxOutputTokens,
    sampling: { temperature, topP },
    isPaused: sse && env ? () => (env.bufferedAmount ?? 0) > cfg.backpressureBytes : undefined,
    logprobs,
    format,
    recordTokens: record !== null,
  }, {
    onStart: () => {
      objs.started();
      if (record) {
        record.object = objs.object();
        store.put(record);
      }
    },
    onText: (text, entries) => objs.delta(text, entries),
  });
  const cancel = () => run.cancel("client");
  const signal = c.req.raw.signal;
  if (signal.aborted) cancel();
  else signal.addEventListener("abort", cancel, { once: true });
  const capacity = ctx.scheduler.capacityOf(conv.options);
  const done = run.done.then((o) => {
    signal.removeEventListener("abort", cancel);
    slot.release();
    if (o.kind !== "finished") {
      // Nothing was fed: a live chain is its parent's head as before.
      if (chain.source === "live" && parent) store.keepLive(parent.id, conv);
      else ctx.scheduler.release(conv);
      return null; // read only once `started` said the response runs
    }
    objs.finish(o, responsesUsage(o, chain.cachedBefore, chain.source, chain.rebuilt, conv, capacity));
    const kept = record !== null && store.get(record.id) === record; // not deleted meanwhile
    if (kept && o.tokens) {
      const shape = keepShape(conv.options, capacity);
      record!.kept = keptTokens([parent?.kept ?? [], o.tokens.turn, o.tokens.output], shape);
      record!.object = objs.object();
      record!.done = true;
      store.put(record!);
    }
    // A failed step may have left the sequence broken: a continuation rebuilds it.
    if (kept && o.reason !== "error") store.keepLive(record!.id, conv);
    else ctx.scheduler.release(conv);
    return o;
  });
  const failed = await run.started;
  if (failed) return fail(notStartedFailure(failed, "input"));
  if (!sse) {
    const o = (await done)!;
    const cut = cutShort(o);
    if (cut) return fail(cut);
    return c.json(objs.object());
  }
  done.then(() => sse.close());
  return sse.response();
}

function notFound(c: Context, id: string): Response {
  return openaiError(
    c,
    404,
    `no stored response with id ${id} (never stored, deleted or expired)`,
    "not_found",
    "response_id",
  );
}

export function getResponse(c: Context, ctx: ResponsesContext): Response {
  const id = c.req.param("id") ?? "";
  const r = ctx.responses.get(id);
  return r ? c.json(r.object) : notFound(c, id);
}

export function deleteResponse(c: Context, ctx: ResponsesContext): Response {
  const id = c.req.param("id") ?? "";
  return ctx.responses.delete(id) ? c.json({ id, object: "response", deleted: true }) : notFound(c, id);
}
