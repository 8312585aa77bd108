/**
 * Writes a fetch `Response` to a connection's SendQueue as HTTP/1.1: a body that is already complete when
 * its first chunk is read (a string, bytes, JSON) gets Content-Length; a body still being produced (SSE)
 * is sent chunked (HTTP/1.0: until the connection closes), each chunk as soon as the stream yields it.
 * The stream is read as fast as it yields, so its bytes wait in the SendQueue where the connection's
 * hard cap sees them: past `maxSendBufferBytes` the response is cut and the connection closed.
 */
import { httpDate, responseHead } from "./http1.ts";
import type { SendQueue } from "./send_queue.ts";

export interface ResponseTarget {
  queue: SendQueue;
  /** A HEAD request: the head only. */
  headOnly: boolean;
  /** An HTTP/1.0 client: no chunked encoding. */
  http10: boolean;
  /** Whether the connection may carry another request after this one (if the response allows). */
  keepAlive: boolean;
  maxSendBufferBytes: number;
  /** Aborted when the client goes away: the body stream is cancelled. */
  signal: AbortSignal;
}

/** Fields the server owns (hop-by-hop, RFC 9110 7.6.1) or computes itself. */
const SERVER_FIELDS = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "content-length",
  "date",
]);
/** A read of a stream that already holds its last chunk settles within a few microtask turns. */
const SETTLED_TURNS = 16;
/** Chunks up to this size are framed with one copy (size line + data + CRLF in one buffer). */
const FRAME_COPY_BYTES = 16 * 1024;
const LAST_CHUNK = new TextEncoder().encode("0\r\n\r\n");
const CRLF = new TextEncoder().encode("\r\n");

/** Write `res`; resolves with whether the connection can be kept for another request. */
export async function writeResponse(res: Response, t: ResponseTarget): Promise<boolean> {
  const fields: [string, string][] = [["date", httpDate()]];
  for (const [name, value] of res.headers) if (!SERVER_FIELDS.has(name)) fields.push([name, value]);
  let keepAlive = t.keepAlive;
  const connection = (): [string, string][] =>
    keepAlive ? (t.http10 ? [["connection", "keep-alive"]] : []) : [["connection", "close"]];
  const status = res.status;
  if (t.headOnly || status === 204 || status === 304) {
    const length = res.headers.get("content-length");
    if (t.headOnly && length !== null) fields.push(["content-length", length]);
    t.queue.push(responseHead(status, [...fields, ...connection()]));
    await res.body?.cancel().catch(() => {});
    return keepAlive;
  }
  if (res.body === null) {
    t.queue.push(responseHead(status, [...fields, ["content-length", "0"], ...connection()]));
    return keepAlive;
  }
  const reader = res.body.getReader();
  const onAbort = () => void reader.cancel().catch(() => {});
  t.signal.addEventListener("abort", onAbort, { once: true });
  let headSent = false;
  const sendHead = (framing: [string, string][]) => {
    t.queue.push(responseHead(status, [...fields, ...framing, ...connection()]));
    headSent = true;
  };
  try {
    const first = await reader.read();
    if (first.done) {
      sendHead([["content-length", "0"]]);
      return keepAlive;
    }
    let chunk = bytes(first.value);
    const pending = reader.read();
    const soon = await settledSoon(pending);
    if (soon?.done) {
      sendHead([["content-length", String(chunk.length)]]);
      t.queue.push(chunk);
      return keepAlive;
    }
    const chunked = !t.http10;
    if (!chunked) keepAlive = false; // HTTP/1.0: the body ends with the connection
    sendHead(chunked ? [["transfer-encoding", "chunked"]] : []);
    let r = soon ?? await pending;
    for (;;) {
      if (chunk.length > 0) pushChunk(t.queue, chunk, chunked);
      if (t.queue.failed || t.queue.bufferedAmount > t.maxSendBufferBytes || t.signal.aborted) {
        await reader.cancel().catch(() => {});
        return false;
      }
      if (r.done) break;
      chunk = bytes(r.value);
      r = await reader.read();
    }
    if (chunked) t.queue.push(LAST_CHUNK);
    return keepAlive;
  } catch {
    // The body stream failed: before the head, a 500; midway, closing is the only honest signal left.
    await reader.cancel().catch(() => {});
    if (!headSent) {
      t.queue.push(
        responseHead(500, [["date", httpDate()], ["content-length", "0"], ["connection", "close"]]),
      );
    }
    return false;
  } finally {
    t.signal.removeEventListener("abort", onAbort);
  }
}

/** A short, complete answer of the server's own (an error) on a connection that closes after it. */
export function writeFinalResponse(res: Response, queue: SendQueue): Promise<boolean> {
  return writeResponse(res, {
    queue,
    headOnly: false,
    http10: false,
    keepAlive: false,
    maxSendBufferBytes: Infinity,
    signal: new AbortController().signal,
  });
}

function bytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  throw new TypeError("a response body chunk is not a Uint8Array");
}

function pushChunk(queue: SendQueue, data: Uint8Array, chunked: boolean): void {
  if (!chunked) {
    queue.push(data);
    return;
  }
  const hex = data.length.toString(16);
  const copy = data.length <= FRAME_COPY_BYTES;
  const out = new Uint8Array(hex.length + 2 + (copy ? data.length + 2 : 0));
  for (let i = 0; i < hex.length; i++) out[i] = hex.charCodeAt(i);
  out.set(CRLF, hex.length);
  if (!copy) {
    queue.push(out);
    queue.push(data);
    queue.push(CRLF);
    return;
  }
  out.set(data, hex.length + 2);
  out.set(CRLF, hex.length + 2 + data.length);
  queue.push(out);
}

/** The value of `p` if it settles within a few microtask turns (no timer), else undefined. */
async function settledSoon<T>(p: Promise<T>): Promise<T | undefined> {
  let settled = false;
  let value: T | undefined;
  p.then((v) => {
    settled = true;
    value = v;
  }, () => {
    settled = true;
  });
  for (let i = 0; i < SETTLED_TURNS && !settled; i++) await null;
  return value;
}
