/**
 * A client at the byte level for the server layer: raw HTTP/1.1 requests (any head, well-formed or not)
 * and a WebSocket client that sends hand-made frames (unmasked, reserved bits, fragments, lying lengths)
 * and reads every server frame, close frames included, only when asked (so it can also never read).
 * Built on Deno.connect; nothing is answered automatically. Used by the server tests
 * (tests/gateway/server/_wire.ts re-exports it) and by the soak's hostile clients (bench/hostile/).
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

export interface Frame {
  fin: boolean;
  opcode: number;
  payload: Uint8Array;
}

/** A TCP connection with a read buffer. */
export class Wire {
  #buf = new Uint8Array(0);
  #chunk = new Uint8Array(64 * 1024);
  private constructor(readonly conn: Deno.TcpConn) {}

  static async connect(port: number): Promise<Wire> {
    return new Wire(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    for (let off = 0; off < bytes.length;) off += await this.conn.write(bytes.subarray(off));
  }

  /** Read more; false at end of stream (or a reset). */
  async fill(): Promise<boolean> {
    const n = await this.conn.read(this.#chunk).catch(() => null);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(this.#chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.subarray(n); // a view: reading many small frames copies each byte once
    return out;
  }

  async #need(n: number): Promise<void> {
    while (this.#buf.length < n) if (!(await this.fill())) throw new Error("connection closed");
  }

  async #line(): Promise<string> {
    for (;;) {
      const i = this.#buf.indexOf(10);
      if (i >= 0) return dec.decode(this.#take(i + 1)).replace(/\r?\n$/, "");
      if (!(await this.fill())) throw new Error("connection closed");
    }
  }

  /** One HTTP response: Content-Length, chunked, or (no framing) until the server closes. */
  async response(opts: { toHead?: boolean } = {}): Promise<HttpResponse> {
    const status = Number((await this.#line()).split(" ")[1]);
    const headers: Record<string, string> = {};
    for (let l = await this.#line(); l !== ""; l = await this.#line()) {
      const i = l.indexOf(":");
      const k = l.slice(0, i).toLowerCase();
      const v = l.slice(i + 1).trim();
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
    if (opts.toHead || status === 101 || status === 204 || status === 304 || status < 200) {
      return { status, headers, body: "" };
    }
    let body = "";
    if (headers["content-length"] !== undefined) {
      const n = Number(headers["content-length"]);
      await this.#need(n);
      body = dec.decode(this.#take(n));
    } else if (headers["transfer-encoding"] === "chunked") {
      for (;;) {
        const size = parseInt(await this.#line(), 16);
        await this.#need(size + 2);
        body += dec.decode(this.#take(size));
        this.#take(2);
        if (size === 0) break;
      }
    } else {
      while (await this.fill());
      body = dec.decode(this.#take(this.#buf.length));
    }
    return { status, headers, body };
  }

  /** Resolves once the server has closed the connection (bytes before that are dropped). */
  async closedByServer(): Promise<void> {
    while (await this.fill()) this.#buf = new Uint8Array(0);
  }

  /** The next WebSocket frame from the server, or null at end of stream. */
  async frame(): Promise<Frame | null> {
    for (;;) {
      const b = this.#buf;
      if (b.length >= 2) {
        let len = b[1] & 0x7f;
        let off = 2;
        if (len === 126 && b.length >= 4) [len, off] = [(b[2] << 8) | b[3], 4];
        else if (len === 127 && b.length >= 10) {
          [len, off] = [Number(new DataView(b.buffer, b.byteOffset).getBigUint64(2)), 10];
        }
        if ((len < 126 || off > 2) && b.length >= off + len) {
          this.#take(off);
          return { fin: (b[0] & 0x80) !== 0, opcode: b[0] & 0x0f, payload: this.#take(len) };
        }
      }
      if (!(await this.fill())) return null;
    }
  }

  /** Frames until the server's close frame: the text messages before it, its code and reason. */
  async untilClose(): Promise<{ texts: string[]; code: number | null; reason: string }> {
    const texts: string[] = [];
    for (let f = await this.frame(); f !== null; f = await this.frame()) {
      if (f.opcode === 0x1) texts.push(dec.decode(f.payload));
      if (f.opcode === 0x8) {
        const code = f.payload.length >= 2 ? (f.payload[0] << 8) | f.payload[1] : null;
        return { texts, code, reason: dec.decode(f.payload.subarray(2)) };
      }
    }
    return { texts, code: null, reason: "" };
  }

  /** The next text message, parsed as JSON (pings etc. skipped). */
  // deno-lint-ignore no-explicit-any
  async event(): Promise<Record<string, any>> {
    for (;;) {
      const f = await this.frame();
      if (f === null) throw new Error("connection closed");
      if (f.opcode === 0x8) {
        throw new Error(`server closed the websocket (${dec.decode(f.payload.subarray(2))})`);
      }
      if (f.opcode === 0x1) return JSON.parse(dec.decode(f.payload));
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/**
 * Read server frames for up to `ms` or until the close frame: how many text messages came, their payload
 * bytes, the last one, and the close code (1005 for a close frame without one; null when none came).
 */
export async function readToClose(wire: Wire, ms: number) {
  const seen = { texts: 0, bytes: 0, lastText: null as string | null, close: null as number | null };
  let last: Uint8Array | null = null;
  const reading = (async () => {
    for (let f = await wire.frame(); f !== null; f = await wire.frame()) {
      if (f.opcode === 0x1) {
        seen.texts++;
        seen.bytes += f.payload.length;
        last = f.payload;
      }
      if (f.opcode === 0x8) {
        seen.close = f.payload.length >= 2 ? (f.payload[0] << 8) | f.payload[1] : 1005;
        return;
      }
    }
  })();
  await mustSettle(reading, ms, "the close").catch(() => {}); // the caller closes the wire, ending the read
  if (last !== null) seen.lastText = dec.decode(last);
  return seen;
}

/** A fresh Sec-WebSocket-Key and the Sec-WebSocket-Accept the server must answer with. */
export function wsKey(): { key: string; accept: string } {
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
  const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  return { key, accept };
}

/**
 * Open a WebSocket by hand: `fields` are extra raw header lines (e.g. two Sec-WebSocket-Protocol lines).
 * Returns the handshake response and the connection (frames follow on it after a 101).
 */
export async function openWs(
  port: number,
  fields: string[] = [],
  path = "/v1/realtime",
): Promise<{ res: HttpResponse; wire: Wire; accept: string }> {
  const wire = await Wire.connect(port);
  const { key, accept } = wsKey();
  await wire.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${
        fields.map((f) => `${f}\r\n`).join("")
      }\r\n`,
  );
  return { res: await wire.response(), wire, accept };
}

export interface FrameSpec {
  opcode: number;
  payload?: Uint8Array | string;
  fin?: boolean;
  rsv?: number;
  masked?: boolean;
  /** Announce this payload length instead of the real one (the payload bytes sent stay as given). */
  length?: number;
}

/** A client frame, masked unless told otherwise. */
export function clientFrame(f: FrameSpec): Uint8Array {
  const payload = typeof f.payload === "string" ? enc.encode(f.payload) : f.payload ?? new Uint8Array(0);
  const n = f.length ?? payload.length;
  const masked = f.masked ?? true;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + (masked ? 4 : 0) + payload.length);
  out[0] = ((f.fin ?? true) ? 0x80 : 0) | ((f.rsv ?? 0) << 4) | f.opcode;
  const lenByte = n < 126 ? n : n < 65536 ? 126 : 127;
  out[1] = (masked ? 0x80 : 0) | lenByte;
  const dv = new DataView(out.buffer);
  if (lenByte === 126) dv.setUint16(2, n);
  if (lenByte === 127) dv.setBigUint64(2, BigInt(n));
  const mask = masked ? crypto.getRandomValues(new Uint8Array(4)) : new Uint8Array(4);
  if (masked) out.set(mask, head);
  const at = head + (masked ? 4 : 0);
  for (let i = 0; i < payload.length; i++) out[at + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** A masked text frame of a JSON event. */
export function eventFrame(event: unknown): Uint8Array {
  return clientFrame({ opcode: 0x1, payload: JSON.stringify(event) });
}

/** `p`, or a rejection after `ms`: a server that never answers fails the test instead of hanging it. */
export async function mustSettle<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
