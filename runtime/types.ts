/**
 * The engine seam. The gateway talks to an engine only through these types;
 * runtime/native_engine.ts implements them over the C library (the only code
 * that touches FFI). Another in-process engine (a TensorRT-LLM adapter) would
 * implement the same interfaces. Several GPU hosts are not an engine behind
 * this seam: the edge (gateway/edge/, docs/edge.md) relays whole sessions to
 * gateways, since a remote `step` would cost a round trip per token. This file
 * must not import FFI code.
 */

import type { SinkstreamError } from "./errors.ts";

export type CachePolicy = "streaming" | "window" | "dense";
export type BackendName = "cpu" | "cuda";
/** Element types of weights (Q8_0 / Q4_0: GGUF's 32-weight blocks with an f16 scale). */
export const WEIGHT_DTYPES = ["f32", "f16", "bf16", "q8_0", "q4_0"] as const;
export type WeightDtype = typeof WEIGHT_DTYPES[number];
/** Element types of the CPU KV cache. */
export const KV_DTYPES = ["f32", "f16"] as const;
export type KvDtype = typeof KV_DTYPES[number];
/** Model file formats. */
export type ModelFormat = "hf" | "llama2c" | "gguf";

/** Shape of a loaded model (mirrors ss_model_info). */
export interface ModelInfo {
  arch: "llama" | "mistral" | "qwen2";
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Training context length (max_position_embeddings). */
  maxSeqLen: number;
  bosTokenId: number;
  eosTokenId: number;
  /** Type of most weight-matrix elements in the file. */
  sourceDtype: WeightDtype;
  ropeTheta: number;
  rmsNormEps: number;
  nParams: number;
  format: ModelFormat;
  /** Type of most weight-matrix elements as loaded (after a conversion at load). */
  weightDtype: WeightDtype;
  /** Weight bytes a CPU decode step reads per token: every matrix (lm_head too), norms, one embedding row. */
  weightBytesPerToken: number;
}

/** Sampling settings of one sequence. */
export interface SamplingOptions {
  /** 0 = greedy. */
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  seed?: number | bigint;
}

/** Cache settings + initial sampling settings of a new sequence. */
export interface SequenceOptions extends SamplingOptions {
  policy?: CachePolicy;
  /** Attention sinks (streaming only). Default 4. */
  sinks?: number;
  /** Cache capacity W in tokens, sinks and newest token included. Default (or 0): limits.defaultCapacity. */
  capacity?: number;
}

/**
 * Bounds the engine enforces on sequence settings (read from the C library: one source of truth).
 * Front ends build their request schemas from these instead of restating them.
 */
export interface SequenceLimits {
  /** Smallest and largest cache capacity in tokens. */
  minCapacity: number;
  maxCapacity: number;
  /** The capacity a sequence gets when none (or 0) is given: the model's context (maxSeqLen). */
  defaultCapacity: number;
  /** Largest top_k (0 = off; a top_k of vocabSize or more keeps every token). */
  maxTopK: number;
}

/** Cache statistics of one sequence (mirrors ss_seq_stats). */
export interface CacheStats {
  policy: CachePolicy;
  /** Tokens in the cache now. */
  cached: number;
  sinks: number;
  /** Capacity W. */
  capacity: number;
  /** Tokens fed since creation. */
  seen: number;
  /** Tokens evicted since creation. */
  evicted: number;
  /** KV memory held now. */
  bytes: number;
}

/** One item of a batched step: a prefill chunk or one decode token. */
export interface StepItem {
  seq: number;
  tokens: ArrayLike<number>;
  /** Sample the next token after the last one (default true). */
  sample?: boolean;
  /** Return the logits after the last token (default false). */
  logits?: boolean;
  /** Return log p(target | everything fed). */
  target?: number;
  /**
   * Sample only among the tokens this mask allows (constrained decoding): ceil(vocabSize / 32) words, bit
   * t % 32 of word t / 32 set = token t allowed. Forbidden tokens get probability 0 (greedy and sampled);
   * `logits` and `targetLogprob` stay the model's. A mask allowing nothing fails the item alone
   * (EmptyMaskError). Items without one sample exactly as they would in a step without masks.
   */
  mask?: Uint32Array;
}

export interface StepResult {
  /** Sampled token, or -1 when sample was false or the item failed. */
  token: number;
  logits?: Float32Array;
  targetLogprob?: number;
  /**
   * Set when this item alone failed (e.g. a dense sequence without room, an unknown sequence): nothing of
   * it was fed and its sequence is unchanged; the other items of the step ran as if it were not there.
   */
  error?: SinkstreamError;
}

/**
 * A batched inference engine over many sequences. Calls must not overlap:
 * await each step before the next call that changes state.
 */
export interface Engine extends Disposable {
  readonly info: ModelInfo;
  readonly backend: BackendName;
  /** Max tokens in one step over all items. */
  readonly maxBatchTokens: number;
  /**
   * KV-cache bytes one cached token takes in this engine (K and V of every layer, in the cache's
   * element type: --kv-dtype on the CPU backend, f16/bf16 on CUDA), as the engine itself reports it.
   */
  readonly kvBytesPerToken: number;
  /** Bounds of sequence settings (see SequenceLimits). */
  readonly limits: SequenceLimits;
  /**
   * Check options exactly as createSequence would (capacity 0 = the model's context, sinks < capacity,
   * sampling bounds) without creating anything; throws the engine's typed error (InvalidArgumentError,
   * with `field` naming the option at fault). Safe to call at any time, also while a step is in flight.
   */
  checkSequenceOptions(options: SequenceOptions): void;
  createSequence(options?: SequenceOptions): number;
  freeSequence(seq: number): void;
  setSampling(seq: number, options: SamplingOptions): void;
  stats(seq: number): CacheStats;
  /** Stream indices of the cached tokens in cache order. */
  cacheIndices(seq: number): number[];
  /**
   * One batched forward; runs off the event loop. An item that fails on its own gets `error` in its
   * result and the rest run; the promise rejects only when the step as a whole failed (see sinkstream.h
   * for the state of the sequences then).
   */
  step(items: StepItem[]): Promise<StepResult[]>;
  close(): void;
}

/** Text <-> token ids. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  encode(text: string, options?: { bos?: boolean; eos?: boolean }): number[];
  decode(ids: ArrayLike<number>): string;
  /** Raw bytes of one token (for incremental, UTF-8-safe detokenisation). */
  tokenBytes(id: number): Uint8Array;
  /** Chat template from tokenizer_config.json, when the model has one. */
  readonly chatTemplate?: string;
  /** Special token strings by name, e.g. { bos_token: "<s>" }. */
  readonly specialTokens: Record<string, string>;
  /**
   * Encode the concatenation of `segments` as one text in which special-token text (e.g. "</s>")
   * becomes its id only inside segments marked `special` (a chat template's markup) and stays plain
   * text elsewhere (message content). Equals encode(joined text) when each special token encode()
   * would find there lies inside a marked segment. Required of a tokenizer whose encode() turns special-token text into ids;
   * without it the gateway encodes the joined text with encode().
   */
  encodeSegments?(segments: readonly TextSegment[]): number[];
  /** How to load this same tokenizer again in another isolate (a Worker); absent: it cannot be. */
  readonly source?: TokenizerSource;
}

/** A piece of text to encode; `special`: template markup, where special-token text becomes its id. */
export interface TextSegment {
  text: string;
  special: boolean;
}

/** Where a tokenizer came from, so that a Worker can load it again from the same files. */
export interface TokenizerSource {
  /** URL of a module exporting `loadTokenizerFromSource(source: TokenizerSource): Promise<Tokenizer>`. */
  readonly module: string;
  /** Structured-cloneable arguments for it (file paths, options). */
  readonly args: unknown;
}
