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
  CachePolicy,
  CacheStats,
  Engine,
  ModelInfo,
  SamplingOptions,
  SequenceOptions,
  StepItem,
  StepResult,
} from "./types.ts";
import {
  ABI,
  backendAvailable,
  check,
  checkAsync,
  native,
  nativeLibraryPath,
  toCString,
  usingRepoCudaLibrary,
} from "./ffi.ts";
import { ClosedError, EngineBusyError, InvalidArgumentError } from "./errors.ts";

const ARCHS = ["llama", "mistral", "qwen2"] as const;
const DTYPES = ["f32", "f16", "bf16"] as const;
const POLICIES: CachePolicy[] = ["streaming", "window", "dense"];
const BACKENDS: BackendName[] = ["cpu", "cuda"];

export interface LoadModelOptions {
  /** Map weights from the file when possible (default true). */
  mmap?: boolean;
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
  const buf = new Uint8Array(ABI.modelInfoSize);
  check(native().ss_model_get_info(ptr, buf));
  const dv = new DataView(buf.buffer);
  const i = (off: number) => dv.getInt32(off, true);
  return {
    arch: ARCHS[i(0)] ?? "llama",
    dim: i(4),
    hiddenDim: i(8),
    nLayers: i(12),
    nHeads: i(16),
    nKvHeads: i(20),
    headDim: i(24),
    vocabSize: i(28),
    maxSeqLen: i(32),
    bosTokenId: i(36),
    eosTokenId: i(40),
    sourceDtype: DTYPES[i(44)] ?? "f32",
    ropeTheta: f32(dv.getFloat32(48, true)),
    rmsNormEps: f32(dv.getFloat32(52, true)),
    nParams: Number(dv.getBigInt64(56, true)),
  };
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

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Load a model: a Hugging Face folder (config.json + safetensors) or a llama2.c .bin checkpoint. */
export async function loadModel(path: string, opts: LoadModelOptions = {}): Promise<Model> {
  const sym = native();
  const params = new Uint8Array(sym.ss_model_default_params());
  const dv = new DataView(params.buffer);
  if (opts.mmap !== undefined) dv.setInt32(0, opts.mmap ? 1 : 0, true);
  const out = new BigUint64Array(1);
  const status = await sym.ss_model_load(toCString(path), params, out);
  checkAsync(status, `cannot load model ${path}`);
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
}

function intOption(name: string, v: number | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < min || v > 0x7fffffff) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${v}`);
  }
  return v;
}

/** Whether a backend is compiled into the library and usable on this machine. */
export function isBackendAvailable(backend: BackendName): boolean {
  const i = BACKENDS.indexOf(backend);
  if (i < 0) throw new InvalidArgumentError(`unknown backend "${backend}" (expected cpu or cuda)`);
  return backendAvailable(i);
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
  const params = new Uint8Array(sym.ss_engine_default_params());
  const dv = new DataView(params.buffer);
  const backend = opts.backend ?? "cpu";
  const bi = BACKENDS.indexOf(backend);
  if (bi < 0) throw new InvalidArgumentError(`unknown backend "${backend}" (expected cpu or cuda)`);
  dv.setInt32(0, bi, true);
  const threads = intOption("threads", opts.threads, 0);
  if (threads !== undefined) dv.setInt32(4, threads, true);
  const maxSeq = intOption("maxSequences", opts.maxSequences, 1);
  if (maxSeq !== undefined) dv.setInt32(8, maxSeq, true);
  const maxBatch = intOption("maxBatchTokens", opts.maxBatchTokens, 1);
  if (maxBatch !== undefined) dv.setInt32(12, maxBatch, true);
  const device = intOption("device", opts.device, 0);
  if (device !== undefined) dv.setInt32(16, device, true);
  const out = new BigUint64Array(1);
  const status = await sym.ss_engine_create(model.pointer, params, out);
  checkAsync(status, `cannot create ${backend} engine`);
  const engine = new NativeEngine(model, ptrOf(out), backend, dv.getInt32(12, true));
  engine.kvBytesPerToken = await probeKvBytesPerToken(engine);
  return engine;
}

/**
 * KV bytes per cached token, measured: a one-slot sequence (policy window, W = 1) fed one token
 * holds exactly one token's K and V for every layer in the backend's cache type, so its
 * `stats.bytes` is the figure (the cache reserves slots lazily, up to W). Costs one single-token
 * forward at engine creation. Falls back to the model shape times the backend's element size
 * (f32 on CPU, f16/bf16 on CUDA) if the probe cannot run.
 */
async function probeKvBytesPerToken(engine: NativeEngine): Promise<number> {
  const i = engine.info;
  const fallback = 2 * i.nLayers * i.nKvHeads * i.headDim * (engine.backend === "cuda" ? 2 : 4);
  let seq: number | null = null;
  try {
    seq = engine.createSequence({ policy: "window", capacity: 1 });
    const token = i.bosTokenId >= 0 && i.bosTokenId < i.vocabSize ? i.bosTokenId : 0;
    await engine.step([{ seq, tokens: [token], sample: false }]);
    const st = engine.stats(seq);
    return st.cached === 1 && st.bytes > 0 ? st.bytes : fallback;
  } catch {
    return fallback;
  } finally {
    if (seq !== null) {
      try {
        engine.freeSequence(seq);
      } catch { /* engine closed meanwhile */ }
    }
  }
}

function seqParamsBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(native().ss_seq_default_params());
}

function writeSampling(dv: DataView, o: SamplingOptions): void {
  if (o.temperature !== undefined) {
    if (!(Number.isFinite(o.temperature) && o.temperature >= 0)) {
      throw new InvalidArgumentError(`temperature must be a finite number >= 0, got ${o.temperature}`);
    }
    dv.setFloat32(12, o.temperature, true);
  }
  if (o.topK !== undefined) {
    const k = intOption("topK", o.topK, 0)!;
    dv.setInt32(16, k, true);
  }
  if (o.topP !== undefined) {
    if (!(o.topP > 0 && o.topP <= 1)) throw new InvalidArgumentError(`topP must be in (0, 1], got ${o.topP}`);
    dv.setFloat32(20, o.topP, true);
  }
  if (o.seed !== undefined) {
    let s: bigint;
    if (typeof o.seed === "bigint") s = o.seed;
    else if (Number.isSafeInteger(o.seed)) s = BigInt(o.seed);
    else throw new InvalidArgumentError(`seed must be an integer, got ${o.seed}`);
    dv.setBigUint64(24, BigInt.asUintN(64, s), true);
  }
}

/** The C engine behind the Engine interface. */
export class NativeEngine implements Engine {
  readonly info: ModelInfo;
  readonly backend: BackendName;
  readonly maxBatchTokens: number;
  /** KV bytes per cached token (measured when the engine is created; see createEngine). */
  kvBytesPerToken = 0;
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

  createSequence(options: SequenceOptions = {}): number {
    const eng = this.#handle("createSequence");
    const buf = seqParamsBuffer();
    const dv = new DataView(buf.buffer);
    if (options.policy !== undefined) {
      const p = POLICIES.indexOf(options.policy);
      if (p < 0) throw new InvalidArgumentError(`unknown cache policy "${options.policy}"`);
      dv.setInt32(0, p, true);
    }
    const sinks = intOption("sinks", options.sinks, 0);
    if (sinks !== undefined) dv.setInt32(4, sinks, true);
    const capacity = intOption("capacity", options.capacity, 1);
    if (capacity !== undefined) dv.setInt32(8, capacity, true);
    writeSampling(dv, options);
    const id = new Int32Array(1);
    check(native().ss_seq_create(eng, buf, id));
    return id[0];
  }

  freeSequence(seq: number): void {
    const eng = this.#handle("freeSequence");
    check(native().ss_seq_free(eng, seq | 0));
  }

  setSampling(seq: number, options: SamplingOptions): void {
    const eng = this.#handle("setSampling");
    const buf = seqParamsBuffer();
    writeSampling(new DataView(buf.buffer), options);
    check(native().ss_seq_set_sampling(eng, seq | 0, buf));
  }

  // Reused by stats(): called for every sequence of every step, so no per-call buffer.
  #statsBuf = new Uint8Array(ABI.seqStatsSize);
  #statsView = new DataView(this.#statsBuf.buffer);

  stats(seq: number): CacheStats {
    const eng = this.#handle("stats");
    check(native().ss_seq_get_stats(eng, seq | 0, this.#statsBuf));
    const dv = this.#statsView;
    return {
      cached: dv.getInt32(0, true),
      sinks: dv.getInt32(4, true),
      capacity: dv.getInt32(8, true),
      policy: POLICIES[dv.getInt32(12, true)] ?? "streaming",
      seen: Number(dv.getBigInt64(16, true)),
      evicted: Number(dv.getBigInt64(24, true)),
      bytes: Number(dv.getBigInt64(32, true)),
    };
  }

  cacheIndices(seq: number): number[] {
    const eng = this.#handle("cacheIndices");
    const sym = native();
    const n = new Int32Array(1);
    let cap = 0;
    let buf = new BigInt64Array(0);
    for (;;) {
      check(sym.ss_seq_get_cache_indices(eng, seq | 0, buf, cap, n));
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
    for (let i = 0; i < n; i++) {
      const it = items[i];
      const len = it.tokens.length;
      if (!(len >= 1)) {
        throw new InvalidArgumentError(`step item ${i} (seq ${it.seq}): tokens must not be empty`);
      }
      total += len;
      if (it.logits) anyLogits = true;
      if (it.target !== undefined) anyTarget = true;
    }
    const seqIds = new Int32Array(n);
    const nTokens = new Int32Array(n);
    const tokens = new Int32Array(total);
    const flags = new Int32Array(n);
    const targets = anyTarget ? new Int32Array(n) : null;
    let off = 0;
    for (let i = 0; i < n; i++) {
      const it = items[i];
      if (!Number.isInteger(it.seq)) {
        throw new InvalidArgumentError(`step item ${i}: bad sequence id ${it.seq}`);
      }
      seqIds[i] = it.seq;
      const t = it.tokens;
      nTokens[i] = t.length;
      for (let j = 0; j < t.length; j++) {
        const v = t[j];
        if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
          throw new InvalidArgumentError(`step item ${i} (seq ${it.seq}): token ${v} is not an integer id`);
        }
        tokens[off++] = v;
      }
      flags[i] = (it.sample === false ? 0 : 1) | (it.logits ? 2 : 0);
      if (targets) {
        const tg = it.target;
        if (tg === undefined) targets[i] = -1;
        else if (!Number.isInteger(tg) || tg < 0 || tg >= vocab) {
          throw new InvalidArgumentError(
            `step item ${i} (seq ${it.seq}): target ${tg} is not a token id (vocab ${vocab})`,
          );
        } else targets[i] = tg;
      }
    }
    const outTokens = new Int32Array(n);
    const outLogits = anyLogits ? new Float32Array(n * vocab) : null;
    const outLogprobs = anyTarget ? new Float32Array(n) : null;

    this.#busy = true;
    let status: number;
    try {
      status = await native().ss_engine_step(
        eng,
        n,
        seqIds,
        nTokens,
        tokens,
        flags,
        targets,
        outTokens,
        outLogits,
        outLogprobs,
      );
    } finally {
      this.#busy = false;
      if (this.#closeRequested) this.#free();
    }
    checkAsync(status, "step failed");
    const results: StepResult[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const r: StepResult = { token: outTokens[i] };
      if (outLogits && items[i].logits) r.logits = outLogits.subarray(i * vocab, (i + 1) * vocab);
      if (outLogprobs && items[i].target !== undefined) r.targetLogprob = outLogprobs[i];
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
