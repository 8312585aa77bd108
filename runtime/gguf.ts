/**
 * GGUF metadata (the key-value section of a GGUF v2/v3 file), read without the tensor data: what the
 * TypeScript side needs of a GGUF model (its tokenizer, tokenizer.ggml.*, and chat template). The
 * tensors are the C loader's (csrc/src/load_gguf.c). Every length is checked against the bytes read;
 * a malformed file is a ModelFormatError naming the file and the problem.
 */
import { ModelFormatError } from "./errors.ts";

/** GGUF metadata value types. */
export const GGUF_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufScalar[];

/** The metadata of a GGUF file: key -> value (arrays as JS arrays; 64-bit integers as bigint). */
export interface GgufMetadata {
  version: number;
  nTensors: bigint;
  kv: Map<string, GgufValue>;
}

const SCALAR_BYTES: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

class Truncated extends Error {}

/** A little-endian reader over bytes that may be a prefix of the file (Truncated when it runs out). */
class Reader {
  off = 0;
  readonly #view: DataView;
  readonly #dec = new TextDecoder();
  constructor(readonly bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  #need(n: number): number {
    if (n > this.bytes.length - this.off) throw new Truncated();
    const at = this.off;
    this.off += n;
    return at;
  }
  u32(): number {
    return this.#view.getUint32(this.#need(4), true);
  }
  u64(): bigint {
    return this.#view.getBigUint64(this.#need(8), true);
  }
  string(): string {
    const n = this.u64();
    if (n > BigInt(this.bytes.length)) throw new Truncated();
    const at = this.#need(Number(n));
    return this.#dec.decode(this.bytes.subarray(at, at + Number(n)));
  }
  scalar(type: number): GgufScalar {
    if (type === GGUF_TYPE.string) return this.string();
    const size = SCALAR_BYTES[type];
    if (size === undefined) throw new TypeError(`unknown value type ${type}`);
    const at = this.#need(size);
    const v = this.#view;
    switch (type) {
      case GGUF_TYPE.u8:
        return v.getUint8(at);
      case GGUF_TYPE.i8:
        return v.getInt8(at);
      case GGUF_TYPE.u16:
        return v.getUint16(at, true);
      case GGUF_TYPE.i16:
        return v.getInt16(at, true);
      case GGUF_TYPE.u32:
        return v.getUint32(at, true);
      case GGUF_TYPE.i32:
        return v.getInt32(at, true);
      case GGUF_TYPE.f32:
        return v.getFloat32(at, true);
      case GGUF_TYPE.bool:
        return v.getUint8(at) !== 0;
      case GGUF_TYPE.u64:
        return v.getBigUint64(at, true);
      case GGUF_TYPE.i64:
        return v.getBigInt64(at, true);
      default:
        return v.getFloat64(at, true);
    }
  }
}

/** Parse the metadata from `bytes` (the file or a prefix of it); null when the prefix is too short. */
export function parseGgufMetadata(bytes: Uint8Array, source: string): GgufMetadata | null {
  const r = new Reader(bytes);
  try {
    if (bytes.length >= 4 && r.u32() !== GGUF_MAGIC) {
      throw new ModelFormatError(`${source}: not a GGUF file (no 'GGUF' magic)`);
    }
    const version = r.u32();
    if (version !== 2 && version !== 3) {
      throw new ModelFormatError(`${source}: GGUF version ${version} is not supported (2 or 3)`);
    }
    const nTensors = r.u64();
    const nKv = r.u64();
    if (nKv > BigInt(1 << 24)) throw new ModelFormatError(`${source}: GGUF: ${nKv} metadata pairs`);
    const kv = new Map<string, GgufValue>();
    for (let i = 0n; i < nKv; i++) {
      const key = r.string();
      const type = r.u32();
      try {
        if (type === GGUF_TYPE.array) {
          const et = r.u32();
          const n = r.u64();
          if (et === GGUF_TYPE.array) throw new TypeError("nested arrays are not supported");
          if (n > BigInt(bytes.length)) throw new Truncated();
          const out: GgufScalar[] = new Array(Number(n));
          for (let k = 0; k < out.length; k++) out[k] = r.scalar(et);
          kv.set(key, out);
        } else {
          kv.set(key, r.scalar(type));
        }
      } catch (e) {
        if (e instanceof TypeError) {
          throw new ModelFormatError(`${source}: GGUF metadata '${key}': ${e.message}`);
        }
        throw e;
      }
    }
    return { version, nTensors, kv };
  } catch (e) {
    if (e instanceof Truncated) return null;
    throw e;
  }
}

/** Read a GGUF file's metadata, reading only as much of the file as the metadata takes. */
export async function readGgufMetadata(path: string): Promise<GgufMetadata> {
  using f = await Deno.open(path);
  const size = (await f.stat()).size;
  let want = Math.min(size, 1 << 22);
  let buf = new Uint8Array(0);
  for (;;) {
    if (want > buf.length) {
      const next = new Uint8Array(want);
      next.set(buf);
      let n = buf.length;
      await f.seek(n, Deno.SeekMode.Start);
      while (n < want) {
        const r = await f.read(next.subarray(n));
        if (r === null) break;
        n += r;
      }
      buf = next.subarray(0, n);
    }
    const meta = parseGgufMetadata(buf, path);
    if (meta) return meta;
    if (buf.length >= size) {
      throw new ModelFormatError(`${path}: GGUF: the metadata runs past the end of the file`);
    }
    want = Math.min(size, want * 4);
  }
}

/** Whether a file starts with the GGUF magic. */
export async function isGgufFile(path: string): Promise<boolean> {
  try {
    using f = await Deno.open(path);
    const b = new Uint8Array(4);
    let n = 0;
    while (n < 4) {
      const r = await f.read(b.subarray(n));
      if (r === null) break;
      n += r;
    }
    return n === 4 && new DataView(b.buffer).getUint32(0, true) === GGUF_MAGIC;
  } catch {
    return false;
  }
}
