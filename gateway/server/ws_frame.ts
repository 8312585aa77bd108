/**
 * RFC 6455 framing (section 5): frame headers read from client bytes, and server frames (never masked)
 * built for the send queue; client frames (masked) for the edge's upstream sockets. No I/O here.
 */

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

export interface FrameHeader {
  fin: boolean;
  /** The three reserved bits (must be 0: we negotiate no extension). */
  rsv: number;
  opcode: number;
  masked: boolean;
  /** Payload bytes (a 64-bit length may exceed 2^53: only compared against limits). */
  length: number;
  /** The masking key, big-endian in one number. */
  mask: number;
  /** Bytes of the header itself (2 to 14). */
  size: number;
}

/** The header at the start of `b`, or null while it is incomplete. */
export function parseFrameHeader(b: Uint8Array): FrameHeader | null {
  if (b.length < 2) return null;
  const masked = (b[1] & 0x80) !== 0;
  let length = b[1] & 0x7f;
  let size = 2;
  if (length === 126) {
    if (b.length < 4) return null;
    length = (b[2] << 8) | b[3];
    size = 4;
  } else if (length === 127) {
    if (b.length < 10) return null;
    const dv = new DataView(b.buffer, b.byteOffset, 10);
    length = dv.getUint32(2) * 2 ** 32 + dv.getUint32(6);
    size = 10;
  }
  let mask = 0;
  if (masked) {
    if (b.length < size + 4) return null;
    mask = new DataView(b.buffer, b.byteOffset + size, 4).getUint32(0);
    size += 4;
  }
  return {
    fin: (b[0] & 0x80) !== 0,
    rsv: (b[0] >> 4) & 0x7,
    opcode: b[0] & 0x0f,
    masked,
    length,
    mask,
    size,
  };
}

export function isControl(opcode: number): boolean {
  return opcode >= 0x8;
}

export function isKnownOpcode(opcode: number): boolean {
  return opcode <= OP_BINARY || (opcode >= OP_CLOSE && opcode <= OP_PONG);
}

/** XOR `src` with the mask into `dst`; `offset` is how many payload bytes of this frame came before. */
export function unmaskInto(dst: Uint8Array, src: Uint8Array, mask: number, offset: number): void {
  const key = [mask >>> 24, (mask >>> 16) & 0xff, (mask >>> 8) & 0xff, mask & 0xff];
  for (let i = 0; i < src.length; i++) dst[i] = src[i] ^ key[(offset + i) & 3];
}

/** Close codes a peer may send (RFC 6455 7.4; 1004-1006 and 1015 never appear on the wire). */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

function headerSize(n: number): number {
  return n < 126 ? 2 : n < 65536 ? 4 : 10;
}

function writeHeader(out: Uint8Array, at: number, opcode: number, n: number): void {
  out[at] = 0x80 | opcode;
  if (n < 126) out[at + 1] = n;
  else if (n < 65536) {
    out[at + 1] = 126;
    out[at + 2] = n >> 8;
    out[at + 3] = n & 0xff;
  } else {
    out[at + 1] = 127;
    const dv = new DataView(out.buffer, out.byteOffset + at + 2, 8);
    dv.setUint32(0, Math.floor(n / 2 ** 32));
    dv.setUint32(4, n >>> 0);
  }
}

/** One unfragmented server frame holding a copy of `payload`. */
export function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const h = headerSize(payload.length);
  const out = new Uint8Array(h + payload.length);
  writeHeader(out, 0, opcode, payload.length);
  out.set(payload, h);
  return out;
}

const encoder = new TextEncoder();

/** Bytes of `text` in UTF-8 (lone surrogates count as U+FFFD, as TextEncoder writes them). */
function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 4 bytes for 2 units
      i++;
    } else n += 2;
  }
  return n;
}

/** A text frame in one allocation of exactly its size: queued frames cost what `bufferedAmount` says. */
export function textFrame(text: string): Uint8Array {
  const n = utf8Length(text);
  const h = headerSize(n);
  const out = new Uint8Array(h + n);
  writeHeader(out, 0, OP_TEXT, n);
  encoder.encodeInto(text, out.subarray(h));
  return out;
}

/** A close frame's payload: the code, then the reason cut to fit a control frame (125 bytes). */
export function closePayload(code: number, reason: string): Uint8Array {
  const r = encoder.encode(reason);
  let n = Math.min(r.length, 123);
  while (n > 0 && n < r.length && (r[n] & 0xc0) === 0x80) n--; // do not cut a UTF-8 sequence
  const out = new Uint8Array(2 + n);
  out[0] = code >> 8;
  out[1] = code & 0xff;
  out.set(r.subarray(0, n), 2);
  return out;
}

/** One unfragmented client frame: `payload` masked with a random key (RFC 6455 5.3). */
export function maskedFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const h = headerSize(payload.length);
  const out = new Uint8Array(h + 4 + payload.length);
  writeHeader(out, 0, opcode, payload.length);
  out[1] |= 0x80;
  const key = crypto.getRandomValues(new Uint8Array(4));
  out.set(key, h);
  const body = h + 4;
  for (let i = 0; i < payload.length; i++) out[body + i] = payload[i] ^ key[i & 3];
  return out;
}

/** A masked client text frame. */
export function maskedTextFrame(text: string): Uint8Array {
  return maskedFrame(OP_TEXT, encoder.encode(text));
}
