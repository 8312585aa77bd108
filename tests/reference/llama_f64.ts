/**
 * Naive float64 reference of the Llama forward pass (llama2.c checkpoints) and of the three KV cache
 * policies (streaming / window / dense), used to check the native engine.
 *
 * Deliberately written without any of the engine's tricks:
 * - every cached token keeps its PRE-RoPE keys (one vector per layer) and its values;
 * - at every step the cache list is rebuilt (admit the new token, evict per policy) and every key is
 *   rotated at its CURRENT position, the query at the position of the newest token, exactly like
 *   mit-han-lab/streaming-llm re-indexes positions;
 * - all arithmetic in Float64Array, one token at a time.
 *
 * Positions:
 * - streaming(S, W): cache order 0..n-1 (sinks first, then the recent tokens oldest first); query at n-1.
 * - window(W): original stream indices (the paper's window baseline); query at its stream index.
 * - dense: stream indices.
 */

/** Shape of a llama2.c checkpoint. */
export interface LlamaConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  headSize: number;
  kvDim: number;
  sharedClassifier: boolean;
}

export interface LlamaWeights {
  tokenEmbedding: Float64Array; // [vocab * dim]
  rmsAtt: Float64Array[]; // per layer [dim]
  wq: Float64Array[]; // per layer [dim (out) * dim (in)]
  wk: Float64Array[]; // per layer [kvDim * dim]
  wv: Float64Array[]; // per layer [kvDim * dim]
  wo: Float64Array[]; // per layer [dim * dim]
  rmsFfn: Float64Array[]; // per layer [dim]
  w1: Float64Array[]; // per layer [hidden * dim]
  w2: Float64Array[]; // per layer [dim * hidden]
  w3: Float64Array[]; // per layer [hidden * dim]
  rmsFinal: Float64Array; // [dim]
  wcls: Float64Array; // [vocab * dim]
}

export const ROPE_THETA = 10000;
export const RMS_EPS = 1e-5;

/** A llama2.c model held in float64. */
export class LlamaF64 {
  constructor(readonly config: LlamaConfig, readonly weights: LlamaWeights) {}

  /** Parse a llama2.c checkpoint (legacy version-0 format). */
  static fromBytes(bytes: Uint8Array): LlamaF64 {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const header: number[] = [];
    for (let i = 0; i < 7; i++) header.push(view.getInt32(i * 4, true));
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = header;
    const vocabSize = Math.abs(rawVocab);
    const headSize = dim / nHeads;
    const config: LlamaConfig = {
      dim,
      hiddenDim,
      nLayers,
      nHeads,
      nKvHeads,
      vocabSize,
      seqLen,
      headSize,
      kvDim: nKvHeads * headSize,
      sharedClassifier: rawVocab > 0,
    };
    let offset = 28;
    const take = (n: number): Float64Array => {
      if (offset + n * 4 > bytes.byteLength) throw new Error("llama2.c checkpoint truncated");
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(offset + i * 4, true);
      offset += n * 4;
      return out;
    };
    const perLayer = (n: number): Float64Array[] => Array.from({ length: nLayers }, () => take(n));
    const kvDim = config.kvDim;
    const tokenEmbedding = take(vocabSize * dim);
    const rmsAtt = perLayer(dim);
    const wq = perLayer(dim * dim);
    const wk = perLayer(dim * kvDim);
    const wv = perLayer(dim * kvDim);
    const wo = perLayer(dim * dim);
    const rmsFfn = perLayer(dim);
    const w1 = perLayer(hiddenDim * dim);
    const w2 = perLayer(dim * hiddenDim);
    const w3 = perLayer(hiddenDim * dim);
    const rmsFinal = take(dim);
    offset += seqLen * headSize * 4; // legacy freq_cis_real + freq_cis_imag (seq_len * head_size / 2 each)
    const wcls = config.sharedClassifier ? tokenEmbedding : take(vocabSize * dim);
    if (offset !== bytes.byteLength) {
      throw new Error(`llama2.c checkpoint: ${bytes.byteLength - offset} extra bytes`);
    }
    return new LlamaF64(config, {
      tokenEmbedding,
      rmsAtt,
      wq,
      wk,
      wv,
      wo,
      rmsFfn,
      w1,
      w2,
      w3,
      rmsFinal,
      wcls,
    });
  }

  static fromFile(path: string | URL): LlamaF64 {
    return LlamaF64.fromBytes(Deno.readFileSync(path));
  }
}

/** out[r] = sum_c w[r * nIn + c] * x[c] (row-major [nOut, nIn], like llama2.c). */
export function matvec(w: Float64Array, x: Float64Array, nOut: number, nIn: number): Float64Array {
  const out = new Float64Array(nOut);
  for (let r = 0; r < nOut; r++) {
    let s = 0;
    const base = r * nIn;
    for (let c = 0; c < nIn; c++) s += w[base + c] * x[c];
    out[r] = s;
  }
  return out;
}

export function rmsnorm(x: Float64Array, weight: Float64Array): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const scale = 1 / Math.sqrt(ss / x.length + RMS_EPS);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = weight[i] * x[i] * scale;
  return out;
}

/**
 * Meta / llama2.c adjacent-pair RoPE of a vector of nHeads heads of headSize at position pos:
 * pairs (2i, 2i+1) of every head rotated by pos * theta^(-2i / headSize). Returns a new array.
 */
export function rope(v: Float64Array, headSize: number, pos: number): Float64Array {
  const out = new Float64Array(v.length);
  for (let h = 0; h < v.length; h += headSize) {
    for (let i = 0; i < headSize; i += 2) {
      const angle = pos * Math.pow(ROPE_THETA, -i / headSize);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const a = v[h + i];
      const b = v[h + i + 1];
      out[h + i] = a * c - b * s;
      out[h + i + 1] = a * s + b * c;
    }
  }
  return out;
}

export type RefPolicy =
  /** reindex: false keeps ORIGINAL stream indices as positions (a deliberately wrong variant for sanity tests). */
  | { kind: "streaming"; sinks: number; window: number; reindex?: boolean }
  | { kind: "window"; window: number }
  | { kind: "dense" };

/** One cached token: its stream index, and per layer its pre-RoPE key and its value. */
interface CacheEntry {
  index: number;
  keys: Float64Array[];
  values: Float64Array[];
}

/** One sequence fed token by token through the reference model under a cache policy. */
export class RefSequence {
  /** Cached tokens in cache order. */
  private cache: CacheEntry[] = [];
  /** Tokens fed so far. */
  seen = 0;
  evicted = 0;

  constructor(readonly model: LlamaF64, readonly policy: RefPolicy) {
    if (policy.kind === "streaming" && !(policy.sinks >= 0 && policy.sinks < policy.window)) {
      throw new Error("streaming needs 0 <= sinks < window");
    }
    if (policy.kind === "window" && !(policy.window >= 1)) throw new Error("window needs W >= 1");
  }

  /** Stream indices of the cached tokens, in cache order. */
  cacheIndices(): number[] {
    return this.cache.map((e) => e.index);
  }

  /** Admit a new token to the cache list and evict per policy. */
  private admit(entry: CacheEntry): void {
    this.cache.push(entry);
    const p = this.policy;
    if (p.kind === "streaming") {
      // The sinks are the first S entries for ever; drop the oldest non-sink while over capacity.
      while (this.cache.length > p.window) {
        this.cache.splice(p.sinks, 1);
        this.evicted++;
      }
    } else if (p.kind === "window") {
      while (this.cache.length > p.window) {
        this.cache.shift();
        this.evicted++;
      }
    }
  }

  /** RoPE position of cache entry j (cache order) when the cache holds n entries. */
  private position(j: number): number {
    return this.policy.kind === "streaming" && this.policy.reindex !== false ? j : this.cache[j].index;
  }

  /** Feed one token; returns the logits after it. */
  feed(token: number): Float64Array {
    const { config: cfg, weights: w } = this.model;
    if (!(Number.isInteger(token) && token >= 0 && token < cfg.vocabSize)) {
      throw new Error(`bad token ${token}`);
    }
    const { dim, hiddenDim, nHeads, nKvHeads, headSize, kvDim } = cfg;
    const entry: CacheEntry = { index: this.seen, keys: [], values: [] };
    this.seen++;
    this.admit(entry);
    const n = this.cache.length;
    const qPos = this.position(n - 1);
    const x = w.tokenEmbedding.slice(token * dim, (token + 1) * dim);
    const group = nHeads / nKvHeads;
    for (let l = 0; l < cfg.nLayers; l++) {
      const xb = rmsnorm(x, w.rmsAtt[l]);
      const q = rope(matvec(w.wq[l], xb, dim, dim), headSize, qPos);
      entry.keys[l] = matvec(w.wk[l], xb, kvDim, dim); // pre-RoPE, kept as such
      entry.values[l] = matvec(w.wv[l], xb, kvDim, dim);
      // Rotate every cached key at its current position (rebuilt every step).
      const keys = this.cache.map((e, j) => rope(e.keys[l], headSize, this.position(j)));
      const att = new Float64Array(dim);
      const scores = new Float64Array(n);
      for (let h = 0; h < nHeads; h++) {
        const kvOff = Math.floor(h / group) * headSize;
        const qOff = h * headSize;
        let max = -Infinity;
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let i = 0; i < headSize; i++) s += q[qOff + i] * keys[j][kvOff + i];
          s /= Math.sqrt(headSize);
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j < n; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (let j = 0; j < n; j++) {
          const a = scores[j] / sum;
          const v = this.cache[j].values[l];
          for (let i = 0; i < headSize; i++) att[qOff + i] += a * v[kvOff + i];
        }
      }
      const o = matvec(w.wo[l], att, dim, dim);
      for (let i = 0; i < dim; i++) x[i] += o[i];
      const xf = rmsnorm(x, w.rmsFfn[l]);
      const h1 = matvec(w.w1[l], xf, hiddenDim, dim);
      const h3 = matvec(w.w3[l], xf, hiddenDim, dim);
      for (let i = 0; i < hiddenDim; i++) h1[i] = (h1[i] / (1 + Math.exp(-h1[i]))) * h3[i];
      const f = matvec(w.w2[l], h1, dim, hiddenDim);
      for (let i = 0; i < dim; i++) x[i] += f[i];
    }
    return matvec(w.wcls, rmsnorm(x, w.rmsFinal), cfg.vocabSize, dim);
  }
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** log softmax(logits)[target] in float64. */
export function logprob(logits: ArrayLike<number>, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return logits[target] - max - Math.log(sum);
}

/**
 * Relative error of one logits vector: max_j |a_j - b_j| / max_j |b_j| (b = reference).
 * Normalising by the reference's largest magnitude (not elementwise) keeps near-zero logits from
 * blowing the ratio up, while a wrong position or a wrong cache entry moves many logits by O(1).
 */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

/** A llama2.c tokenizer (tok*.bin), decode only. */
export class Llama2cVocab {
  constructor(readonly pieces: Uint8Array[]) {}

  static fromFile(path: string | URL, vocabSize: number): Llama2cVocab {
    const bytes = Deno.readFileSync(path);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let off = 4; // int32 max_token_length
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < vocabSize; i++) {
      off += 4; // float32 score
      const len = view.getInt32(off, true);
      off += 4;
      pieces.push(bytes.slice(off, off + len));
      off += len;
    }
    return new Llama2cVocab(pieces);
  }

  /** Decode like llama2.c: strip the leading space after BOS, "<0xHH>" pieces are raw bytes. */
  decode(ids: number[], bos = 1): string {
    const out: number[] = [];
    let prev = -1;
    for (const id of ids) {
      let piece = this.pieces[id];
      const text = new TextDecoder().decode(piece);
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
      if (m) piece = new Uint8Array([parseInt(m[1], 16)]);
      else if (prev === bos && piece[0] === 0x20) piece = piece.subarray(1);
      if (id !== bos) out.push(...piece);
      prev = id;
    }
    return new TextDecoder().decode(new Uint8Array(out));
  }
}

/** Test material folder: $SINKSTREAM_SHARED or ../shared next to the repo root. */
export function sharedDir(): URL {
  const env = Deno.env.get("SINKSTREAM_SHARED");
  if (env) return new URL(env.endsWith("/") ? env : env + "/", `file://${Deno.cwd()}/`);
  return new URL("../../../shared/", import.meta.url);
}
