/**
 * FFI binding of csrc/include/sinkstream.h. The only module that calls Deno.dlopen, and the one place
 * on the TypeScript side that describes the C ABI: struct layouts (field name -> offset and type) and
 * enum values are named once here and checked, when the library is opened, against the table the
 * library exports (ss_abi_layout, generated with sizeof / offsetof in csrc/src/abi_layout.c).
 * Other modules read and write native structs by field name through NativeStruct.
 *
 * Library path: env SINKSTREAM_LIB, else the repo build chosen by ensureNativeLibrary():
 * <repo>/csrc/build/libsinkstream.so (CPU only, `make -C csrc`) or, for the CUDA backend,
 * <repo>/csrc/build/cuda/libsinkstream.so (`make -C csrc cuda-check`, CPU + CUDA backends).
 * Compute calls (model load, engine create, engine step) are `nonblocking`: they run on a Deno worker
 * thread and return promises, so their messages cannot come from the thread-local ss_last_error():
 * a step's from ss_engine_last_error / ss_engine_item_error (the engine's own slots), a model load's
 * or engine create's from an error buffer the binding passes (errorBuffer / bufferMessage).
 */
import { fileURLToPath } from "node:url";
import { errorFromStatus, InvalidArgumentError, NativeLibraryError, type SinkstreamError } from "./errors.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const CSRC_DIR = fileURLToPath(new URL("../csrc", import.meta.url));
const DEFAULT_LIB = fileURLToPath(new URL("../csrc/build/libsinkstream.so", import.meta.url));
/** The library with the CUDA backend compiled in (it also has the CPU backend). */
export const CUDA_LIB: string = fileURLToPath(
  new URL("../csrc/build/cuda/libsinkstream.so", import.meta.url),
);
const KERNELS_DIR = fileURLToPath(new URL("../kernels", import.meta.url));

// ---- the ABI, described once ------------------------------------------------

/** C types of struct fields: int32_t, float, int64_t, uint64_t, a pointer. */
export type FieldType = "i32" | "f32" | "i64" | "u64" | "pointer";
const TYPE_SIZE: Record<FieldType, number> = { i32: 4, f32: 4, i64: 8, u64: 8, pointer: 8 };

/** One field: byte offset, C type and (for arrays) element count. */
export interface FieldLayout {
  readonly offset: number;
  readonly type: FieldType;
  readonly count: number;
}

/** A C struct: its name in sinkstream.h, its size, every field by its C name. */
export interface StructLayout<F extends string> {
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<F, FieldLayout>>;
}

function struct<F extends string>(
  name: string,
  size: number,
  fields: Record<F, readonly [number, FieldType] | readonly [number, FieldType, number]>,
): StructLayout<F> {
  const out = {} as Record<F, FieldLayout>;
  for (const f of Object.keys(fields) as F[]) {
    const [offset, type, count = 1] = fields[f];
    out[f] = { offset, type, count };
  }
  return { name, size, fields: out };
}

export const MODEL_PARAMS = struct("ss_model_params", 32, {
  use_mmap: [0, "i32"],
  weights: [4, "i32"],
  reserved: [8, "i32", 6],
});
export const MODEL_INFO = struct("ss_model_info", 80, {
  arch: [0, "i32"],
  dim: [4, "i32"],
  hidden_dim: [8, "i32"],
  n_layers: [12, "i32"],
  n_heads: [16, "i32"],
  n_kv_heads: [20, "i32"],
  head_dim: [24, "i32"],
  vocab_size: [28, "i32"],
  max_seq_len: [32, "i32"],
  bos_token_id: [36, "i32"],
  eos_token_id: [40, "i32"],
  source_dtype: [44, "i32"],
  rope_theta: [48, "f32"],
  rms_norm_eps: [52, "f32"],
  n_params: [56, "i64"],
  format: [64, "i32"],
  weight_dtype: [68, "i32"],
  weight_bytes: [72, "i64"],
});
export const ENGINE_PARAMS = struct("ss_engine_params", 32, {
  backend: [0, "i32"],
  n_threads: [4, "i32"],
  max_sequences: [8, "i32"],
  max_batch_tokens: [12, "i32"],
  device: [16, "i32"],
  kv_dtype: [20, "i32"],
  reserved: [24, "i32", 2],
});
export const SEQ_PARAMS = struct("ss_seq_params", 32, {
  policy: [0, "i32"],
  n_sinks: [4, "i32"],
  capacity: [8, "i32"],
  temperature: [12, "f32"],
  top_k: [16, "i32"],
  top_p: [20, "f32"],
  seed: [24, "u64"],
});
export const SEQ_STATS = struct("ss_seq_stats", 40, {
  n_cached: [0, "i32"],
  n_sinks: [4, "i32"],
  capacity: [8, "i32"],
  policy: [12, "i32"],
  n_seen: [16, "i64"],
  n_evicted: [24, "i64"],
  cache_bytes: [32, "i64"],
});
export const SEQ_LIMITS = struct("ss_seq_limits", 32, {
  min_capacity: [0, "i32"],
  max_capacity: [4, "i32"],
  default_capacity: [8, "i32"],
  max_top_k: [12, "i32"],
  reserved: [16, "i32", 4],
});
/** ss_tensor_info: name is a char[64] (read as bytes), ne an int64_t[2]. */
export const TENSOR_INFO = struct("ss_tensor_info", 96, {
  name: [0, "i64", 8],
  dtype: [64, "i32"],
  n_dims: [68, "i32"],
  ne: [72, "i64", 2],
  row_bytes: [88, "i64"],
});
const ABI_ENTRY = struct("ss_abi_entry", 24, { name: [0, "pointer"], value: [8, "i64"], size: [16, "i64"] });
const STRUCTS: StructLayout<string>[] = [
  MODEL_PARAMS,
  MODEL_INFO,
  ENGINE_PARAMS,
  SEQ_PARAMS,
  SEQ_STATS,
  SEQ_LIMITS,
  TENSOR_INFO,
  ABI_ENTRY,
];

/** A C enum (or flag set): its constants are `${prefix}${NAME}` with these values. */
export interface NativeEnum<K extends string> {
  readonly prefix: string;
  readonly values: Readonly<Record<K, number>>;
}

export const ARCH: NativeEnum<"llama" | "mistral" | "qwen2"> = {
  prefix: "SS_ARCH_",
  values: { llama: 0, mistral: 1, qwen2: 2 },
};
export const DTYPE: NativeEnum<"f32" | "f16" | "bf16" | "q8_0" | "q4_0"> = {
  prefix: "SS_DTYPE_",
  values: { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4 },
};
export const FORMAT: NativeEnum<"hf" | "llama2c" | "gguf"> = {
  prefix: "SS_FORMAT_",
  values: { hf: 0, llama2c: 1, gguf: 2 },
};
export const BACKEND: NativeEnum<"cpu" | "cuda"> = { prefix: "SS_BACKEND_", values: { cpu: 0, cuda: 1 } };
export const POLICY: NativeEnum<"streaming" | "window" | "dense"> = {
  prefix: "SS_POLICY_",
  values: { streaming: 0, window: 1, dense: 2 },
};
export const STEP_FLAG: NativeEnum<"sample" | "logits" | "mask"> = {
  prefix: "SS_STEP_",
  values: { sample: 1, logits: 2, mask: 4 },
};
const ENUMS: NativeEnum<string>[] = [ARCH, DTYPE, FORMAT, BACKEND, POLICY, STEP_FLAG];

/** 32-bit words of one token mask row for a vocabulary of `vocab` tokens (SS_MASK_WORDS). */
export function maskWords(vocab: number): number {
  return Math.ceil(vocab / 32);
}

/** Other constants of sinkstream.h the binding relies on. */
export const ABI_VERSION = 4;
/** Bytes of the error buffers passed to ss_model_load / ss_engine_create (SS_ERROR_MAX). */
export const ERROR_MAX = 1024;
/** ss_model_params.weights: keep each tensor in the file's type. */
export const WEIGHTS_AS_FILE = -1;
/** ss_engine_params.kv_dtype: the backend's default cache type. */
export const KV_DTYPE_DEFAULT = -1;
const CONSTANTS: Record<string, number> = {
  SS_ABI_VERSION: ABI_VERSION,
  SS_ERROR_MAX: ERROR_MAX,
  SS_OK: 0,
  SS_WEIGHTS_AS_FILE: WEIGHTS_AS_FILE,
  SS_KV_DTYPE_DEFAULT: KV_DTYPE_DEFAULT,
};

/** The name of an enum value (undefined for a value the binding does not know). */
export function enumName<K extends string>(e: NativeEnum<K>, value: number): K | undefined {
  for (const k of Object.keys(e.values) as K[]) if (e.values[k] === value) return k;
  return undefined;
}

/** The value of an enum name; InvalidArgumentError naming `label` for a name the enum does not have. */
export function enumValue<K extends string>(e: NativeEnum<K>, name: string, label: string): number {
  if (Object.hasOwn(e.values, name)) return e.values[name as K];
  const known = Object.keys(e.values).join(", ");
  throw new InvalidArgumentError(`unknown ${label} "${name}" (expected ${known})`, { field: label });
}

/** The Deno FFI descriptor of a struct passed or returned by value (every field, in order). */
function ffiStruct(l: StructLayout<string>): Deno.NativeStructType {
  const fields = Object.values(l.fields).sort((a, b) => a.offset - b.offset);
  const types: Deno.NativeType[] = [];
  for (const f of fields) for (let k = 0; k < f.count; k++) types.push(f.type);
  return { struct: types };
}

const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * `v` as an int32_t, or an InvalidArgumentError naming `label` when it cannot be represented (not an
 * integer, or outside the C int32 range). The engine's own rules (bounds, meaning) are not checked here.
 */
export function int32(label: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
    throw new InvalidArgumentError(
      `${label} must be an integer in [${INT32_MIN}, ${INT32_MAX}] (a C int32), got ${String(v)}`,
      { field: label },
    );
  }
  return v;
}

function float32(label: string, v: unknown): number {
  // NaN and +-Infinity are passed on: they are floats, and the engine says what it accepts.
  if (typeof v !== "number" || (Number.isFinite(v) && Math.abs(v) > FLOAT32_MAX)) {
    throw new InvalidArgumentError(`${label} must be a number a C float can hold, got ${String(v)}`, {
      field: label,
    });
  }
  return v;
}

/** A 64-bit value as uint64_t: integers in [-2^63, 2^64) (negative ones as two's complement). */
function uint64(label: string, v: unknown): bigint {
  let b: bigint | null = null;
  if (typeof v === "bigint") b = v;
  else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
  if (b === null || b < -(1n << 63n) || b >= 1n << 64n) {
    throw new InvalidArgumentError(`${label} must be a 64-bit integer, got ${String(v)}`, { field: label });
  }
  return BigInt.asUintN(64, b);
}

/** A native struct in a buffer, read and written by field name (representability checked on write). */
export class NativeStruct<F extends string> {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  constructor(readonly layout: StructLayout<F>, bytes?: Uint8Array<ArrayBuffer>) {
    this.bytes = bytes ?? new Uint8Array(layout.size);
    if (this.bytes.length !== layout.size) {
      throw new NativeLibraryError(`${layout.name}: ${this.bytes.length} bytes, the ABI says ${layout.size}`);
    }
    this.#view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  /** A field as a number (64-bit integers converted with Number). */
  get(field: F): number {
    const { offset, type } = this.layout.fields[field];
    const v = this.#view;
    switch (type) {
      case "i32":
        return v.getInt32(offset, true);
      case "f32":
        return v.getFloat32(offset, true);
      case "i64":
        return Number(v.getBigInt64(offset, true));
      case "u64":
        return Number(v.getBigUint64(offset, true));
      case "pointer":
        throw new NativeLibraryError(`${this.layout.name}.${field} is a pointer`);
    }
  }

  /**
   * Write a field. A value the C type cannot represent is an InvalidArgumentError naming `label`
   * (default: the C field name), so callers can name the option their user gave.
   */
  set(field: F, value: number | bigint, label: string = field): void {
    const { offset, type } = this.layout.fields[field];
    const v = this.#view;
    switch (type) {
      case "i32":
        v.setInt32(offset, int32(label, value), true);
        return;
      case "f32":
        v.setFloat32(offset, float32(label, value), true);
        return;
      case "u64":
      case "i64":
        v.setBigUint64(offset, uint64(label, value), true);
        return;
      case "pointer":
        throw new NativeLibraryError(`${this.layout.name}.${field} is a pointer`);
    }
  }
}

const SYMBOLS = {
  ss_last_error: { parameters: [], result: "pointer" },
  ss_status_name: { parameters: ["i32"], result: "pointer" },
  ss_abi_version: { parameters: [], result: "i32" },
  ss_abi_layout: { parameters: ["buffer"], result: "pointer" },

  ss_model_default_params: { parameters: [], result: ffiStruct(MODEL_PARAMS) },
  ss_model_load: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "usize"], // path, params, out, err, err_size
    result: "i32",
    nonblocking: true,
  },
  ss_model_free: { parameters: ["pointer"], result: "void" },
  ss_model_get_info: { parameters: ["pointer", "buffer"], result: "i32" },
  ss_model_export_count: { parameters: ["pointer", "buffer"], result: "i32" },
  ss_model_export_info: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  // model, index, dtype, row0, n, dst, size (blocking: its message comes from this thread's ss_last_error)
  ss_model_export_rows: {
    parameters: ["pointer", "i32", "i32", "i64", "i64", "buffer", "usize"],
    result: "i32",
  },

  ss_engine_default_params: { parameters: [], result: ffiStruct(ENGINE_PARAMS) },
  ss_engine_create: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"], // model, params, out, err, err_size
    result: "i32",
    nonblocking: true,
  },
  ss_engine_free: { parameters: ["pointer"], result: "void" },
  ss_engine_last_error: { parameters: ["pointer"], result: "pointer" },
  ss_engine_kv_bytes_per_token: { parameters: ["pointer"], result: "i64" },
  ss_engine_get_limits: { parameters: ["pointer", "buffer"], result: "i32" },
  ss_backend_available: { parameters: ["i32"], result: "i32" },

  ss_seq_default_params: { parameters: [], result: ffiStruct(SEQ_PARAMS) },
  ss_seq_check_params: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ss_seq_create: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ss_seq_free: { parameters: ["pointer", "i32"], result: "i32" },
  ss_seq_set_sampling: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  ss_seq_get_stats: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  ss_seq_get_cache_indices: {
    parameters: ["pointer", "i32", "buffer", "i32", "buffer"],
    result: "i32",
  },

  ss_engine_step_masked: {
    parameters: [
      "pointer", // engine
      "i32", // n_items
      "buffer", // seq_ids
      "buffer", // n_tokens
      "buffer", // tokens
      "buffer", // flags
      "buffer", // targets
      "buffer", // masks (n_items rows of maskWords(vocab) words)
      "buffer", // out_tokens
      "buffer", // out_logits
      "buffer", // out_target_logprobs
      "buffer", // out_status
    ],
    result: "i32",
    nonblocking: true,
  },
  ss_engine_item_error: { parameters: ["pointer", "i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

export type NativeSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;
/** The repo build ensureNativeLibrary() picked (CUDA_LIB for the cuda backend); null = DEFAULT_LIB. */
let selected: string | null = null;
let loadedPath: string | null = null;

/** Path of the native library this process uses (env SINKSTREAM_LIB, else the repo build picked). */
export function nativeLibraryPath(): string {
  return loadedPath ?? (Deno.env.get("SINKSTREAM_LIB") || selected || DEFAULT_LIB);
}

/** Whether the library in use is the repo's CUDA build (false for SINKSTREAM_LIB: unknown build). */
export function usingRepoCudaLibrary(): boolean {
  return !Deno.env.get("SINKSTREAM_LIB") && nativeLibraryPath() === CUDA_LIB;
}

/** The ABI table the library exports: entry name -> [value, size]. */
function readAbiTable(sym: NativeSymbols): Map<string, [number, number]> {
  const n = new Int32Array(1);
  const ptr = sym.ss_abi_layout(n);
  const out = new Map<string, [number, number]>();
  if (ptr === null) return out;
  const view = new Deno.UnsafePointerView(ptr);
  const f = ABI_ENTRY.fields;
  for (let i = 0; i < n[0]; i++) {
    const base = i * ABI_ENTRY.size;
    const name = cString(view.getPointer(base + f.name.offset));
    out.set(name, [
      Number(view.getBigInt64(base + f.value.offset)),
      Number(view.getBigInt64(base + f.size.offset)),
    ]);
  }
  return out;
}

/**
 * Differences between this binding's description of the ABI and the library's table (empty when they
 * agree): every struct's size, alignment and complete field list, every enum value and constant.
 * @internal exported for tests
 */
export function abiMismatches(table: ReadonlyMap<string, readonly [number, number]>): string[] {
  const bad: string[] = [];
  const expect = (name: string, what: string, want: number, got: number | undefined) => {
    if (got === undefined) bad.push(`${name} is missing from the library`);
    else if (got !== want) bad.push(`${name}: ${what} ${got} in the library, ${want} in the binding`);
  };
  for (const l of STRUCTS) {
    const fields = Object.entries(l.fields) as [string, FieldLayout][];
    const align = Math.max(...fields.map(([, f]) => TYPE_SIZE[f.type]));
    expect(l.name, "size", l.size, table.get(l.name)?.[0]);
    expect(l.name, "alignment", align, table.get(l.name)?.[1]);
    for (const [field, f] of fields) {
      const key = `${l.name}.${field}`;
      expect(key, "offset", f.offset, table.get(key)?.[0]);
      expect(key, "size", TYPE_SIZE[f.type] * f.count, table.get(key)?.[1]);
    }
    for (const key of table.keys()) {
      if (key.startsWith(`${l.name}.`) && !Object.hasOwn(l.fields, key.slice(l.name.length + 1))) {
        bad.push(`${key} is not known to the binding`);
      }
    }
  }
  for (const e of ENUMS) {
    for (const [k, v] of Object.entries(e.values)) {
      const key = e.prefix + k.toUpperCase();
      expect(key, "value", v as number, table.get(key)?.[0]);
    }
  }
  for (const [key, v] of Object.entries(CONSTANTS)) expect(key, "value", v, table.get(key)?.[0]);
  return bad;
}

/** Open the library (once per process) and return its symbols. Throws NativeLibraryError. */
export function native(): NativeSymbols {
  if (lib) return lib.symbols;
  const path = nativeLibraryPath();
  let opened: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    opened = Deno.dlopen(path, SYMBOLS);
  } catch (e) {
    throw new NativeLibraryError(
      `cannot open native library ${path}: ${(e as Error).message}` +
        ` (build it with \`make -C csrc\` or call ensureNativeLibrary())`,
      { cause: e },
    );
  }
  const v = opened.symbols.ss_abi_version();
  const bad = v === ABI_VERSION ? abiMismatches(readAbiTable(opened.symbols)) : [];
  if (v !== ABI_VERSION || bad.length > 0) {
    opened.close();
    throw new NativeLibraryError(
      v !== ABI_VERSION
        ? `${path}: ABI version ${v}, this binding expects ${ABI_VERSION} (rebuild it: make -C csrc)`
        : `${path}: its ABI differs from this binding's (runtime/ffi.ts): ${bad.join("; ")}`,
    );
  }
  lib = opened;
  loadedPath = path;
  return lib.symbols;
}

/** @internal the library's ABI table (for tests). */
export function nativeAbiTable(): Map<string, [number, number]> {
  return readAbiTable(native());
}

/** Read a NUL-terminated C string (empty for null). */
export function cString(ptr: Deno.PointerValue): string {
  if (ptr === null) return "";
  return Deno.UnsafePointerView.getCString(ptr);
}

/** NUL-terminated UTF-8 bytes of a JS string, for `buffer` parameters. */
export function toCString(s: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder().encode(s);
  const out = new Uint8Array(enc.length + 1);
  out.set(enc);
  return out;
}

/** A buffer for the `err` parameter of ss_model_load / ss_engine_create. */
export function errorBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(ERROR_MAX);
}

/** The NUL-terminated message in an error buffer. */
export function bufferMessage(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

/** The typed error of a failing status: its name from ss_status_name, `message` (or `context` when empty). */
export function nativeError(status: number, message: string, context?: string): SinkstreamError {
  const code = cString(native().ss_status_name(status));
  return errorFromStatus(code, message || context || code, status);
}

/** Throw the typed error of a failing call made on this thread (its message from ss_last_error()). */
export function check(status: number, context?: string): void {
  if (status !== 0) throw nativeError(status, cString(native().ss_last_error()), context);
}

/** Whether a backend is compiled in and usable. */
export function backendAvailable(backend: number): boolean {
  return native().ss_backend_available(backend) === 1;
}

// ---- building the library -------------------------------------------------

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      const p = `${dir}/${entry.name}`;
      if (entry.isDirectory) {
        newest = Math.max(newest, await newestMtime(p));
      } else if (entry.isFile) {
        const st = await Deno.stat(p);
        newest = Math.max(newest, st.mtime?.getTime() ?? 0);
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return newest;
}

async function mtimeOf(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Whether a repo build of the library is missing or older than a csrc source / header / Makefile
 * (and, for the CUDA build, a kernels/ file).
 */
export function nativeLibraryStale(backend: "cpu" | "cuda" = "cpu"): Promise<boolean> {
  return libraryStale(backend === "cuda" ? CUDA_LIB : DEFAULT_LIB, backend === "cuda");
}

async function libraryStale(path: string, cuda: boolean): Promise<boolean> {
  const lib = await mtimeOf(path);
  if (lib === null) return true;
  let newest = Math.max(await newestMtime(`${CSRC_DIR}/src`), await newestMtime(`${CSRC_DIR}/include`));
  for (const f of ["Makefile", "cuda.mk"]) {
    newest = Math.max(newest, (await mtimeOf(`${CSRC_DIR}/${f}`)) ?? 0);
  }
  if (cuda) newest = Math.max(newest, await newestMtime(KERNELS_DIR));
  return newest > lib;
}

export interface EnsureNativeLibraryOptions {
  /** Keep make's output unless the build fails (default true). */
  quiet?: boolean;
  /**
   * Backend the process will use (default "cpu"). "cuda" picks csrc/build/cuda/libsinkstream.so,
   * built with `make -C csrc cuda-check` when missing or stale and nvcc is available.
   */
  backend?: "cpu" | "cuda";
  /** Called before a (possibly long) build starts, with a one-line description. */
  onBuild?: (what: string) => void;
}

let ensuring: Promise<string> | null = null;

/**
 * Make sure the native library exists and is current, and pick it for this process; returns its
 * path. With SINKSTREAM_LIB set, only checks that the file exists (it wins for every backend).
 * Otherwise runs make (under flock, so parallel test processes don't race) when the library is
 * missing or older than any file it is built from:
 *  - backend "cpu" (default): `make -C csrc lib` -> csrc/build/libsinkstream.so;
 *  - backend "cuda": `make -C csrc cuda-check` -> csrc/build/cuda/libsinkstream.so. Needs nvcc
 *    (`SINKSTREAM_NVCC`, default `nvcc` on PATH); without it an existing (stale) CUDA build is
 *    used, and a missing one is a NativeLibraryError with a one-line message.
 * A process opens one library: once opened, a later call cannot switch it (the CUDA build also has
 * the CPU backend, so cpu after cuda is fine; cuda after the CPU library is an error).
 */
export function ensureNativeLibrary(opts: EnsureNativeLibraryOptions = {}): Promise<string> {
  const prev = ensuring ?? Promise.resolve("");
  const next = prev.catch(() => "").then(() => doEnsure(opts));
  ensuring = next;
  return next;
}

async function doEnsure(opts: EnsureNativeLibraryOptions): Promise<string> {
  const quiet = opts.quiet ?? true;
  const env = Deno.env.get("SINKSTREAM_LIB");
  if (env) {
    if ((await mtimeOf(env)) === null) throw new NativeLibraryError(`SINKSTREAM_LIB=${env} does not exist`);
    return env;
  }
  if (opts.backend === "cuda") {
    if (lib && loadedPath !== CUDA_LIB) {
      throw new NativeLibraryError(
        `the CPU-only library ${loadedPath} is already loaded in this process; the cuda backend needs ${CUDA_LIB}`,
      );
    }
    const path = lib ? CUDA_LIB : await ensureCudaLibrary(CUDA_LIB, {
      nvcc: Deno.env.get("SINKSTREAM_NVCC") || "nvcc",
      quiet,
      onBuild: opts.onBuild,
    });
    selected = path;
    return path;
  }
  if (lib) return nativeLibraryPath(); // already opened: a rebuild would not be picked up
  if (await libraryStale(DEFAULT_LIB, false)) {
    opts.onBuild?.(`building ${DEFAULT_LIB} (make -C csrc lib)`);
    await runMake(["lib"], quiet, DEFAULT_LIB);
  }
  return DEFAULT_LIB;
}

/**
 * @internal (exported for tests) Make sure the CUDA build at `path` exists, rebuilding it with
 * `make -C csrc cuda-check NVCC=<nvcc>` when it is missing or stale and nvcc can be found.
 */
export async function ensureCudaLibrary(
  path: string,
  opts: { nvcc: string; quiet?: boolean; onBuild?: (what: string) => void },
): Promise<string> {
  const exists = (await mtimeOf(path)) !== null;
  const stale = !exists || await libraryStale(path, true);
  if (!stale) return path;
  const hasNvcc = await commandExists(opts.nvcc);
  if (!hasNvcc) {
    if (exists) return path; // stale, but nothing to rebuild it with: use what is there
    throw new NativeLibraryError(
      `the cuda backend needs ${path}, which is not built, and nvcc ("${opts.nvcc}") is not on PATH to ` +
        `build it (install the CUDA toolkit, set SINKSTREAM_NVCC or SINKSTREAM_LIB, or use --backend cpu)`,
    );
  }
  if (path !== CUDA_LIB) {
    throw new NativeLibraryError(
      `cannot build ${path}: only ${CUDA_LIB} is built by make -C csrc cuda-check`,
    );
  }
  opts.onBuild?.(`building ${path} with nvcc (make -C csrc cuda-check); this takes a few minutes`);
  await runMake(["cuda-check", `NVCC=${opts.nvcc}`], opts.quiet ?? true, path);
  return path;
}

async function runMake(targets: string[], quiet: boolean, product: string): Promise<void> {
  await Deno.mkdir(`${CSRC_DIR}/build`, { recursive: true });
  const hasFlock = await commandExists("flock");
  const what = `make -C csrc ${targets.join(" ")}`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(hasFlock ? "flock" : "make", {
      args: hasFlock
        ? [`${CSRC_DIR}/build/.build.lock`, "make", "-C", CSRC_DIR, ...targets]
        : ["-C", CSRC_DIR, ...targets],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new NativeLibraryError(`cannot run make to build the native library: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const dec = new TextDecoder();
  if (!out.success) {
    throw new NativeLibraryError(
      `building the native library failed (${what}, exit ${out.code}):\n${dec.decode(out.stdout)}${
        dec.decode(out.stderr)
      }`,
    );
  }
  if (!quiet) {
    await Deno.stderr.write(out.stdout);
    await Deno.stderr.write(out.stderr);
  }
  if ((await mtimeOf(product)) === null) {
    throw new NativeLibraryError(`${what} succeeded but ${product} is missing`);
  }
}

async function commandExists(name: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", 'command -v "$1"', "sh", name],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}
