/**
 * One client connection: read a request head (size and time limits), build a `Request` (body as a bounded
 * stream, `signal` aborted when the client goes away), call the handler with a ServerEnv, write the
 * `Response`, repeat while keep-alive holds; or switch to a WebSocket when the handler accepted an upgrade.
 * Every failure of the client's making is answered here with a 4xx (never a 500), then the connection is
 * closed without losing the answer (half-close, the client's remaining bytes read and dropped).
 */
import { ConnReader, withDeadline } from "./conn_reader.ts";
import {
  headEnd,
  HttpError,
  type HttpErrorCode,
  parseHead,
  type RequestFraming,
  requestFraming,
  type RequestHead,
  responseHead,
} from "./http1.ts";
import { CLOSE_TIMEOUT_MS, LINGER_MS, READ_CHUNK_BYTES, type ServerLimits } from "./limits.ts";
import { RequestBody } from "./request_body.ts";
import { writeFinalResponse, writeResponse } from "./response_writer.ts";
import { SendQueue } from "./send_queue.ts";
import {
  handshake,
  type ServerEnv,
  type UpgradeOptions,
  type UpgradeResult,
  type UpgradeWebSocket,
} from "./upgrade.ts";
import { ServerWebSocket, type WebSocketOptions } from "./ws_socket.ts";

export type Handler = (req: Request, env: ServerEnv) => Response | Promise<Response>;
/** The response the server sends for a request it refuses itself (the app decides the body's shape). */
export type ErrorResponse = (status: number, code: HttpErrorCode, message: string) => Response;

export interface ConnectionContext {
  handler: Handler;
  limits: ServerLimits;
  websocket: WebSocketOptions;
  errorResponse: ErrorResponse;
  scheme: "http" | "https";
  /** True once the server shuts down: no further request on this connection. */
  draining(): boolean;
}

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(:[0-9]{1,5})?$/;

interface PendingUpgrade {
  socket: ServerWebSocket;
  accept: string;
  protocol: string | undefined;
}

export class HttpConnection {
  /** Waiting for a request head: shutdown may close it at once. */
  idle = true;
  socket: ServerWebSocket | null = null;
  readonly #reader: ConnReader;
  readonly #queue: SendQueue;

  constructor(readonly conn: Deno.Conn, readonly ctx: ConnectionContext) {
    this.#reader = new ConnReader(conn, Math.max(ctx.limits.maxHeadBytes, READ_CHUNK_BYTES));
    this.#queue = new SendQueue(conn);
  }

  /** Serve the connection until it closes; never throws. */
  async run(): Promise<void> {
    try {
      for (;;) {
        const head = await this.#readHead();
        if (head === null) break;
        if (head instanceof HttpError) {
          await this.#refuse(head);
          break;
        }
        this.idle = false;
        const keep = await this.#exchange(head).catch((e) => {
          console.error("sinkstream: connection failed:", e);
          return false;
        });
        if (!keep || this.ctx.draining()) break;
        this.idle = true;
      }
    } finally {
      await this.#lingeringClose();
    }
  }

  /** Shutdown: an idle connection closes now, a WebSocket gets 1001, a busy one closes after its response. */
  drain(): void {
    if (this.socket !== null) {
      if (this.socket.readyState === this.socket.OPEN) this.socket.close(1001, "server shutting down");
    } else if (this.idle) this.#closeNow();
  }

  #closeNow(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }

  /** The next request head, an HttpError to answer, or null when the connection should just close. */
  async #readHead(): Promise<RequestHead | HttpError | null> {
    const { maxHeadBytes, headerTimeoutMs } = this.ctx.limits;
    const reader = this.#reader;
    const deadline = Date.now() + headerTimeoutMs;
    let searched = 0; // a head arriving a byte at a time is searched once, not once per byte
    for (;;) {
      let v = reader.view();
      let blank = 0;
      while (blank + 1 < v.length && v[blank] === 13 && v[blank + 1] === 10) blank += 2; // RFC 9112 2.2
      if (blank > 0) {
        reader.consume(blank);
        v = reader.view();
        searched = 0;
      }
      const end = headEnd(v, searched);
      searched = v.length;
      if (end >= 0 && end + 4 <= maxHeadBytes) {
        const bytes = v.subarray(0, end);
        reader.consume(end + 4);
        try {
          return parseHead(bytes);
        } catch (e) {
          return e as HttpError;
        }
      }
      if (end >= 0 || v.length >= maxHeadBytes) {
        return new HttpError(431, "head_too_large", `the request head exceeds ${maxHeadBytes} bytes`);
      }
      if (this.ctx.draining() && v.length === 0) return null;
      const r = await reader.fill(deadline);
      if (r === "eof") return null;
      if (r === "full") {
        return new HttpError(431, "head_too_large", `the request head exceeds ${maxHeadBytes} bytes`);
      }
      if (r === "timeout") {
        return reader.size === 0 ? null : new HttpError(
          408,
          "header_timeout",
          `the request head did not arrive within ${headerTimeoutMs} ms`,
        );
      }
    }
  }

  /** Answer a request we cannot serve; the connection then closes. */
  async #refuse(e: HttpError): Promise<void> {
    await writeFinalResponse(this.ctx.errorResponse(e.status, e.code, e.message), this.#queue);
  }

  /** One request and its response; resolves with whether the connection can carry another. */
  async #exchange(head: RequestHead): Promise<boolean> {
    const { ctx } = this;
    const queue = this.#queue;
    const abort = new AbortController();
    let req: Request, body: RequestBody, framing: RequestFraming;
    try {
      framing = requestFraming(head);
      if ((head.method === "GET" || head.method === "HEAD") && framing.body !== 0) {
        throw new HttpError(400, "bad_request", `a ${head.method} request cannot carry a body`);
      }
      const deadline = Date.now() + ctx.limits.bodyTimeoutMs;
      body = new RequestBody(
        this.#reader,
        framing,
        deadline,
        ctx.limits.maxHeadBytes,
        () => queue.push(CONTINUE),
      );
      req = buildRequest(head, ctx.scheme, body.stream, abort.signal);
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      await this.#refuse(e);
      return false;
    }
    let responding = true;
    // The client closing its side while we work on the answer aborts the request (once the body is in).
    const watch = () => {
      void this.#reader.fill().then((r) => {
        if (r === "eof" && responding) abort.abort();
      });
    };
    if (body.complete) watch();
    else body.onComplete = watch;
    queue.onFail = () => abort.abort();

    const upgrade = this.#upgradeHook(head);
    const env: ServerEnv = {
      remoteAddr: this.conn.remoteAddr as Deno.NetAddr,
      get bufferedAmount() {
        return queue.bufferedAmount;
      },
      upgradeWebSocket: upgrade.hook,
    };
    let res: Response;
    try {
      res = await ctx.handler(req, env);
    } catch (e) {
      console.error("sinkstream: request handler failed:", e);
      res = ctx.errorResponse(500, "internal_error", "internal error");
    }
    const up = upgrade.pending;
    if (up !== null && res.headers.get("sec-websocket-accept") === up.accept) {
      responding = false;
      await res.body?.cancel();
      this.#switchToWebSocket(up);
      await up.socket.run(this.conn, this.#reader, queue);
      return false;
    }
    up?.socket.close(); // the handler answered something else: the upgrade is abandoned
    if (body.error !== null) res = ctx.errorResponse(body.error.status, body.error.code, body.error.message);
    const keep = await writeResponse(res, {
      queue,
      headOnly: head.method === "HEAD",
      http10: head.minor === 0,
      keepAlive: framing.keepAlive && body.complete && body.error === null && !ctx.draining(),
      maxSendBufferBytes: ctx.limits.maxSendBufferBytes,
      signal: abort.signal,
    });
    responding = false;
    return keep;
  }

  /** The upgrade hook of one request; `pending` is the socket its handler accepted, if any. */
  #upgradeHook(head: RequestHead): { hook: UpgradeWebSocket; pending: PendingUpgrade | null } {
    const ws = this.ctx.websocket;
    const out: { hook: UpgradeWebSocket; pending: PendingUpgrade | null } = {
      pending: null,
      hook: (r: Request, opts?: UpgradeOptions): UpgradeResult => {
        if (out.pending !== null) throw new TypeError("upgradeWebSocket called twice for one request");
        const url = r.url.replace(/^http/, "ws");
        try {
          const hs = handshake(r, head.minor === 1, opts);
          out.pending = { socket: new ServerWebSocket(url, hs.protocol ?? "", ws), ...hs };
          const headers = { "sec-websocket-accept": hs.accept };
          return { socket: out.pending.socket, response: new Response(null, { status: 200, headers }) };
        } catch (e) {
          if (!(e instanceof HttpError)) throw e;
          const socket = new ServerWebSocket(url, "", ws);
          socket.close(); // never opens
          const response = this.ctx.errorResponse(e.status, e.code, e.message);
          if (e.status === 426) {
            response.headers.set("upgrade", "websocket");
            response.headers.set("sec-websocket-version", "13");
          }
          return { socket, response };
        }
      },
    };
    return out;
  }

  #switchToWebSocket(up: PendingUpgrade): void {
    this.socket = up.socket;
    const fields: [string, string][] = [
      ["upgrade", "websocket"],
      ["connection", "Upgrade"],
      ["sec-websocket-accept", up.accept],
    ];
    if (up.protocol !== undefined) fields.push(["sec-websocket-protocol", up.protocol]);
    this.#queue.push(responseHead(101, fields));
  }

  /** Flush what is queued, half-close, read and drop what the client still sends, then close (bounded). */
  async #lingeringClose(): Promise<void> {
    await withDeadline(this.#queue.flushed(), Date.now() + CLOSE_TIMEOUT_MS);
    try {
      await this.conn.closeWrite();
      const deadline = Date.now() + LINGER_MS;
      while ((await this.#reader.fill(deadline)) === "data") this.#reader.consume(this.#reader.size);
    } catch { /* already closed */ }
    this.#closeNow();
  }
}

/** The fetch Request for a parsed head; throws HttpError 400 for a bad target, Host or header. */
function buildRequest(
  head: RequestHead,
  scheme: string,
  body: ReadableStream<Uint8Array> | null,
  signal: AbortSignal,
): Request {
  let url: string;
  if (head.target.startsWith("/")) {
    const hosts = head.headers.filter(([n]) => n === "host");
    if (hosts.length !== 1 || !HOST.test(hosts[0][1])) {
      throw new HttpError(400, "bad_host", "a request needs exactly one valid Host header");
    }
    url = `${scheme}://${hosts[0][1]}${head.target}`;
  } else url = head.target;
  try {
    const headers = new Headers();
    for (const [n, v] of head.headers) headers.append(n, v);
    return new Request(
      new URL(url),
      { method: head.method, headers, body, signal, duplex: "half" } as RequestInit,
    );
  } catch (e) {
    throw new HttpError(
      400,
      "bad_request",
      `cannot build the request: ${(e as Error).message.split("\n")[0]}`,
    );
  }
}
