/**
 * The edge's WebSocket client to a backend (RFC 6455 client side) over Deno.connect / Deno.connectTls:
 * network only, so it runs on Deno Deploy too. Unlike the WebSocket API it reads its TCP socket only when
 * asked (`next()`), so an edge that stops reading (its client does not read) leaves the backend's frames
 * in the kernel buffers and then in the backend's send queue, where the backend's own backpressure pause
 * sees them: the edge holds at most one message per session. Custom request headers (the backend key) are
 * what the WebSocket API cannot send either.
 */
import { ConnReader, withDeadline } from "../server/conn_reader.ts";
import { headEnd, latin1 } from "../server/http1.ts";
import { SendQueue } from "../server/send_queue.ts";
import { acceptKey } from "../server/upgrade.ts";
import {
  closePayload,
  isControl,
  maskedFrame,
  maskedTextFrame,
  OP_CLOSE,
  OP_CONTINUATION,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  parseFrameHeader,
} from "../server/ws_frame.ts";

/** Why a connection did not become a socket: no TCP connection, or the backend answered the upgrade otherwise. */
export class UpstreamError extends Error {
  override name = "UpstreamError";
  constructor(
    readonly kind: "connect" | "handshake",
    message: string,
    /** The HTTP status of a refused upgrade. */
    readonly status?: number,
    /** The body of a refused upgrade (an OpenAI error object from a backend). */
    readonly body?: string,
  ) {
    super(message);
  }
}

export interface UpstreamOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  /** Largest message accepted from the backend; a larger one ends the socket (close 1009). */
  maxMessageBytes: number;
  /** For the TCP (and TLS) connection and the 101 answer together, ms. */
  connectTimeoutMs: number;
}

/** Head and refusal body bytes read during the handshake. */
const HANDSHAKE_BYTES = 64 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });

async function dial(url: URL): Promise<Deno.Conn> {
  const port = Number(url.port || (url.protocol === "wss:" ? 443 : 80));
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  if (url.protocol === "wss:") return await Deno.connectTls({ hostname, port });
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  return conn;
}

export class UpstreamSocket {
  /** Set once the socket has ended: the backend's close code (1006 when the connection just dropped). */
  closeCode: number | null = null;
  closeReason = "";
  #closeSent = false;
  #done = false;

  private constructor(
    readonly conn: Deno.Conn,
    readonly reader: ConnReader,
    readonly queue: SendQueue,
    readonly protocol: string,
    readonly maxMessageBytes: number,
  ) {}

  /** Open a socket to `url` (ws: or wss:); throws UpstreamError. */
  static async connect(url: URL, opts: UpstreamOptions): Promise<UpstreamSocket> {
    const deadline = Date.now() + opts.connectTimeoutMs;
    const dialing = dial(url);
    const conn = await withDeadline(dialing, deadline).catch((e) => {
      throw new UpstreamError("connect", `cannot connect to ${url.host}: ${(e as Error).message}`);
    });
    if (conn === "timeout") {
      dialing.then((c) => c.close(), () => {});
      throw new UpstreamError("connect", `cannot connect to ${url.host}: timed out`);
    }
    try {
      return await UpstreamSocket.#handshake(conn, url, opts, deadline);
    } catch (e) {
      try {
        conn.close();
      } catch { /* closed */ }
      throw e;
    }
  }

  static async #handshake(conn: Deno.Conn, url: URL, opts: UpstreamOptions, deadline: number) {
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const fields: [string, string][] = [
      ["host", url.host],
      ["upgrade", "websocket"],
      ["connection", "Upgrade"],
      ["sec-websocket-key", key],
      ["sec-websocket-version", "13"],
      ...Object.entries(opts.headers ?? {}),
    ];
    if (opts.protocols?.length) fields.push(["sec-websocket-protocol", opts.protocols.join(", ")]);
    const head = `GET ${url.pathname}${url.search} HTTP/1.1\r\n` +
      fields.map(([n, v]) => `${n}: ${v}\r\n`).join("") +
      "\r\n";
    const queue = new SendQueue(conn);
    queue.push(new TextEncoder().encode(head));
    const reader = new ConnReader(conn, HANDSHAKE_BYTES);
    let end: number;
    while ((end = headEnd(reader.view())) < 0) {
      const r = await reader.fill(deadline);
      if (r !== "data") throw new UpstreamError("handshake", `no WebSocket answer from ${url.host} (${r})`);
    }
    const lines = latin1(reader.view().subarray(0, end)).split("\r\n");
    reader.consume(end + 4);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? 0);
    const header = (name: string) =>
      lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim() ?? null;
    if (status !== 101) {
      const length = Math.min(Number(header("content-length") ?? 0) || 0, HANDSHAKE_BYTES - 1);
      while (reader.size < length && (await reader.fill(deadline)) === "data");
      const body = new TextDecoder().decode(reader.view().subarray(0, length));
      throw new UpstreamError("handshake", `${url.host} refused the upgrade: ${lines[0]}`, status, body);
    }
    if (header("sec-websocket-accept") !== acceptKey(key)) {
      throw new UpstreamError("handshake", `${url.host} answered with a wrong Sec-WebSocket-Accept`);
    }
    return new UpstreamSocket(
      conn,
      reader,
      queue,
      header("sec-websocket-protocol") ?? "",
      opts.maxMessageBytes,
    );
  }

  get bufferedAmount(): number {
    return this.queue.bufferedAmount;
  }

  get open(): boolean {
    return !this.#done && !this.#closeSent && !this.queue.failed;
  }

  /** Queue a text message; false when the socket is no longer open. */
  send(text: string): boolean {
    if (!this.open) return false;
    this.queue.push(maskedTextFrame(text));
    return true;
  }

  /** Start the closing handshake; the connection is dropped once `next()` sees the answer (or it ends). */
  close(code = 1000, reason = ""): void {
    if (this.#done) return;
    if (!this.#closeSent) {
      this.#closeSent = true;
      this.queue.push(maskedFrame(OP_CLOSE, closePayload(code, reason)));
    }
    // Nobody may read any more: end the connection once the close frame is written.
    void withDeadline(this.queue.flushed(), Date.now() + 2000).then(() => this.#end(code, reason));
  }

  /** Drop the connection now. */
  abort(): void {
    this.#end(1006, "aborted");
  }

  #end(code: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    this.closeCode ??= code;
    if (this.closeReason === "") this.closeReason = reason;
    try {
      this.conn.close();
    } catch { /* closed */ }
  }

  /** The next text message, or null once the socket has ended (closeCode says how). Never throws. */
  async next(): Promise<string | null> {
    let parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      if (this.#done) return null;
      const h = parseFrameHeader(this.reader.view());
      if (h === null) {
        if ((await this.reader.fill()) !== "data") return this.#dropped();
        continue;
      }
      if (h.masked || h.rsv !== 0) return this.#violation("bad frame from the backend");
      if (!isControl(h.opcode) && size + h.length > this.maxMessageBytes) {
        return this.#violation(`message over ${this.maxMessageBytes} bytes`, 1009);
      }
      this.reader.consume(h.size);
      const payload = await this.#payload(h.length);
      if (payload === null) return this.#dropped();
      if (h.opcode === OP_PING) {
        if (!this.#closeSent) this.queue.push(maskedFrame(OP_PONG, payload));
        continue;
      }
      if (h.opcode === OP_PONG) continue;
      if (h.opcode === OP_CLOSE) {
        const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
        let reason = "";
        try {
          reason = utf8.decode(payload.subarray(2));
        } catch { /* a bad reason is still a close */ }
        this.closeCode = code;
        this.closeReason = reason;
        if (!this.#closeSent) {
          this.#closeSent = true;
          this.queue.push(maskedFrame(OP_CLOSE, closePayload(code === 1005 ? 1000 : code, "")));
        }
        await withDeadline(this.queue.flushed(), Date.now() + 2000);
        this.#end(code, reason);
        return null;
      }
      if (h.opcode !== OP_CONTINUATION && parts.length > 0) return this.#violation("interleaved message");
      if (h.opcode === OP_CONTINUATION && parts.length === 0) return this.#violation("stray continuation");
      if (h.opcode !== OP_CONTINUATION && h.opcode !== OP_TEXT) return this.#violation("binary message");
      parts.push(payload);
      size += payload.length;
      if (!h.fin) continue;
      const bytes = parts.length === 1 ? parts[0] : concat(parts, size);
      parts = [];
      size = 0;
      try {
        return utf8.decode(bytes);
      } catch {
        return this.#violation("a text message is not UTF-8", 1007);
      }
    }
  }

  async #payload(n: number): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (this.reader.size === 0 && (await this.reader.fill()) !== "data") return null;
      const src = this.reader.view().subarray(0, n - got);
      out.set(src, got);
      got += src.length;
      this.reader.consume(src.length);
    }
    return out;
  }

  #dropped(): null {
    this.#end(1006, "connection lost");
    return null;
  }

  #violation(reason: string, code = 1002): null {
    this.close(code, reason);
    this.#end(code, reason);
    return null;
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
