/**
 * Perplexity of a token stream under a cache policy (the logic of `deno task eval-ppl`).
 *
 * streaming | window | dense: one sequence; token i is fed with target token i+1, so each
 * token 1..N-1 (0-based) is predicted from everything before it as the policy's cache holds it.
 * recompute: sliding window with re-computation: token i+1 is predicted by a fresh dense
 * forward over the last W tokens (positions from 0), one temporary sequence per token.
 */
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { createEngine, loadModel, type NativeEngine } from "../../runtime/native_engine.ts";
import type { CachePolicy, KvDtype, WeightDtype } from "../../runtime/types.ts";

export type EvalPolicy = CachePolicy | "recompute";
export const EVAL_POLICIES: readonly EvalPolicy[] = ["streaming", "window", "dense", "recompute"];

export interface EvalOptions {
  model: string;
  tokens: number[];
  policy: EvalPolicy;
  sinks?: number;
  /** Cache capacity W. Default: the model's training length (dense: the stream length). */
  capacity?: number;
  threads?: number;
  /** Convert the weights to this type at load (default: the file's). */
  weights?: WeightDtype;
  /** KV-cache element type (default: the engine's). */
  kvDtype?: KvDtype;
  /** Segment length for per-segment perplexity (default 512). */
  segment?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface SegmentResult {
  /** Stream indices [start, end) of the predicted tokens in this segment. */
  start: number;
  end: number;
  count: number;
  nll: number;
  ppl: number;
}

export interface EvalResult {
  policy: EvalPolicy;
  sinks: number;
  capacity: number;
  nTokens: number;
  /** Predicted tokens (nTokens - 1). */
  count: number;
  nll: number;
  ppl: number;
  segments: SegmentResult[];
  /** -log p of each predicted token (index i = token i + 1). */
  nlls: number[];
  seconds: number;
  maxSeqLen: number;
}

export class EvalInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EvalInputError";
  }
}

/** Parse a JSON token file: an array of integer ids. */
export function parseTokenFile(text: string, source = "tokens file"): number[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new EvalInputError(`${source}: not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(v)) throw new EvalInputError(`${source}: expected a JSON array of token ids`);
  for (let i = 0; i < v.length; i++) {
    if (!Number.isInteger(v[i])) {
      throw new EvalInputError(
        `${source}: element ${i} (${JSON.stringify(v[i])}) is not an integer token id`,
      );
    }
  }
  return v as number[];
}

export function validateTokens(tokens: number[], vocabSize: number): void {
  if (tokens.length < 2) throw new EvalInputError(`need at least 2 tokens, got ${tokens.length}`);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      throw new EvalInputError(`token ${i} is ${t}: not a token id of this model (vocab ${vocabSize})`);
    }
  }
}

function logprobToNll(lp: number | undefined, i: number): number {
  if (lp === undefined || !Number.isFinite(lp)) {
    throw new Error(`engine returned log p = ${lp} at token ${i}`);
  }
  return -lp;
}

async function streamNlls(
  engine: NativeEngine,
  tokens: number[],
  policy: CachePolicy,
  sinks: number,
  capacity: number,
  onProgress?: (done: number, total: number) => void,
): Promise<number[]> {
  const seq = engine.createSequence({ policy, sinks, capacity });
  const nlls: number[] = [];
  const total = tokens.length - 1;
  for (let i = 0; i < total; i++) {
    const [r] = await engine.step([{ seq, tokens: [tokens[i]], sample: false, target: tokens[i + 1] }]);
    if (r.error) throw r.error;
    nlls.push(logprobToNll(r.targetLogprob, i + 1));
    if (onProgress && (i + 1) % 64 === 0) onProgress(i + 1, total);
  }
  engine.freeSequence(seq);
  return nlls;
}

async function recomputeNlls(
  engine: NativeEngine,
  tokens: number[],
  capacity: number,
  onProgress?: (done: number, total: number) => void,
): Promise<number[]> {
  const nlls: number[] = [];
  const total = tokens.length - 1;
  const chunk = engine.maxBatchTokens;
  for (let i = 0; i < total; i++) {
    const ctx = tokens.slice(Math.max(0, i + 1 - capacity), i + 1);
    // Capacity has a floor of 2 tokens in the engine; only ctx.length of it is used.
    const seq = engine.createSequence({ policy: "dense", capacity: Math.max(2, ctx.length) });
    try {
      let lp: number | undefined;
      for (let off = 0; off < ctx.length; off += chunk) {
        const part = ctx.slice(off, off + chunk);
        const last = off + chunk >= ctx.length;
        const [r] = await engine.step([
          last
            ? { seq, tokens: part, sample: false, target: tokens[i + 1] }
            : { seq, tokens: part, sample: false },
        ]);
        if (r.error) throw r.error;
        if (last) lp = r.targetLogprob;
      }
      nlls.push(logprobToNll(lp, i + 1));
    } finally {
      engine.freeSequence(seq);
    }
    if (onProgress && (i + 1) % 16 === 0) onProgress(i + 1, total);
  }
  return nlls;
}

/**
 * In-distribution text for a model: stories sampled independently from BOS (temperature 1, each in a
 * fresh dense sequence, until EOS or 400 tokens), concatenated into one stream that starts with a single
 * BOS (with bosBetween, each story keeps its BOS; with eosBetween, a story that ended with EOS keeps it,
 * the layout of a model trained on EOS-separated packed text, tools/train/). Decision D12.
 */
export async function sampleStream(
  modelPath: string,
  n: number,
  seed: number,
  bosBetween = false,
  eosBetween = false,
): Promise<number[]> {
  await ensureNativeLibrary();
  using model = await loadModel(modelPath);
  using engine = await createEngine(model, { threads: 1 });
  const { bosTokenId: bos, eosTokenId: eos, maxSeqLen } = model.info;
  const stream: number[] = [];
  let story = 0;
  while (stream.length < n) {
    const seq = engine.createSequence({
      policy: "dense",
      capacity: maxSeqLen,
      temperature: 1,
      seed: seed + story++,
    });
    let tok = bos;
    for (let i = 0; i < Math.min(400, maxSeqLen - 1) && stream.length < n; i++) {
      if (tok !== bos || bosBetween || stream.length === 0) stream.push(tok);
      const [r] = await engine.step([{ seq, tokens: [tok] }]);
      if (r.error) throw r.error;
      tok = r.token;
      if (tok === eos) {
        if (eosBetween && stream.length < n) stream.push(eos);
        break;
      }
    }
    engine.freeSequence(seq);
  }
  return stream;
}

export function summarise(nlls: number[], segment: number): { nll: number; segments: SegmentResult[] } {
  const segments: SegmentResult[] = [];
  // nlls[k] is the prediction of stream token k + 1.
  const n = nlls.length + 1;
  for (let start = 0; start < n; start += segment) {
    const end = Math.min(n, start + segment);
    let sum = 0;
    let count = 0;
    for (let t = Math.max(1, start); t < end; t++) {
      sum += nlls[t - 1];
      count++;
    }
    if (count === 0) continue;
    segments.push({ start, end, count, nll: sum / count, ppl: Math.exp(sum / count) });
  }
  const mean = nlls.reduce((a, b) => a + b, 0) / nlls.length;
  return { nll: mean, segments };
}

export async function evalPerplexity(opts: EvalOptions): Promise<EvalResult> {
  if (!EVAL_POLICIES.includes(opts.policy)) {
    throw new EvalInputError(`unknown policy "${opts.policy}" (${EVAL_POLICIES.join(", ")})`);
  }
  await ensureNativeLibrary();
  using model = await loadModel(opts.model, { weights: opts.weights });
  validateTokens(opts.tokens, model.info.vocabSize);
  const sinks = opts.policy === "streaming" ? (opts.sinks ?? 4) : 0;
  const capacity = opts.capacity ?? (opts.policy === "dense" ? opts.tokens.length : model.info.maxSeqLen);
  const maxBatchTokens = opts.policy === "recompute" ? Math.max(512, Math.min(capacity, 4096)) : undefined;
  using engine = await createEngine(model, { threads: opts.threads, maxBatchTokens, kvDtype: opts.kvDtype });
  if (opts.policy === "dense" && capacity < opts.tokens.length - 1) {
    throw new EvalInputError(
      `dense cache of ${capacity} tokens cannot hold a ${opts.tokens.length}-token stream ` +
        `(omit --window or pass at least ${opts.tokens.length - 1})`,
    );
  }
  const t0 = performance.now();
  const nlls = opts.policy === "recompute"
    ? await recomputeNlls(engine, opts.tokens, capacity, opts.onProgress)
    : await streamNlls(engine, opts.tokens, opts.policy, sinks, capacity, opts.onProgress);
  const seconds = (performance.now() - t0) / 1000;
  const { nll, segments } = summarise(nlls, opts.segment ?? 512);
  return {
    policy: opts.policy,
    sinks,
    capacity,
    nTokens: opts.tokens.length,
    count: nlls.length,
    nll,
    ppl: Math.exp(nll),
    segments,
    nlls,
    seconds,
    maxSeqLen: model.info.maxSeqLen,
  };
}
