/**
 * The server side of one RFC 6455 WebSocket, with the browser `WebSocket` interface (open / message /
 * close events, send, close, readyState, bufferedAmount) so handlers use it like Deno's own.
 *
 * Limits: a message larger than `maxMessageBytes` is refused from its frame header, before its payload
 * is read (error message + close 1009, then the connection ends); invalid UTF-8 in a text message: error
 * message + close 1007; a protocol violation (unmasked frame, reserved bits, unknown opcode, bad control
 * frame, bad fragment order): close 1002. Every send goes through the connection's SendQueue; a send while
 * more than `maxSendBufferBytes` are queued ends the socket with one last error message and close 1008.
 * Once closing, the client's frames are read past (never buffered nor delivered) until its close frame.
 * The "error message" is the text the app's `errorMessage` builds (an OpenAI error event for the
 * gateway). Silence for `idleTimeoutMs`: a ping; as long again: close 1001. Data frames are read at most
 * at `readBytesPerSecond` (a token bucket of `readBurstBytes`; each frame costs at least
 * WS_MIN_FRAME_COST_BYTES): past it the socket is simply not read for a while, so a client that floods
 * costs the server a bounded share of its event loop, whatever it sends.
 */
import type { ConnReader } from "./conn_reader.ts";
import { CLOSE_TIMEOUT_MS, LINGER_MS, type WebSocketLimits, WS_MIN_FRAME_COST_BYTES } from "./limits.ts";
import { ReadBucket } from "./read_bucket.ts";
import { SafeEventTarget } from "./safe_event_target.ts";
import type { SendQueue } from "./send_queue.ts";
import {
  closePayload,
  frame,
  type FrameHeader,
  isControl,
  isKnownOpcode,
  isValidCloseCode,
  OP_BINARY,
  OP_CLOSE,
  OP_CONTINUATION,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  parseFrameHeader,
  textFrame,
  unmaskInto,
} from "./ws_frame.ts";

/** Client faults that end a socket with a last error message before the close frame. */
export type WsFault = "frame_too_large" | "invalid_utf8" | "send_buffer_full";
const FAULT_CLOSE: Record<WsFault, number> = {
  frame_too_large: 1009,
  invalid_utf8: 1007,
  send_buffer_full: 1008,
};

export interface WebSocketOptions extends WebSocketLimits {
  maxSendBufferBytes: number;
  /** The text message sent before closing for a client fault, or null for none. */
  errorMessage: (fault: WsFault, message: string) => string | null;
}

interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

interface Assembling {
  opcode: number;
  parts: Uint8Array[];
  size: number;
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// deno-lint-ignore no-explicit-any
type Handler<E> = ((this: WebSocket, ev: E) => any) | null;

export class ServerWebSocket extends SafeEventTarget implements WebSocket {
  readonly CONNECTING = CONNECTING;
  readonly OPEN = OPEN;
  readonly CLOSING = CLOSING;
  readonly CLOSED = CLOSED;
  readonly extensions = "";
  binaryType: BinaryType = "arraybuffer";
  onopen: Handler<Event> = null;
  onmessage: Handler<MessageEvent> = null;
  onclose: Handler<CloseEvent> = null;
  onerror: Handler<Event | ErrorEvent> = null;
  #state = CONNECTING;
  #conn: Deno.Conn | null = null;
  #reader: ConnReader | null = null;
  #queue: SendQueue | null = null;
  #closeSent = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #heard = false;
  #pinged = false;
  readonly #bucket: ReadBucket | null;

  constructor(readonly url: string, readonly protocol: string, readonly options: WebSocketOptions) {
    super();
    this.#bucket = options.readBytesPerSecond > 0
      ? new ReadBucket(options.readBytesPerSecond, options.readBurstBytes)
      : null;
  }

  get readyState(): number {
    return this.#state;
  }

  get bufferedAmount(): number {
    return this.#queue?.bufferedAmount ?? 0;
  }

  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#state === CONNECTING) {
      throw new DOMException("the WebSocket is not open yet", "InvalidStateError");
    }
    if (this.#state !== OPEN) return;
    if (this.bufferedAmount > this.options.maxSendBufferBytes) {
      this.#fault(
        "send_buffer_full",
        `the client is not reading: over ${this.options.maxSendBufferBytes} bytes wait to be sent`,
      );
      return;
    }
    if (typeof data === "string") this.#queue!.push(textFrame(data));
    else if (data instanceof Blob) throw new TypeError("sending a Blob is not supported");
    else if (ArrayBuffer.isView(data)) {
      this.#queue!.push(frame(OP_BINARY, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    } else this.#queue!.push(frame(OP_BINARY, new Uint8Array(data)));
  }

  /** Start the closing handshake (any code valid on the wire; the reason is cut to fit a frame). */
  close(code = 1000, reason = ""): void {
    if (code !== 1000 && !isValidCloseCode(code)) {
      throw new DOMException(`close code ${code} is not allowed`, "InvalidAccessError");
    }
    if (this.#state === CONNECTING) {
      this.#state = CLOSED; // never opened: the upgrade is abandoned
      return;
    }
    if (this.#state !== OPEN) return;
    this.#sendClose(code, reason);
  }

  /**
   * Take over the connection once the 101 head is queued: dispatch open, read frames until the socket
   * closes, dispatch close. Resolves when the connection is closed.
   */
  async run(conn: Deno.Conn, reader: ConnReader, queue: SendQueue): Promise<void> {
    if (this.#state !== CONNECTING) {
      conn.close();
      return;
    }
    this.#conn = conn;
    this.#reader = reader;
    this.#queue = queue;
    queue.onFail = () => this.#closeTcp();
    this.#state = OPEN;
    this.#armIdle();
    this.dispatchEvent(new Event("open"));
    let end: CloseInfo;
    try {
      end = await this.#readLoop();
    } catch (e) {
      console.error("sinkstream: websocket read loop failed:", e);
      end = { code: 1006, reason: "", wasClean: false };
    }
    this.#state = CLOSED;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#closeTimer);
    this.#closeTcp();
    this.dispatchEvent(new CloseEvent("close", end));
  }

  /** Queue our close frame (1005: an empty one); the connection is dropped if the peer takes too long. */
  #sendClose(code: number, reason: string): void {
    this.#state = CLOSING;
    this.#closeSent = true;
    this.#queue!.push(frame(OP_CLOSE, code === 1005 ? new Uint8Array(0) : closePayload(code, reason)));
    this.#closeTimer = setTimeout(() => this.#closeTcp(), CLOSE_TIMEOUT_MS);
  }

  /** A client fault: the app's last error message (past the send cap), then the close frame. */
  #fault(fault: WsFault, message: string): void {
    if (this.#state !== OPEN) return;
    const text = this.options.errorMessage(fault, message);
    if (text !== null) this.#queue!.push(textFrame(text));
    this.#sendClose(FAULT_CLOSE[fault], fault);
  }

  #closeTcp(): void {
    try {
      this.#conn?.close();
    } catch { /* already closed */ }
  }

  #armIdle(): void {
    this.#idleTimer = setTimeout(() => {
      if (this.#state !== OPEN) return;
      if (this.#heard) {
        this.#heard = false;
        this.#pinged = false;
      } else if (!this.#pinged) {
        this.#pinged = true;
        this.#queue!.push(frame(OP_PING, new Uint8Array(0)));
      } else {
        this.#sendClose(1001, "idle timeout");
        return;
      }
      this.#armIdle();
    }, this.options.idleTimeoutMs);
  }

  /** Frames until the socket ends; returns what the close event reports. */
  async #readLoop(): Promise<CloseInfo> {
    const reader = this.#reader!;
    let partial: Assembling | null = null;
    for (;;) {
      const h = parseFrameHeader(reader.view());
      if (h === null) {
        if ((await reader.fill()) !== "data") return this.#abnormal();
        continue;
      }
      this.#heard = true;
      const violation = this.#violation(h, partial);
      if (violation !== null) return await this.#failConnection(violation);
      reader.consume(h.size);
      if (h.opcode !== OP_CLOSE && this.#state !== OPEN) {
        // Closing: the client's data and pings are read past, never buffered.
        if (!(await this.#skip(h.length))) return this.#abnormal();
        continue;
      }
      if (!isControl(h.opcode) && (partial?.size ?? 0) + h.length > this.options.maxMessageBytes) {
        // The payload is never read: the stream is mid-frame from here on, so the connection ends.
        this.#fault("frame_too_large", `message exceeds the limit of ${this.options.maxMessageBytes} bytes`);
        return await this.#failConnection("message too large", 1009);
      }
      if (this.#bucket !== null && !isControl(h.opcode)) {
        await this.#bucket.take(Math.max(h.length, WS_MIN_FRAME_COST_BYTES));
      }
      const payload = await this.#payload(h);
      if (payload === null) return this.#abnormal();
      if (h.opcode === OP_CLOSE) return await this.#onPeerClose(payload);
      if (h.opcode === OP_PING) {
        this.#queue!.push(frame(OP_PONG, payload));
        continue;
      }
      if (h.opcode === OP_PONG) continue;
      partial ??= { opcode: h.opcode, parts: [], size: 0 };
      partial.parts.push(payload);
      partial.size += payload.length;
      if (!h.fin) continue;
      const message = partial;
      partial = null;
      this.#deliver(message);
    }
  }

  /** Why a frame breaks the protocol (RFC 6455 5.2-5.5), or null. */
  #violation(h: FrameHeader, partial: Assembling | null): string | null {
    if (!h.masked) return "client frames must be masked";
    if (h.rsv !== 0) return "reserved bits set (no extension was negotiated)";
    if (!isKnownOpcode(h.opcode)) return `unknown opcode ${h.opcode}`;
    if (isControl(h.opcode)) {
      if (!h.fin) return "fragmented control frame";
      if (h.length > 125) return "control frame longer than 125 bytes";
      return null;
    }
    if (h.opcode === OP_CONTINUATION && partial === null) return "continuation frame without a message";
    if (h.opcode !== OP_CONTINUATION && partial !== null) return "new message inside a fragmented one";
    return null;
  }

  /**
   * End a connection whose framing can no longer be followed (a protocol violation, an unread payload):
   * our close frame, flushed; then half-close and drop what the client still sends for a moment, so that
   * closing does not reset the connection before the client has read our last frames.
   */
  async #failConnection(reason: string, code = 1002): Promise<CloseInfo> {
    if (!this.#closeSent) this.#sendClose(code, reason);
    await this.#queue!.flushed();
    const reader = this.#reader!;
    try {
      await this.#conn!.closeWrite();
      const deadline = Date.now() + LINGER_MS;
      while ((await reader.fill(deadline)) === "data") reader.consume(reader.size);
    } catch { /* already closed */ }
    return { code, reason, wasClean: false };
  }

  #abnormal(): CloseInfo {
    return { code: 1006, reason: "", wasClean: false };
  }

  /** Read and unmask one frame's payload; null at end of stream. */
  async #payload(h: FrameHeader): Promise<Uint8Array | null> {
    const reader = this.#reader!;
    const out = new Uint8Array(h.length);
    let got = 0;
    while (got < h.length) {
      if (reader.size === 0 && (await reader.fill()) !== "data") return null;
      const src = reader.view().subarray(0, h.length - got);
      unmaskInto(out.subarray(got), src, h.mask, got);
      got += src.length;
      reader.consume(src.length);
    }
    return out;
  }

  /** Read past `n` payload bytes; false at end of stream. */
  async #skip(n: number): Promise<boolean> {
    const reader = this.#reader!;
    while (n > 0) {
      if (reader.size === 0 && (await reader.fill()) !== "data") return false;
      const k = Math.min(n, reader.size);
      reader.consume(k);
      n -= k;
    }
    return true;
  }

  #deliver(m: Assembling): void {
    let bytes = m.parts[0];
    if (m.parts.length > 1) {
      bytes = new Uint8Array(m.size);
      let at = 0;
      for (const p of m.parts) {
        bytes.set(p, at);
        at += p.length;
      }
    }
    let data: string | ArrayBuffer | Blob;
    if (m.opcode === OP_TEXT) {
      try {
        data = utf8.decode(bytes);
      } catch {
        this.#fault("invalid_utf8", "a text message is not valid UTF-8");
        return;
      }
    } else {
      const copy = bytes.buffer.byteLength === bytes.length
        ? bytes.buffer as ArrayBuffer
        : bytes.slice().buffer;
      data = this.binaryType === "blob" ? new Blob([copy]) : copy;
    }
    this.dispatchEvent(new MessageEvent("message", { data }));
  }

  /** The client's close frame: answer it (if we have not closed yet), flush, close TCP (server first). */
  async #onPeerClose(payload: Uint8Array): Promise<CloseInfo> {
    if (payload.length === 1) return await this.#failConnection("close frame with a 1-byte payload");
    const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005; // 1005: "no code"
    if (payload.length >= 2 && !isValidCloseCode(code)) {
      return await this.#failConnection(`close code ${code}`);
    }
    let reason: string;
    try {
      reason = utf8.decode(payload.subarray(2));
    } catch {
      return await this.#failConnection("close reason is not valid UTF-8", 1007);
    }
    if (!this.#closeSent) this.#sendClose(code, "");
    await this.#queue!.flushed();
    return { code, reason, wasClean: true };
  }
}
