/**
 * Hostile client 5, the HTTP abuser, each cycle at once: a few dozen slowloris connections that drip a
 * head one byte a second (expected 408 `header_timeout` after --header-timeout), a body twice
 * --max-body-bytes (413 `request_too_large`), invalid JSON bodies (400 `invalid_json`), and a streaming
 * chat completion that it never reads (paused by backpressure; the client hangs up after a while).
 */
import { sleep } from "../lib.ts";
import { type HttpResponse, mustSettle, Wire } from "../wire.ts";
import { type HostileContext, repeat, timeLeft } from "./context.ts";

const SLOWLORIS_CONNECTIONS = 30;
const INVALID_JSON_REQUESTS = 10;
/** How long the unread completion is held. */
const SSE_HOLD_MS = 15_000;
const ANSWER_TIMEOUT_MS = 30_000;

export function httpAbuser(ctx: HostileContext): Promise<void> {
  return repeat(ctx, 500, async () => {
    await Promise.all([
      ...Array.from({ length: SLOWLORIS_CONNECTIONS }, () => counted(ctx, "slowloris", slowloris(ctx))),
      counted(ctx, "big body", bigBody(ctx)),
      ...Array.from({ length: INVALID_JSON_REQUESTS }, () => counted(ctx, "invalid json", invalidJson(ctx))),
      counted(ctx, "unread stream", unreadStream(ctx)),
    ]);
  });
}

/** Count `what: http STATUS CODE` (or `what: <error>`) once the attempt settles. */
async function counted(ctx: HostileContext, what: string, attempt: Promise<HttpResponse | string>) {
  try {
    const r = await attempt;
    ctx.tally.add(typeof r === "string" ? `${what}: ${r}` : `${what}: http ${r.status} ${errorCode(r.body)}`);
  } catch (e) {
    ctx.tally.add(`${what}: ${(e as Error).message.split("\n")[0].slice(0, 80)}`);
  }
}

function errorCode(body: string): string {
  try {
    return JSON.parse(body).error?.code ?? "-";
  } catch {
    return "-";
  }
}

function head(ctx: HostileContext, fields: string[]): string {
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${ctx.port}\r\n${
    fields.join("\r\n")
  }\r\n\r\n`;
}

async function slowloris(ctx: HostileContext): Promise<HttpResponse | string> {
  const wire = await Wire.connect(ctx.port);
  try {
    await wire.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${ctx.port}\r\nX-Slow: `);
    // Set from the read below (an object, so that the loop sees what the callback wrote).
    const got: { answer: HttpResponse | Error | null } = { answer: null };
    const answered = wire.response().then((r) => (got.answer = r), (e) => (got.answer = e));
    const giveUp = performance.now() + Math.min(2 * ctx.limits.headerTimeout * 1000, timeLeft(ctx) + 1_000);
    while (got.answer === null && performance.now() < giveUp) {
      await wire.write("a").catch(() => {});
      await Promise.race([answered, sleep(1_000)]);
    }
    if (got.answer === null) return "no answer";
    if (got.answer instanceof Error) return "closed without an answer";
    return got.answer;
  } finally {
    wire.close();
  }
}

async function bigBody(ctx: HostileContext): Promise<HttpResponse> {
  const size = 2 * ctx.limits.maxBodyBytes;
  const wire = await Wire.connect(ctx.port);
  try {
    const writing = (async () => {
      await wire.write(head(ctx, ["Content-Type: application/json", `Content-Length: ${size}`]));
      await wire.write(new Uint8Array(size).fill(0x20));
    })().catch(() => {}); // the server may answer and close before the body is all sent
    const r = await mustSettle(wire.response(), ANSWER_TIMEOUT_MS, "the answer to a big body");
    await writing;
    return r;
  } finally {
    wire.close();
  }
}

async function invalidJson(ctx: HostileContext): Promise<HttpResponse> {
  const res = await fetch(new URL("/v1/chat/completions", ctx.base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: '{"messages": [{"role": "user", "content": "hi"}',
    signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
  });
  return { status: res.status, headers: {}, body: await res.text() };
}

async function unreadStream(ctx: HostileContext): Promise<string> {
  const body = JSON.stringify({
    messages: [{ role: "user", content: "Tell me a long story." }],
    stream: true,
    max_tokens: 1_000_000,
  });
  const wire = await Wire.connect(ctx.port);
  try {
    await wire.write(head(ctx, ["Content-Type: application/json", `Content-Length: ${body.length}`]) + body);
    const hold = Math.min(SSE_HOLD_MS, timeLeft(ctx));
    await sleep(hold);
    // Only now read, the head: the completion was still on (or not) while nothing was read.
    const r = await mustSettle(wire.response({ toHead: true }), 5_000, "the stream's head");
    return `http ${r.status}, held unread ${hold < SSE_HOLD_MS ? "until the end of the run" : `${hold} ms`}`;
  } finally {
    wire.close();
  }
}
