/**
 * A small streaming safetensors writer: the header (tensor names, dtypes, shapes, byte
 * offsets) is written first, then each tensor's data is produced in chunks, so files far
 * larger than memory can be written.
 */
export type SafetensorsDtype = "F32" | "F16" | "BF16";

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export interface TensorSpec {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
}

export function tensorElements(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The header bytes (8-byte little-endian length + JSON padded with spaces to 8 bytes). */
export function safetensorsHeader(tensors: TensorSpec[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    const bytes = tensorElements(t.shape) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) {
    const p = new Uint8Array(json.length + pad).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** float32 -> IEEE half bits, round to nearest even (overflow -> inf, NaN kept quiet). */
export function f32ToF16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 | (man >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // underflows to zero (even after rounding)
    const m = man | 0x800000; // implicit bit
    const shift = 14 - e; // 24-bit mantissa -> subnormal 10-bit field
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // may carry into exponent (correct, up to inf)
  return sign | h;
}

/** IEEE half bits -> number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> number. */
export function bf16BitsToF32(h: number): number {
  u32buf[0] = (h & 0xffff) << 16;
  return f32buf[0];
}

/** Encode float32 values into the bytes of `dtype` (little-endian). */
export function encodeValues(values: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint16Array(values.length);
  if (dtype === "F16") { for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]); }
  else for (let i = 0; i < values.length; i++) out[i] = f32ToBf16Bits(values[i]);
  return new Uint8Array(out.buffer);
}

/** Write all of `data` (Deno's write may write less). */
export async function writeAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await f.write(data.subarray(off));
}

/**
 * Write a safetensors file. `fill(spec, offset, out)` fills `out` with the float32 values
 * of elements [offset, offset + out.length) of tensor `spec`; chunks hold at most
 * `chunkElements` values.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorSpec[],
  fill: (spec: TensorSpec, offset: number, out: Float32Array) => void,
  opts: { metadata?: Record<string, string>; chunkElements?: number } = {},
): Promise<number> {
  const chunk = opts.chunkElements ?? 1 << 20;
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  let total = 0;
  try {
    const header = safetensorsHeader(tensors, opts.metadata ?? { format: "pt" });
    await writeAll(f, header);
    total += header.length;
    const buf = new Float32Array(chunk);
    for (const t of tensors) {
      const n = tensorElements(t.shape);
      for (let off = 0; off < n; off += chunk) {
        const part = buf.subarray(0, Math.min(chunk, n - off));
        fill(t, off, part);
        const bytes = encodeValues(part, t.dtype);
        await writeAll(f, bytes);
        total += bytes.length;
      }
    }
  } finally {
    f.close();
  }
  return total;
}
