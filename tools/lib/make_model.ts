/**
 * Random-weight Llama models as Hugging Face folders (config.json, model.safetensors,
 * tokenizer.bin) or GGUF files (the folder, written beside the file and converted by
 * tools/lib/convert.ts, then removed), for load / speed / memory tests at real shapes without real weights.
 * Weights: normal(0, 0.02) for embeddings and projections, 1 for RMSNorm weights, so
 * activations stay bounded. The file is streamed out in chunks (a 7B f16 model is 13 GB).
 */
import { fileURLToPath } from "node:url";
import { convertToGguf } from "./convert.ts";
import { type SafetensorsDtype, type TensorSpec, writeSafetensors } from "./safetensors.ts";

export interface ModelShape {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  maxSeqLen: number;
  tieEmbeddings: boolean;
}

export const SHAPES: Record<string, ModelShape> = {
  "stories260k": {
    dim: 64,
    hiddenDim: 172,
    nLayers: 5,
    nHeads: 8,
    nKvHeads: 4,
    vocabSize: 512,
    maxSeqLen: 512,
    tieEmbeddings: true,
  },
  "stories110m": {
    dim: 768,
    hiddenDim: 2048,
    nLayers: 12,
    nHeads: 12,
    nKvHeads: 12,
    vocabSize: 32000,
    maxSeqLen: 1024,
    tieEmbeddings: true,
  },
  "tinyllama-1.1b": {
    dim: 2048,
    hiddenDim: 5632,
    nLayers: 22,
    nHeads: 32,
    nKvHeads: 4,
    vocabSize: 32000,
    maxSeqLen: 2048,
    tieEmbeddings: false,
  },
  "llama2-7b": {
    dim: 4096,
    hiddenDim: 11008,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 32,
    vocabSize: 32000,
    maxSeqLen: 4096,
    tieEmbeddings: false,
  },
};

export type MakeModelDtype = "f32" | "f16" | "bf16";

const ST_DTYPE: Record<MakeModelDtype, SafetensorsDtype> = { f32: "F32", f16: "F16", bf16: "BF16" };
const TORCH_DTYPE: Record<MakeModelDtype, string> = { f32: "float32", f16: "float16", bf16: "bfloat16" };

export class MakeModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MakeModelError";
  }
}

export function getShape(name: string): ModelShape {
  const s = SHAPES[name];
  if (!s) throw new MakeModelError(`unknown shape "${name}" (known: ${Object.keys(SHAPES).join(", ")})`);
  return s;
}

/** The tensors of an HF Llama checkpoint of this shape, in file order. */
export function tensorSpecs(shape: ModelShape, dtype: MakeModelDtype): TensorSpec[] {
  const d = ST_DTYPE[dtype];
  const hd = shape.dim / shape.nHeads;
  const q = shape.nHeads * hd;
  const kv = shape.nKvHeads * hd;
  const t: TensorSpec[] = [{
    name: "model.embed_tokens.weight",
    dtype: d,
    shape: [shape.vocabSize, shape.dim],
  }];
  for (let l = 0; l < shape.nLayers; l++) {
    const p = `model.layers.${l}`;
    t.push(
      { name: `${p}.input_layernorm.weight`, dtype: d, shape: [shape.dim] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: d, shape: [q, shape.dim] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: d, shape: [kv, shape.dim] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: d, shape: [kv, shape.dim] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: d, shape: [shape.dim, q] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: d, shape: [shape.dim] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: d, shape: [shape.hiddenDim, shape.dim] },
      { name: `${p}.mlp.up_proj.weight`, dtype: d, shape: [shape.hiddenDim, shape.dim] },
      { name: `${p}.mlp.down_proj.weight`, dtype: d, shape: [shape.dim, shape.hiddenDim] },
    );
  }
  t.push({ name: "model.norm.weight", dtype: d, shape: [shape.dim] });
  if (!shape.tieEmbeddings) t.push({ name: "lm_head.weight", dtype: d, shape: [shape.vocabSize, shape.dim] });
  return t;
}

/** Weight scalars of the shape (tied embeddings counted once). */
export function paramCount(shape: ModelShape): number {
  return tensorSpecs(shape, "f32").reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
}

export function hfConfig(shape: ModelShape, dtype: MakeModelDtype): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: shape.dim,
    intermediate_size: shape.hiddenDim,
    num_hidden_layers: shape.nLayers,
    num_attention_heads: shape.nHeads,
    num_key_value_heads: shape.nKvHeads,
    head_dim: shape.dim / shape.nHeads,
    vocab_size: shape.vocabSize,
    max_position_embeddings: shape.maxSeqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    hidden_act: "silu",
    tie_word_embeddings: shape.tieEmbeddings,
    torch_dtype: TORCH_DTYPE[dtype],
    bos_token_id: 1,
    eos_token_id: 2,
    attention_bias: false,
  };
}

/** Seeded normal(0,1) generator: xorshift128+ uniforms through Box-Muller. */
export class NormalRng {
  #s0: bigint;
  #s1: bigint;
  #spare: number | null = null;
  constructor(seed: number | bigint) {
    let z = BigInt.asUintN(64, BigInt(seed) + 0x9e3779b97f4a7c15n);
    const mix = () => {
      z = BigInt.asUintN(64, z + 0x9e3779b97f4a7c15n);
      let x = z;
      x = BigInt.asUintN(64, (x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n);
      x = BigInt.asUintN(64, (x ^ (x >> 27n)) * 0x94d049bb133111ebn);
      return x ^ (x >> 31n);
    };
    this.#s0 = mix();
    this.#s1 = mix();
    // Work in two 32-bit halves for speed (BigInt is slow): keep a 128-bit xorshift state.
    this.#a = Number(this.#s0 & 0xffffffffn) | 1;
    this.#b = Number(this.#s0 >> 32n) | 0;
    this.#c = Number(this.#s1 & 0xffffffffn) | 0;
    this.#d = Number(this.#s1 >> 32n) | 0;
  }
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  /** xorshift128 (Marsaglia), uniform in (0, 1). */
  uniform(): number {
    let t = this.#d;
    const s = this.#a;
    this.#d = this.#c;
    this.#c = this.#b;
    this.#b = s;
    t ^= t << 11;
    t ^= t >>> 8;
    this.#a = t ^ s ^ (s >>> 19);
    return ((this.#a >>> 0) + 0.5) / 4294967296;
  }
  normal(): number {
    if (this.#spare !== null) {
      const v = this.#spare;
      this.#spare = null;
      return v;
    }
    const u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

export interface MakeModelOptions {
  shape: string;
  dtype: MakeModelDtype;
  /** The folder to write; with format "gguf", the .gguf file. */
  out: string;
  /** "hf" (default): a Hugging Face folder; "gguf": one GGUF file with the tokenizer in it. */
  format?: "hf" | "gguf";
  seed?: number;
  /** llama2.c tokenizer file copied as tokenizer.bin (default: by vocabulary size, from ../shared). */
  tokenizer?: string;
  /** Standard deviation of the random weights (default 0.02). */
  std?: number;
}

export interface MakeModelResult {
  dir: string;
  shape: ModelShape;
  nParams: number;
  bytes: number;
  tokenizer: string;
}

/** Default tokenizer of a vocabulary size: tok512.bin for 512, else Llama-2's 32000-token tokenizer.bin. */
export function defaultTokenizer(vocabSize: number): string {
  const base = Deno.env.get("SINKSTREAM_SHARED") ??
    fileURLToPath(new URL("../../../shared", import.meta.url));
  return vocabSize === 512
    ? `${base}/models/stories260K/tok512.bin`
    : `${base}/tokenizers/llama2/tokenizer.bin`;
}

export async function makeModel(opts: MakeModelOptions): Promise<MakeModelResult> {
  if (opts.format === "gguf") return await makeGguf(opts);
  const shape = getShape(opts.shape);
  if (!(opts.dtype in ST_DTYPE)) throw new MakeModelError(`unknown dtype "${opts.dtype}" (f32, f16, bf16)`);
  const std = opts.std ?? 0.02;
  const tokenizer = opts.tokenizer ?? defaultTokenizer(shape.vocabSize);
  try {
    if (!(await Deno.stat(tokenizer)).isFile) {
      throw new MakeModelError(`tokenizer ${tokenizer} is not a file`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new MakeModelError(`tokenizer ${tokenizer} not found`);
    throw e;
  }
  await Deno.mkdir(opts.out, { recursive: true });
  await Deno.writeTextFile(
    `${opts.out}/config.json`,
    JSON.stringify(hfConfig(shape, opts.dtype), null, 2) + "\n",
  );
  await Deno.writeTextFile(
    `${opts.out}/generation_config.json`,
    JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }, null, 2) + "\n",
  );
  await Deno.remove(`${opts.out}/tokenizer.bin`).catch(() => {});
  await Deno.copyFile(tokenizer, `${opts.out}/tokenizer.bin`);
  await Deno.chmod(`${opts.out}/tokenizer.bin`, 0o644);
  const rng = new NormalRng(opts.seed ?? 0);
  const specs = tensorSpecs(shape, opts.dtype);
  const bytes = await writeSafetensors(`${opts.out}/model.safetensors`, specs, (spec, _off, out) => {
    if (spec.shape.length === 1) out.fill(1); // RMSNorm weights
    else for (let i = 0; i < out.length; i++) out[i] = rng.normal() * std;
  });
  return { dir: opts.out, shape, nParams: paramCount(shape), bytes, tokenizer };
}

/** The model as a GGUF file: the Hugging Face folder written next to it, converted, removed. */
async function makeGguf(opts: MakeModelOptions): Promise<MakeModelResult> {
  if (!opts.out.endsWith(".gguf")) {
    throw new MakeModelError(`--format gguf writes a file: --out must end in .gguf`);
  }
  const tmp = `${opts.out}.hf-tmp`;
  try {
    const r = await makeModel({ ...opts, format: "hf", out: tmp });
    const c = await convertToGguf({
      input: tmp,
      output: opts.out,
      dtype: opts.dtype,
      name: `random ${opts.shape}`,
    });
    return { ...r, dir: opts.out, bytes: c.bytes };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
