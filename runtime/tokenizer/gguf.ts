/**
 * The tokenizer of a GGUF file (tokenizer.ggml.*): a SentencePiece-style vocabulary with scores and
 * token types (tokenizer.ggml.model "llama"), encoded and decoded as the llama2.c tokenizer does
 * (runtime/tokenizer/llama2c.ts), plus the chat template (tokenizer.chat_template).
 * Token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte (<0xXX>); unknown and
 * control tokens decode to nothing. Pieces spell spaces "▁" (U+2581); they are read as " ".
 */
import { ModelFormatError } from "../errors.ts";
import { type GgufMetadata, type GgufValue, readGgufMetadata } from "../gguf.ts";
import { Llama2cTokenizer, type ScoredVocab } from "./llama2c.ts";
import { tokenizerSource } from "./source_args.ts";

/** tokenizer.ggml.token_type values. */
export const GGUF_TOKEN_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/** SentencePiece's word-boundary mark, which GGUF vocabularies keep in their pieces. */
export const SPIECE_SPACE = "\u2581";

function numberArray(v: GgufValue | undefined, key: string, n: number, source: string): number[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== "number")) {
    throw new ModelFormatError(`${source}: GGUF metadata '${key}' must be an array of ${n} numbers`);
  }
  return v as number[];
}

function optionalId(meta: GgufMetadata, key: string, n: number, source: string): number | undefined {
  const v = meta.kv.get(key);
  if (v === undefined) return undefined;
  const id = typeof v === "bigint" ? Number(v) : v;
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= n) {
    throw new ModelFormatError(
      `${source}: GGUF metadata '${key}' = ${String(v)} is not a token id (vocab ${n})`,
    );
  }
  return id;
}

/** The tokenizer described by GGUF metadata. */
export function ggufTokenizer(meta: GgufMetadata, source: string): Llama2cTokenizer {
  const model = meta.kv.get("tokenizer.ggml.model");
  if (model === undefined) {
    throw new ModelFormatError(
      `${source}: GGUF file has no tokenizer (tokenizer.ggml.model); pass --tokenizer`,
    );
  }
  if (model !== "llama") {
    throw new ModelFormatError(
      `${source}: GGUF tokenizer.ggml.model "${
        String(model)
      }" is not supported (only "llama", a SentencePiece ` +
        `vocabulary with scores)`,
    );
  }
  const tokens = meta.kv.get("tokenizer.ggml.tokens");
  if (!Array.isArray(tokens) || tokens.length === 0 || tokens.some((t) => typeof t !== "string")) {
    throw new ModelFormatError(
      `${source}: GGUF metadata 'tokenizer.ggml.tokens' must be a non-empty string array`,
    );
  }
  const n = tokens.length;
  const scores = numberArray(meta.kv.get("tokenizer.ggml.scores"), "tokenizer.ggml.scores", n, source);
  const types = numberArray(meta.kv.get("tokenizer.ggml.token_type"), "tokenizer.ggml.token_type", n, source);
  const enc = new TextEncoder();
  const pieces = (tokens as string[]).map((t) => enc.encode(t.replaceAll(SPIECE_SPACE, " ")));
  const control = new Set<number>();
  if (types) {
    types.forEach((t, i) => {
      if (t === GGUF_TOKEN_TYPE.control || t === GGUF_TOKEN_TYPE.unknown) control.add(i);
    });
  }
  const bosId = optionalId(meta, "tokenizer.ggml.bos_token_id", n, source);
  const eosId = optionalId(meta, "tokenizer.ggml.eos_token_id", n, source);
  const unkId = optionalId(meta, "tokenizer.ggml.unknown_token_id", n, source) ?? 0;
  if (!types) { for (const id of [bosId ?? 1, eosId ?? 2]) if (id < n) control.add(id); }
  const template = meta.kv.get("tokenizer.chat_template");
  const prefix = meta.kv.get("tokenizer.ggml.add_space_prefix");
  const vocab: ScoredVocab = {
    pieces,
    scores: Float32Array.from(scores ?? new Array(n).fill(0)),
    maxTokenLength: pieces.reduce((m, p) => Math.max(m, p.length), 0),
    control,
    unkId,
    addDummyPrefix: prefix === undefined ? true : prefix === true,
    chatTemplate: typeof template === "string" ? template : undefined,
  };
  return new Llama2cTokenizer(vocab, { bosId, eosId });
}

/** Read the tokenizer of a GGUF file. */
export async function loadGgufTokenizer(path: string): Promise<Llama2cTokenizer> {
  const t = ggufTokenizer(await readGgufMetadata(path), path);
  t.source = tokenizerSource({ kind: "gguf", path });
  return t;
}
