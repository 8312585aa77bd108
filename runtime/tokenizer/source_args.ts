/**
 * What a loaded tokenizer records about its files (Tokenizer.source), so that a Worker can load the
 * same tokenizer again: the loader is runtime/tokenizer/source.ts, the arguments name the file and the
 * options it was read with.
 */
import type { TokenizerSource } from "../types.ts";
import type { HfTokenizerOptions } from "./hf.ts";
import type { Llama2cTokenizerOptions } from "./llama2c.ts";

export type TokenizerSourceArgs =
  | { kind: "hf"; path: string; options: HfTokenizerOptions }
  | { kind: "llama2c"; path: string; options: Llama2cTokenizerOptions }
  | { kind: "gguf"; path: string };

const LOADER = new URL("./source.ts", import.meta.url).href;

export function tokenizerSource(args: TokenizerSourceArgs): TokenizerSource {
  return { module: LOADER, args: structuredClone(args) };
}
