/**
 * A hand-written WebSocket client over Deno.connect (RFC 6455: handshake, masked client frames,
 * frame parsing) that reads its TCP socket only when asked. Unlike the WebSocket API it can stop
 * reading, so the server's writes pile up in the kernel buffers and then in the server — a real
 * slow client for backpressure tests.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface RawFrame {
  opcode: number;
  payload: Uint8Array;
}

export class RawWsClient {
  #buf = new Uint8Array(0);
  #chunk = new Uint8Array(256 * 1024);
  /** Bytes read from the socket so far (headers included). */
  bytesRead = 0;
  private constructor(readonly conn: Deno.TcpConn) {}

  static async connect(url: string, protocols: string[] = ["realtime"]): Promise<RawWsClient> {
    const u = new URL(url);
    const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
    const c = new RawWsClient(conn);
    const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
    const req = `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      (protocols.length ? `Sec-WebSocket-Protocol: ${protocols.join(", ")}\r\n` : "") + "\r\n";
    await c.#writeAll(enc.encode(req));
    let end = -1;
    while ((end = c.#indexOfHeaderEnd()) < 0) await c.#fill();
    const head = dec.decode(c.#buf.subarray(0, end));
    c.#buf = c.#buf.slice(end + 4);
    const [status, ...lines] = head.split("\r\n");
    if (!/^HTTP\/1\.1 101 /.test(status)) throw new Error(`handshake failed: ${status}`);
    const accept = lines.find((l) => l.toLowerCase().startsWith("sec-websocket-accept:"))?.split(":")[1]
      ?.trim();
    const want = createHash("sha1").update(key + GUID).digest("base64");
    if (accept !== want) throw new Error(`bad Sec-WebSocket-Accept ${accept}`);
    return c;
  }

  #indexOfHeaderEnd(): number {
    const b = this.#buf;
    for (let i = 0; i + 3 < b.length; i++) {
      if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
    }
    return -1;
  }

  async #fill(): Promise<void> {
    const n = await this.conn.read(this.#chunk);
    if (n === null) throw new Error("connection closed");
    this.bytesRead += n;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(this.#chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) off += await this.conn.write(data.subarray(off));
  }

  /** Send one masked text frame. */
  async sendText(text: string): Promise<void> {
    const payload = enc.encode(text);
    const n = payload.length;
    const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
    const frame = new Uint8Array(head + 4 + n);
    frame[0] = 0x81; // FIN + text
    if (n < 126) frame[1] = 0x80 | n;
    else if (n < 65536) {
      frame[1] = 0x80 | 126;
      new DataView(frame.buffer).setUint16(2, n);
    } else {
      frame[1] = 0x80 | 127;
      new DataView(frame.buffer).setBigUint64(2, BigInt(n));
    }
    const mask = crypto.getRandomValues(new Uint8Array(4));
    frame.set(mask, head);
    for (let i = 0; i < n; i++) frame[head + 4 + i] = payload[i] ^ mask[i & 3];
    await this.#writeAll(frame);
  }

  send(event: unknown): Promise<void> {
    return this.sendText(JSON.stringify(event));
  }

  /** A complete frame from what was read so far, or null. */
  #parse(): RawFrame | null {
    const b = this.#buf;
    if (b.length < 2) return null;
    let len = b[1] & 0x7f;
    let off = 2;
    if (len === 126) {
      if (b.length < 4) return null;
      len = (b[2] << 8) | b[3];
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return null;
      len = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(2));
      off = 10;
    }
    if (b[1] & 0x80) off += 4; // servers do not mask; tolerate it anyway
    if (b.length < off + len) return null;
    const frame = { opcode: b[0] & 0x0f, payload: b.slice(off, off + len) };
    this.#buf = b.slice(off + len);
    return frame;
  }

  /** Read (from the socket if needed) until the next text message; answers pings. */
  async nextText(): Promise<string> {
    let parts: Uint8Array[] = [];
    for (;;) {
      const f = this.#parse();
      if (f === null) {
        await this.#fill();
        continue;
      }
      if (f.opcode === 0x9) {
        await this.#control(0xa, f.payload);
        continue;
      }
      if (f.opcode === 0x8) throw new Error("server closed the websocket");
      if (f.opcode === 0x1 || f.opcode === 0x0) {
        parts.push(f.payload);
        if (f.opcode === 0x1 || parts.length > 0) {
          // Unfragmented text (the gateway never fragments); join continuation frames just in case.
          const total = parts.reduce((a, p) => a + p.length, 0);
          const all = new Uint8Array(total);
          let o = 0;
          for (const p of parts) {
            all.set(p, o);
            o += p.length;
          }
          parts = [];
          return dec.decode(all);
        }
      }
    }
  }

  // deno-lint-ignore no-explicit-any
  async nextEvent(): Promise<Record<string, any>> {
    return JSON.parse(await this.nextText());
  }

  /** Read events until one of `type` arrives. */
  // deno-lint-ignore no-explicit-any
  async until(type: string): Promise<Record<string, any>> {
    for (;;) {
      const e = await this.nextEvent();
      if (e.type === type) return e;
    }
  }

  async #control(opcode: number, payload: Uint8Array): Promise<void> {
    const frame = new Uint8Array(2 + 4 + payload.length);
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | payload.length;
    frame.set(payload, 6); // zero mask
    await this.#writeAll(frame);
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}
