/**
 * A streaming GGUF v3 writer: the header, the metadata pairs, the tensor infos, then each tensor's
 * data produced in chunks of rows (so files far larger than memory can be written), every tensor
 * aligned to `alignment` bytes (general.alignment, default 32, as llama.cpp writes).
 */
import type { WeightDtype } from "../../runtime/types.ts";
import { writeAll } from "./safetensors.ts";

const GGUF_MAGIC = 0x46554747;
const GGUF_VERSION = 3;

/** ggml tensor type ids of the weight types (ggml.h: GGML_TYPE_*). */
export const GGML_TYPE: Record<WeightDtype, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 8, bf16: 30 };

/** GGUF metadata value types used here. */
const T = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

/** One metadata pair. Strings may be given as raw UTF-8 bytes. */
export type GgufKv =
  | { key: string; type: "u32" | "i32" | "f32"; value: number }
  | { key: string; type: "bool"; value: boolean }
  | { key: string; type: "string"; value: string | Uint8Array }
  | { key: string; type: "array"; elem: "f32" | "i32"; value: ArrayLike<number> }
  | { key: string; type: "array"; elem: "string"; value: (string | Uint8Array)[] };

export interface GgufTensor {
  name: string;
  dtype: WeightDtype;
  /** GGUF dimensions: ne[0] elements per row (the fastest), then rows; [n] for a vector. */
  ne: number[];
  rowBytes: number;
}

/** Rows [row0, row0 + n) of tensor `index`, written into dst (n * rowBytes bytes). */
export type GgufFill = (tensor: GgufTensor, index: number, row0: number, n: number, dst: Uint8Array) => void;

class ByteWriter {
  #parts: Uint8Array[] = [];
  #enc = new TextEncoder();
  length = 0;
  #push(b: Uint8Array) {
    this.#parts.push(b);
    this.length += b.length;
  }
  u32(v: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.#push(b);
  }
  i32(v: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    this.#push(b);
  }
  f32(v: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.#push(b);
  }
  u64(v: number | bigint) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.#push(b);
  }
  u8(v: number) {
    this.#push(Uint8Array.of(v));
  }
  string(s: string | Uint8Array) {
    const b = typeof s === "string" ? this.#enc.encode(s) : s;
    this.u64(b.length);
    this.#push(b);
  }
  pad(alignment: number) {
    const n = (alignment - (this.length % alignment)) % alignment;
    if (n) this.#push(new Uint8Array(n));
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const p of this.#parts) out.set(p, off), off += p.length;
    return out;
  }
}

function writeKv(w: ByteWriter, kv: GgufKv): void {
  w.string(kv.key);
  w.u32(T[kv.type]);
  switch (kv.type) {
    case "u32":
      return w.u32(kv.value);
    case "i32":
      return w.i32(kv.value);
    case "f32":
      return w.f32(kv.value);
    case "bool":
      return w.u8(kv.value ? 1 : 0);
    case "string":
      return w.string(kv.value);
    case "array": {
      w.u32(T[kv.elem]);
      w.u64(kv.value.length);
      if (kv.elem === "string") { for (const s of kv.value as (string | Uint8Array)[]) w.string(s); }
      else if (kv.elem === "f32") {
        for (let i = 0; i < kv.value.length; i++) w.f32((kv.value as ArrayLike<number>)[i]);
      } else for (let i = 0; i < kv.value.length; i++) w.i32((kv.value as ArrayLike<number>)[i]);
    }
  }
}

function tensorBytes(t: GgufTensor): number {
  return t.rowBytes * t.ne.slice(1).reduce((a, b) => a * b, 1);
}

/** Write a GGUF file; returns its size in bytes. */
export async function writeGguf(
  path: string,
  kv: GgufKv[],
  tensors: GgufTensor[],
  fill: GgufFill,
  opts: { alignment?: number; chunkBytes?: number } = {},
): Promise<number> {
  const alignment = opts.alignment ?? 32;
  const chunkBytes = opts.chunkBytes ?? 16 << 20;
  const head = new ByteWriter();
  head.u32(GGUF_MAGIC);
  head.u32(GGUF_VERSION);
  head.u64(tensors.length);
  const meta = alignment === 32
    ? kv
    : [...kv, { key: "general.alignment", type: "u32" as const, value: alignment }];
  head.u64(meta.length);
  for (const e of meta) writeKv(head, e);
  let offset = 0;
  for (const t of tensors) {
    head.string(t.name);
    head.u32(t.ne.length);
    for (const d of t.ne) head.u64(d);
    head.u32(GGML_TYPE[t.dtype]);
    head.u64(offset);
    offset += Math.ceil(tensorBytes(t) / alignment) * alignment;
  }
  head.pad(alignment);
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  let total = 0;
  try {
    const h = head.bytes();
    await writeAll(f, h);
    total += h.length;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      const rows = t.ne.slice(1).reduce((a, b) => a * b, 1);
      const per = Math.max(1, Math.floor(chunkBytes / t.rowBytes));
      const buf = new Uint8Array(Math.min(rows, per) * t.rowBytes);
      for (let r0 = 0; r0 < rows; r0 += per) {
        const n = Math.min(per, rows - r0);
        const part = buf.subarray(0, n * t.rowBytes);
        fill(t, i, r0, n, part);
        await writeAll(f, part);
        total += part.length;
      }
      const pad = (alignment - (tensorBytes(t) % alignment)) % alignment;
      if (pad) {
        await writeAll(f, new Uint8Array(pad));
        total += pad;
      }
    }
  } finally {
    f.close();
  }
  return total;
}
