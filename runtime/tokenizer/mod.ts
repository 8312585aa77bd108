/**
 * Tokenizer discovery: loadTokenizer(modelPath, tokenizerPath?).
 *  - HF folder: tokenizer.json (+ tokenizer_config.json); else tokenizer.bin / tok*.bin in it
 *    (folders written by `deno task make-model`).
 *  - GGUF file: its own tokenizer (tokenizer.ggml.*), unless a tokenizer path is given.
 *  - llama2.c checkpoint file: the tokenizer path given, else tok<vocab>.bin, tokenizer.bin
 *    or tok*.bin beside it.
 *  - tokenizerPath may be a tokenizer.json, a folder holding one, a GGUF file or a llama2.c tokenizer file.
 */
import type { Tokenizer } from "../types.ts";
import { isGgufFile } from "../gguf.ts";
import { loadGgufTokenizer } from "./gguf.ts";
import { HfTokenizer } from "./hf.ts";
import { Llama2cTokenizer } from "./llama2c.ts";

export { HfTokenizer, type HfTokenizerOptions } from "./hf.ts";
export { Llama2cTokenizer, type Llama2cTokenizerOptions } from "./llama2c.ts";
export { ggufTokenizer, loadGgufTokenizer } from "./gguf.ts";

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

interface ModelMeta {
  vocabSize?: number;
  bosId?: number;
  eosId?: number;
}

async function folderMeta(dir: string): Promise<ModelMeta> {
  try {
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    const num = (v: unknown) => (typeof v === "number" ? v : undefined);
    return { vocabSize: num(cfg.vocab_size), bosId: num(cfg.bos_token_id), eosId: num(cfg.eos_token_id) };
  } catch {
    return {};
  }
}

/** vocab_size from a llama2.c checkpoint header (7 int32; negative vocab = unshared classifier). */
async function llama2cMeta(file: string): Promise<ModelMeta> {
  try {
    using f = await Deno.open(file);
    const buf = new Uint8Array(28);
    let n = 0;
    while (n < 28) {
      const r = await f.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    if (n < 28) return {};
    const v = Math.abs(new DataView(buf.buffer).getInt32(20, true));
    return v > 0 && v < 1 << 24 ? { vocabSize: v } : {};
  } catch {
    return {};
  }
}

async function findBin(dir: string, vocabSize?: number): Promise<string | null> {
  if (vocabSize !== undefined && (await statOrNull(`${dir}/tok${vocabSize}.bin`))?.isFile) {
    return `${dir}/tok${vocabSize}.bin`;
  }
  if ((await statOrNull(`${dir}/tokenizer.bin`))?.isFile) return `${dir}/tokenizer.bin`;
  const cands: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /^tok.*\.bin$/.test(e.name)) cands.push(e.name);
  }
  cands.sort();
  return cands.length ? `${dir}/${cands[0]}` : null;
}

async function loadFrom(path: string, meta: ModelMeta): Promise<Tokenizer> {
  const st = await statOrNull(path);
  if (!st) throw new Error(`tokenizer not found: ${path}`);
  if (st.isDirectory) {
    if ((await statOrNull(`${path}/tokenizer.json`))?.isFile) return await HfTokenizer.load(path, meta);
    const bin = await findBin(path, meta.vocabSize);
    if (bin) return await Llama2cTokenizer.load(bin, llamaOpts(meta));
    throw new Error(`no tokenizer.json, tokenizer.bin or tok*.bin in ${path}`);
  }
  if (path.endsWith(".json")) return await HfTokenizer.load(path, meta);
  if (await isGgufFile(path)) return await loadGgufTokenizer(path);
  return await Llama2cTokenizer.load(path, llamaOpts(meta));
}

function llamaOpts(meta: ModelMeta) {
  // A tokenizer file may hold fewer entries than the model's (padded) vocabulary: don't force it.
  return { bosId: meta.bosId, eosId: meta.eosId };
}

/** Find and load the tokenizer of a model (see the module comment for the search order). */
export async function loadTokenizer(modelPath: string, tokenizerPath?: string): Promise<Tokenizer> {
  const st = await statOrNull(modelPath);
  if (!st) throw new Error(`model not found: ${modelPath}`);
  if (st.isFile && !tokenizerPath && await isGgufFile(modelPath)) return await loadGgufTokenizer(modelPath);
  const meta = st.isDirectory ? await folderMeta(modelPath) : await llama2cMeta(modelPath);
  if (tokenizerPath) return await loadFrom(tokenizerPath, meta);
  if (st.isDirectory) return await loadFrom(modelPath, meta);
  const dir = dirname(modelPath);
  const bin = await findBin(dir, meta.vocabSize);
  if (!bin) {
    throw new Error(
      `no tokenizer beside ${modelPath} (looked for tok*.bin, tokenizer.bin); pass a tokenizer path`,
    );
  }
  return await Llama2cTokenizer.load(bin, llamaOpts(meta));
}
