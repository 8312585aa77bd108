/**
 * The native Engine: runtime/types.ts implemented over the C library (runtime/ffi.ts).
 *
 *   const model = await loadModel("/path/to/model");          // HF folder or llama2.c .bin
 *   const engine = await createEngine(model, { threads: 2 });
 *   const seq = engine.createSequence({ policy: "streaming", sinks: 4, capacity: 256 });
 *   const [r] = await engine.step([{ seq, tokens: [1] }]);    // r.token = next token
 *   engine.close(); model.close();
 *
 * Every call on one engine is serialised with its steps: while a step is in flight
 * (it runs on a worker thread) any other call on that engine throws EngineBusyError,
 * except close(), which is deferred until the step has finished.
 */
import type {
  BackendName,
  CacheStats,
  Engine,
  KvDtype,
  ModelInfo,
  SamplingOptions,
  SequenceLimits,
  SequenceOptions,
  StepItem,
  StepResult,
  WeightDtype,
} from "./types.ts";
import {
  ARCH,
  BACKEND,
  backendAvailable,
  bufferMessage,
  check,
  cString,
  DTYPE,
  ENGINE_PARAMS,
  enumName,
  enumValue,
  errorBuffer,
  FORMAT,
  int32,
  maskWords,
  MODEL_INFO,
  MODEL_PARAMS,
  native,
  nativeError,
  nativeLibraryPath,
  NativeStruct,
  POLICY,
  SEQ_LIMITS,
  SEQ_PARAMS,
  SEQ_STATS,
  STEP_FLAG,
  TENSOR_INFO,
  toCString,
  usingRepoCudaLibrary,
  WEIGHTS_AS_FILE,
} from "./ffi.ts";
import { ClosedError, EngineBusyError, InvalidArgumentError, type SinkstreamError } from "./errors.ts";

export interface LoadModelOptions {
  /** Map weights from the file when possible (default true). */
  mmap?: boolean;
  /**
   * Convert every weight matrix to this type at load (default: keep the file's types). Rows that are
   * not a whole number of 32-blocks get f16 instead of q8_0 / q4_0.
   */
  weights?: WeightDtype;
}

function ptrOf(out: BigUint64Array): Deno.PointerObject {
  const p = Deno.UnsafePointer.create(out[0]);
  if (p === null) throw new Error("native call succeeded but returned a null handle");
  return p;
}

/** A float32 value as the shortest decimal that reads back as the same float32 (1e-5, not 9.99999e-6). */
function f32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

function readInfo(ptr: Deno.PointerObject): ModelInfo {
  const info = new NativeStruct(MODEL_INFO);
  check(native().ss_model_get_info(ptr, info.bytes));
  const i = (f: keyof typeof MODEL_INFO.fields) => info.get(f);
  return {
    arch: enumName(ARCH, i("arch")) ?? "llama",
    dim: i("dim"),
    hiddenDim: i("hidden_dim"),
    nLayers: i("n_layers"),
    nHeads: i("n_heads"),
    nKvHeads: i("n_kv_heads"),
    headDim: i("head_dim"),
    vocabSize: i("vocab_size"),
    maxSeqLen: i("max_seq_len"),
    bosTokenId: i("bos_token_id"),
    eosTokenId: i("eos_token_id"),
    sourceDtype: enumName(DTYPE, i("source_dtype")) ?? "f32",
    ropeTheta: f32(i("rope_theta")),
    rmsNormEps: f32(i("rms_norm_eps")),
    nParams: i("n_params"),
    format: enumName(FORMAT, i("format")) ?? "hf",
    weightDtype: enumName(DTYPE, i("weight_dtype")) ?? "f32",
    weightBytesPerToken: i("weight_bytes"),
  };
}

/** One tensor of a model as a GGUF llama file holds it (ss_tensor_info). */
export interface ExportedTensor {
  /** GGUF name, e.g. "blk.0.attn_q.weight". */
  name: string;
  dtype: WeightDtype;
  /** GGUF dimensions: ne[0] elements per row, ne[1] rows (1 for a vector). */
  ne: [number, number];
  nDims: 1 | 2;
  rowBytes: number;
}

/** A loaded model (immutable, shareable by several engines). */
export class Model implements Disposable {
  readonly path: string;
  readonly info: ModelInfo;
  #ptr: Deno.PointerObject | null;
  #closed = false;
  #engines = new Set<NativeEngine>();

  /** @internal use loadModel(). */
  constructor(ptr: Deno.PointerObject, path: string) {
    this.#ptr = ptr;
    this.path = path;
    this.info = readInfo(ptr);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal */
  get pointer(): Deno.PointerObject {
    if (this.#closed || !this.#ptr) throw new ClosedError(`model ${this.path} is closed`);
    return this.#ptr;
  }

  /** @internal */
  attach(engine: NativeEngine): void {
    this.#engines.add(engine);
  }

  /** @internal called by an engine once it has been freed. */
  detach(engine: NativeEngine): void {
    this.#engines.delete(engine);
    if (this.#closed) this.#release();
  }

  /**
   * Release the model. Engines still open on it keep it alive: the native model
   * is freed when the last of them closes. Calling close twice is harmless.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#release();
  }

  #release(): void {
    if (this.#engines.size > 0 || !this.#ptr) return;
    native().ss_model_free(this.#ptr);
    this.#ptr = null;
  }

  /**
   * The model's tensors as a GGUF file of weight type `dtype` holds them (default: each matrix as
   * loaded): matrices in `dtype`, or f16 when their rows are not whole 32-blocks; norms f32.
   */
  exportedTensors(dtype?: WeightDtype): ExportedTensor[] {
    const sym = native();
    const n = new Int32Array(1);
    check(sym.ss_model_export_count(this.pointer, n));
    const dt = dtype === undefined ? WEIGHTS_AS_FILE : enumValue(DTYPE, dtype, "dtype");
    const out: ExportedTensor[] = [];
    const ti = new NativeStruct(TENSOR_INFO);
    const dec = new TextDecoder();
    const view = new DataView(ti.bytes.buffer);
    for (let i = 0; i < n[0]; i++) {
      check(sym.ss_model_export_info(this.pointer, i, dt, ti.bytes));
      const nameBytes = ti.bytes.subarray(0, 64);
      const end = nameBytes.indexOf(0);
      const ne = TENSOR_INFO.fields.ne.offset;
      out.push({
        name: dec.decode(nameBytes.subarray(0, end < 0 ? 64 : end)),
        dtype: enumName(DTYPE, ti.get("dtype")) ?? "f32",
        ne: [Number(view.getBigInt64(ne, true)), Number(view.getBigInt64(ne + 8, true))],
        nDims: ti.get("n_dims") === 1 ? 1 : 2,
        rowBytes: ti.get("row_bytes"),
      });
    }
    return out;
  }

  /**
   * Rows [row0, row0 + n) of exported tensor `index` (see exportedTensors) into dst, converted with the
   * quantization of conversion at load. Runs on the calling thread (for tools).
   */
  exportRows(index: number, dtype: WeightDtype | undefined, row0: number, n: number, dst: Uint8Array): void {
    const dt = dtype === undefined ? WEIGHTS_AS_FILE : enumValue(DTYPE, dtype, "dtype");
    const status = native().ss_model_export_rows(
      this.pointer,
      int32("index", index),
      dt,
      BigInt(row0),
      BigInt(n),
      dst,
      BigInt(dst.byteLength),
    );
    check(status, `cannot export tensor ${index} of ${this.path}`);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Load a model: a Hugging Face folder (config.json + safetensors), a GGUF file or a llama2.c .bin
 * checkpoint (any other file: ModelFormatError naming the known formats).
 */
export async function loadModel(path: string, opts: LoadModelOptions = {}): Promise<Model> {
  const sym = native();
  const params = new NativeStruct(MODEL_PARAMS, new Uint8Array(sym.ss_model_default_params()));
  if (opts.mmap !== undefined) params.set("use_mmap", opts.mmap ? 1 : 0, "mmap");
  if (opts.weights !== undefined) params.set("weights", enumValue(DTYPE, opts.weights, "weights"));
  const out = new BigUint64Array(1);
  const err = errorBuffer();
  const status = await sym.ss_model_load(toCString(path), params.bytes, out, err, BigInt(err.length));
  if (status !== 0) throw nativeError(status, bufferMessage(err), `cannot load model ${path}`);
  return new Model(ptrOf(out), path);
}

export interface EngineOptions {
  /** Default "cpu". */
  backend?: BackendName;
  /** CPU threads; 0 = all online cores (default 0). */
  threads?: number;
  /** Live sequences at once (default 1024). */
  maxSequences?: number;
  /** Tokens in one step over all items (default 512). */
  maxBatchTokens?: number;
  /** CUDA device ordinal (default 0). */
  device?: number;
  /** KV-cache element type: "f32" or "f16" on the CPU backend (default: the backend's, see kvBytesPerToken). */
  kvDtype?: KvDtype;
}

/** Whether a backend is compiled into the library and usable on this machine. */
export function isBackendAvailable(backend: BackendName): boolean {
  return backendAvailable(enumValue(BACKEND, backend, "backend"));
}

function pathExists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why a backend cannot be used in this process, in one line; null when it can. Opens the library
 * (call ensureNativeLibrary({ backend }) first so the right build is picked).
 */
export function backendUnavailableReason(backend: BackendName): string | null {
  if (isBackendAvailable(backend)) return null;
  const path = nativeLibraryPath();
  if (backend !== "cuda") return `the ${backend} backend is not available in ${path}`;
  const env = !!Deno.env.get("SINKSTREAM_LIB");
  if (!env && !usingRepoCudaLibrary()) {
    return `${path} was built without CUDA (build csrc/build/cuda/libsinkstream.so with make -C csrc cuda-check)`;
  }
  const driver = pathExists("/dev/nvidiactl") || pathExists("/proc/driver/nvidia/version");
  const lib = env ? `SINKSTREAM_LIB=${path}` : path;
  return driver
    ? `no usable CUDA device: the NVIDIA driver is present but the CUDA runtime in ${lib} found no GPU ` +
      `(check CUDA_VISIBLE_DEVICES and the driver version)`
    : `no GPU found: ${lib} has the CUDA backend, but this machine has no NVIDIA GPU / driver ` +
      `(/dev/nvidiactl is missing)` + (env ? " or that library was built without CUDA" : "");
}

/** Create an engine on a model. The model must stay open (or is kept alive) while the engine lives. */
export async function createEngine(model: Model, opts: EngineOptions = {}): Promise<NativeEngine> {
  const sym = native();
  const params = new NativeStruct(ENGINE_PARAMS, new Uint8Array(sym.ss_engine_default_params()));
  const backend = opts.backend ?? "cpu";
  params.set("backend", enumValue(BACKEND, backend, "backend"));
  if (opts.threads !== undefined) params.set("n_threads", opts.threads, "threads");
  if (opts.maxSequences !== undefined) params.set("max_sequences", opts.maxSequences, "maxSequences");
  if (opts.maxBatchTokens !== undefined) {
    params.set("max_batch_tokens", opts.maxBatchTokens, "maxBatchTokens");
  }
  if (opts.device !== undefined) params.set("device", opts.device, "device");
  if (opts.kvDtype !== undefined) params.set("kv_dtype", enumValue(DTYPE, opts.kvDtype, "kvDtype"));
  const out = new BigUint64Array(1);
  const err = errorBuffer();
  const status = await sym.ss_engine_create(model.pointer, params.bytes, out, err, BigInt(err.length));
  if (status !== 0) throw nativeError(status, bufferMessage(err), `cannot create ${backend} engine`);
  return new NativeEngine(model, ptrOf(out), backend, params.get("max_batch_tokens"));
}

/** Each ss_seq_params field and the SequenceOptions option it carries (errors name the option). */
const SEQ_OPTION: Record<keyof typeof SEQ_PARAMS.fields, keyof SequenceOptions> = {
  policy: "policy",
  n_sinks: "sinks",
  capacity: "capacity",
  temperature: "temperature",
  top_k: "topK",
  top_p: "topP",
  seed: "seed",
};

type SeqParams = NativeStruct<keyof typeof SEQ_PARAMS.fields>;

/** The engine's defaults with the given options written over them (representability checked only). */
function seqParams(options: SequenceOptions): SeqParams {
  const p = new NativeStruct(SEQ_PARAMS, new Uint8Array(native().ss_seq_default_params()));
  for (const field of Object.keys(SEQ_OPTION) as (keyof typeof SEQ_PARAMS.fields)[]) {
    const name = SEQ_OPTION[field];
    const v = options[name];
    if (v === undefined) continue;
    if (field === "policy") p.set(field, enumValue(POLICY, String(v), name));
    else p.set(field, v as number | bigint, name);
  }
  return p;
}

/** The C engine behind the Engine interface. */
export class NativeEngine implements Engine {
  readonly info: ModelInfo;
  readonly backend: BackendName;
  readonly maxBatchTokens: number;
  /** KV bytes per cached token, from the backend (ss_engine_kv_bytes_per_token). */
  readonly kvBytesPerToken: number;
  readonly limits: SequenceLimits;
  readonly model: Model;
  #ptr: Deno.PointerObject | null;
  #busy = false;
  #closeRequested = false;

  /** @internal use createEngine(). */
  constructor(model: Model, ptr: Deno.PointerObject, backend: BackendName, maxBatchTokens: number) {
    this.model = model;
    this.info = model.info;
    this.#ptr = ptr;
    this.backend = backend;
    this.maxBatchTokens = maxBatchTokens;
    const sym = native();
    this.kvBytesPerToken = Number(sym.ss_engine_kv_bytes_per_token(ptr));
    const lim = new NativeStruct(SEQ_LIMITS);
    check(sym.ss_engine_get_limits(ptr, lim.bytes));
    this.limits = {
      minCapacity: lim.get("min_capacity"),
      maxCapacity: lim.get("max_capacity"),
      defaultCapacity: lim.get("default_capacity"),
      maxTopK: lim.get("max_top_k"),
    };
    model.attach(this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closeRequested;
  }

  /** Whether a step is in flight. */
  get busy(): boolean {
    return this.#busy;
  }

  #handle(what: string): Deno.PointerObject {
    if (this.#closeRequested || !this.#ptr) throw new ClosedError(`${what}: engine is closed`);
    if (this.#busy) {
      throw new EngineBusyError(
        `${what}: a step is in flight on this engine; await it first (calls must not overlap)`,
      );
    }
    return this.#ptr;
  }

  /** ss_seq_check_params: thread-safe in C, so allowed while a step runs. */
  #check(params: SeqParams, what: string): void {
    if (this.#closeRequested || !this.#ptr) throw new ClosedError(`${what}: engine is closed`);
    const sym = native();
    const field = new BigUint64Array(1);
    const status = sym.ss_seq_check_params(this.#ptr, params.bytes, field);
    if (status === 0) return;
    const ptr = Deno.UnsafePointer.create(field[0]);
    const cField = cString(ptr) as keyof typeof SEQ_OPTION;
    const err = nativeError(status, cString(sym.ss_last_error()));
    if (err instanceof InvalidArgumentError && Object.hasOwn(SEQ_OPTION, cField)) {
      throw new InvalidArgumentError(err.message, { status, field: SEQ_OPTION[cField] });
    }
    throw err;
  }

  checkSequenceOptions(options: SequenceOptions): void {
    this.#check(seqParams(options), "checkSequenceOptions");
  }

  createSequence(options: SequenceOptions = {}): number {
    const eng = this.#handle("createSequence");
    const params = seqParams(options);
    this.#check(params, "createSequence"); // the same rules ss_seq_create applies, with the field named
    const id = new Int32Array(1);
    check(native().ss_seq_create(eng, params.bytes, id));
    return id[0];
  }

  freeSequence(seq: number): void {
    const eng = this.#handle("freeSequence");
    check(native().ss_seq_free(eng, int32("seq", seq)));
  }

  setSampling(seq: number, options: SamplingOptions): void {
    const eng = this.#handle("setSampling");
    const { temperature, topK, topP, seed } = options;
    const params = seqParams({ temperature, topK, topP, seed });
    check(native().ss_seq_set_sampling(eng, int32("seq", seq), params.bytes));
  }

  // Reused by stats(): called for every sequence of every step, so no per-call buffer.
  #stats = new NativeStruct(SEQ_STATS);

  stats(seq: number): CacheStats {
    const eng = this.#handle("stats");
    const st = this.#stats;
    check(native().ss_seq_get_stats(eng, int32("seq", seq), st.bytes));
    return {
      cached: st.get("n_cached"),
      sinks: st.get("n_sinks"),
      capacity: st.get("capacity"),
      policy: enumName(POLICY, st.get("policy")) ?? "streaming",
      seen: st.get("n_seen"),
      evicted: st.get("n_evicted"),
      bytes: st.get("cache_bytes"),
    };
  }

  cacheIndices(seq: number): number[] {
    const eng = this.#handle("cacheIndices");
    const sym = native();
    const id = int32("seq", seq);
    const n = new Int32Array(1);
    let cap = 0;
    let buf = new BigInt64Array(0);
    for (;;) {
      check(sym.ss_seq_get_cache_indices(eng, id, buf, cap, n));
      if (n[0] <= cap) break;
      cap = n[0];
      buf = new BigInt64Array(cap);
    }
    return Array.from(buf.subarray(0, n[0]), Number);
  }

  async step(items: StepItem[]): Promise<StepResult[]> {
    const eng = this.#handle("step");
    const n = items.length;
    if (n === 0) return [];
    const vocab = this.info.vocabSize;
    let total = 0;
    let anyLogits = false;
    let anyTarget = false;
    let anyMask = false;
    for (const it of items) {
      total += it.tokens.length;
      if (it.logits) anyLogits = true;
      if (it.target !== undefined) anyTarget = true;
      if (it.mask !== undefined) anyMask = true;
    }
    const words = maskWords(vocab);
    // One row per item; rows of unmasked items are never read by the engine.
    const masks = anyMask ? new Uint32Array(n * words) : null;
    // The C arrays of the step; only representability is checked here, the engine checks the rest.
    const seqIds = new Int32Array(n);
    const nTokens = new Int32Array(n);
    const tokens = new Int32Array(total);
    const flags = new Int32Array(n);
    const targets = anyTarget ? new Int32Array(n) : null;
    let off = 0;
    for (let i = 0; i < n; i++) {
      const it = items[i];
      seqIds[i] = int32(`step item ${i}: seq`, it.seq);
      const t = it.tokens;
      nTokens[i] = t.length;
      for (let j = 0; j < t.length; j++) tokens[off++] = int32(`step item ${i} (seq ${it.seq}): token`, t[j]);
      flags[i] = (it.sample === false ? 0 : STEP_FLAG.values.sample) |
        (it.logits ? STEP_FLAG.values.logits : 0) | (it.mask ? STEP_FLAG.values.mask : 0);
      if (it.mask) {
        if (it.mask.length !== words) {
          throw new InvalidArgumentError(
            `step item ${i} (seq ${it.seq}): mask has ${it.mask.length} words, the vocabulary needs ${words}`,
            { field: "mask" },
          );
        }
        masks!.set(it.mask, i * words);
      }
      if (targets) {
        targets[i] = it.target === undefined
          ? -1
          : int32(`step item ${i} (seq ${it.seq}): target`, it.target);
      }
    }
    const outTokens = new Int32Array(n);
    const outLogits = anyLogits ? new Float32Array(n * vocab) : null;
    const outLogprobs = anyTarget ? new Float32Array(n) : null;
    const outStatus = new Int32Array(n);

    const sym = native();
    this.#busy = true;
    let status: number;
    let stepError: SinkstreamError | null = null;
    const itemErrors: (SinkstreamError | undefined)[] = new Array(n);
    try {
      status = await sym.ss_engine_step_masked(
        eng,
        n,
        seqIds,
        nTokens,
        tokens,
        flags,
        targets,
        masks,
        outTokens,
        outLogits,
        outLogprobs,
        outStatus,
      );
      // Messages live in the engine: read them before a deferred close frees it.
      if (status !== 0) {
        stepError = nativeError(status, cString(sym.ss_engine_last_error(eng)), "step failed");
      } else {
        for (let i = 0; i < n; i++) {
          if (outStatus[i] !== 0) {
            itemErrors[i] = nativeError(outStatus[i], cString(sym.ss_engine_item_error(eng, i)));
          }
        }
      }
    } finally {
      this.#busy = false;
      if (this.#closeRequested) this.#free();
    }
    if (stepError) throw stepError;
    const results: StepResult[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const r: StepResult = { token: outTokens[i] };
      const error = itemErrors[i];
      if (error) r.error = error;
      else {
        if (outLogits && items[i].logits) r.logits = outLogits.subarray(i * vocab, (i + 1) * vocab);
        if (outLogprobs && items[i].target !== undefined) r.targetLogprob = outLogprobs[i];
      }
      results[i] = r;
    }
    return results;
  }

  /** Free the engine and all its sequences. Harmless when called twice; deferred while a step runs. */
  close(): void {
    if (this.#closeRequested) return;
    this.#closeRequested = true;
    if (!this.#busy) this.#free();
  }

  #free(): void {
    if (!this.#ptr) return;
    native().ss_engine_free(this.#ptr);
    this.#ptr = null;
    this.model.detach(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
