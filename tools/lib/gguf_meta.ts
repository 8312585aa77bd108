/**
 * GGUF metadata of a model we write: general.*, the llama hyper-parameters (the keys the C loader,
 * csrc/src/load_gguf.c, and llama.cpp read) and the tokenizer as tokenizer.ggml.* (a SentencePiece
 * vocabulary with scores and token types: runtime/tokenizer/gguf.ts reads it back).
 */
import type { ModelInfo, Tokenizer, WeightDtype } from "../../runtime/types.ts";
import { Llama2cTokenizer } from "../../runtime/tokenizer/llama2c.ts";
import { GGUF_TOKEN_TYPE, SPIECE_SPACE } from "../../runtime/tokenizer/gguf.ts";
import type { GgufKv } from "./gguf_write.ts";

/** llama.cpp's general.file_type (LLAMA_FTYPE_*) of a file whose matrices are mostly `dtype`. */
const FILE_TYPE: Record<WeightDtype, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };

export class GgufMetadataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GgufMetadataError";
  }
}

/** general.* and llama.* pairs for a model of this shape. */
export function llamaMetadata(info: ModelInfo, name: string, dtype: WeightDtype): GgufKv[] {
  const kv: GgufKv[] = [
    { key: "general.architecture", type: "string", value: "llama" },
    { key: "general.name", type: "string", value: name },
    { key: "general.file_type", type: "u32", value: FILE_TYPE[dtype] },
    { key: "llama.context_length", type: "u32", value: info.maxSeqLen },
    { key: "llama.embedding_length", type: "u32", value: info.dim },
    { key: "llama.block_count", type: "u32", value: info.nLayers },
    { key: "llama.feed_forward_length", type: "u32", value: info.hiddenDim },
    { key: "llama.attention.head_count", type: "u32", value: info.nHeads },
    { key: "llama.attention.head_count_kv", type: "u32", value: info.nKvHeads },
    { key: "llama.attention.key_length", type: "u32", value: info.headDim },
    { key: "llama.attention.value_length", type: "u32", value: info.headDim },
    { key: "llama.rope.dimension_count", type: "u32", value: info.headDim },
    { key: "llama.rope.freq_base", type: "f32", value: info.ropeTheta },
    { key: "llama.attention.layer_norm_rms_epsilon", type: "f32", value: info.rmsNormEps },
    { key: "llama.vocab_size", type: "u32", value: info.vocabSize },
  ];
  if (dtype === "q8_0" || dtype === "q4_0") {
    kv.push({ key: "general.quantization_version", type: "u32", value: 2 });
  }
  return kv;
}

const TYPE_ID = {
  normal: GGUF_TOKEN_TYPE.normal,
  unknown: GGUF_TOKEN_TYPE.unknown,
  control: GGUF_TOKEN_TYPE.control,
  byte: GGUF_TOKEN_TYPE.byte,
} as const;

/** A piece's bytes with every space spelled "▁", as SentencePiece vocabularies (and GGUF) keep them. */
function spiecePiece(bytes: Uint8Array): Uint8Array {
  const mark = new TextEncoder().encode(SPIECE_SPACE);
  let spaces = 0;
  for (const b of bytes) spaces += b === 0x20 ? 1 : 0;
  if (!spaces) return bytes;
  const out = new Uint8Array(bytes.length + spaces * (mark.length - 1));
  let o = 0;
  for (const b of bytes) {
    if (b === 0x20) out.set(mark, o), o += mark.length;
    else out[o++] = b;
  }
  return out;
}

/**
 * tokenizer.ggml.* (+ tokenizer.chat_template) of a SentencePiece-style tokenizer with scores (a
 * llama2.c tokenizer file, or one read from a GGUF file). `vocabSize`: the model's; a shorter tokenizer
 * is an error (llama.cpp needs one piece per embedding row).
 */
export function tokenizerMetadata(tok: Tokenizer, vocabSize: number, bosId: number, eosId: number): GgufKv[] {
  if (!(tok instanceof Llama2cTokenizer)) {
    throw new GgufMetadataError(
      "only SentencePiece-style tokenizers with scores (a llama2.c tokenizer.bin / tok*.bin, or a GGUF file's) " +
        "can be written as tokenizer.ggml.*; this model's is a Hugging Face tokenizer.json: pass --tokenizer",
    );
  }
  if (tok.vocabSize !== vocabSize) {
    throw new GgufMetadataError(
      `the tokenizer has ${tok.vocabSize} pieces but the model ${vocabSize} embeddings`,
    );
  }
  const pieces: Uint8Array[] = [];
  const scores = new Float32Array(vocabSize);
  const types = new Int32Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    pieces.push(spiecePiece(tok.pieceBytes(i)));
    scores[i] = tok.score(i);
    types[i] = TYPE_ID[tok.tokenType(i)];
  }
  const kv: GgufKv[] = [
    { key: "tokenizer.ggml.model", type: "string", value: "llama" },
    { key: "tokenizer.ggml.tokens", type: "array", elem: "string", value: pieces },
    { key: "tokenizer.ggml.scores", type: "array", elem: "f32", value: scores },
    { key: "tokenizer.ggml.token_type", type: "array", elem: "i32", value: types },
    { key: "tokenizer.ggml.bos_token_id", type: "u32", value: bosId },
    { key: "tokenizer.ggml.eos_token_id", type: "u32", value: eosId },
    { key: "tokenizer.ggml.unknown_token_id", type: "u32", value: tok.unkId },
    { key: "tokenizer.ggml.add_bos_token", type: "bool", value: true },
    { key: "tokenizer.ggml.add_eos_token", type: "bool", value: false },
    { key: "tokenizer.ggml.add_space_prefix", type: "bool", value: tok.addsDummyPrefix },
  ];
  if (tok.chatTemplate) kv.push({ key: "tokenizer.chat_template", type: "string", value: tok.chatTemplate });
  return kv;
}
