/**
 * Any model we load (Hugging Face folder, llama2.c checkpoint, GGUF file) written as a GGUF v3 file of
 * the llama architecture (the logic of `deno task convert`). The tensors come from the C library's
 * export (ss_model_export_*: the quantization of conversion at load, Q/K rows in GGUF's RoPE layout;
 * matrices whose rows are not whole 32-blocks stay F16 at q8_0 / q4_0, as llama.cpp's quantizer does),
 * the metadata from tools/lib/gguf_meta.ts.
 */
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { loadModel } from "../../runtime/native_engine.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import type { WeightDtype } from "../../runtime/types.ts";
import { llamaMetadata, tokenizerMetadata } from "./gguf_meta.ts";
import { writeGguf } from "./gguf_write.ts";

export interface ConvertOptions {
  input: string;
  output: string;
  dtype: WeightDtype;
  /** Tokenizer to embed (default: the model's own, found as loadTokenizer finds it). */
  tokenizer?: string;
  /** general.name (default: the input's file or folder name). */
  name?: string;
}

export interface ConvertResult {
  bytes: number;
  tensors: number;
  /** Tensors per exported type. */
  types: Partial<Record<WeightDtype, number>>;
}

export async function convertToGguf(opts: ConvertOptions): Promise<ConvertResult> {
  await ensureNativeLibrary();
  using model = await loadModel(opts.input);
  const tok = await loadTokenizer(opts.input, opts.tokenizer);
  const info = model.info;
  const tensors = model.exportedTensors(opts.dtype).map((t) => ({
    name: t.name,
    dtype: t.dtype,
    ne: t.nDims === 1 ? [t.ne[0]] : [t.ne[0], t.ne[1]],
    rowBytes: t.rowBytes,
  }));
  const bos = info.bosTokenId >= 0 ? info.bosTokenId : tok.bosId;
  const eos = info.eosTokenId >= 0 ? info.eosTokenId : tok.eosId;
  const name = opts.name ?? opts.input.replace(/\/+$/, "").split("/").pop() ?? "model";
  const kv = [...llamaMetadata(info, name, opts.dtype), ...tokenizerMetadata(tok, info.vocabSize, bos, eos)];
  const bytes = await writeGguf(opts.output, kv, tensors, (_t, i, row0, n, dst) => {
    model.exportRows(i, opts.dtype, row0, n, dst);
  });
  const types: Partial<Record<WeightDtype, number>> = {};
  for (const t of tensors) types[t.dtype] = (types[t.dtype] ?? 0) + 1;
  return { bytes, tensors: tensors.length, types };
}
