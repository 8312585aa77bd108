/** Loads a tokenizer again from its Tokenizer.source (in a Worker): the same file, the same options. */
import type { Tokenizer, TokenizerSource } from "../types.ts";
import { HfTokenizer } from "./hf.ts";
import { loadGgufTokenizer } from "./gguf.ts";
import { Llama2cTokenizer } from "./llama2c.ts";
import type { TokenizerSourceArgs } from "./source_args.ts";

export async function loadTokenizerFromSource(source: TokenizerSource): Promise<Tokenizer> {
  const args = source.args as TokenizerSourceArgs;
  if (args.kind === "hf") return await HfTokenizer.load(args.path, args.options);
  if (args.kind === "llama2c") return await Llama2cTokenizer.load(args.path, args.options);
  if (args.kind === "gguf") return await loadGgufTokenizer(args.path);
  throw new Error(`unknown tokenizer source ${JSON.stringify(args).slice(0, 200)}`);
}
