/** deno task convert IN OUT.gguf --dtype f32|f16|bf16|q8_0|q4_0 [--tokenizer PATH] [--name NAME] */
import {
  optChoice,
  parseFlags,
  requireString,
  resolvePath,
  runMain,
  UsageError,
  WEIGHT_DTYPES,
} from "./lib/cli.ts";
import { convertToGguf } from "./lib/convert.ts";

const USAGE =
  `usage: deno task convert IN OUT.gguf --dtype f32|f16|bf16|q8_0|q4_0 [--tokenizer PATH] [--name NAME]
  IN: any model sinkstream loads (Hugging Face folder, llama2.c .bin, GGUF file). Writes a GGUF v3 file of
  the llama architecture with the tokenizer embedded (tokenizer.ggml.*). At q8_0 / q4_0, matrices whose rows
  are not a whole number of 32-blocks are written as f16.`;

await runMain(USAGE, async () => {
  const args = [...Deno.args];
  const positional: string[] = [];
  while (args.length && !args[0].startsWith("-")) positional.push(args.shift()!);
  const f = parseFlags(args, {
    dtype: { type: "string" },
    tokenizer: { type: "string" },
    name: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(USAGE);
    return;
  }
  if (positional.length !== 2) throw new UsageError("need IN and OUT.gguf");
  const dtype = optChoice(requireString(f.dtype, "dtype"), "dtype", WEIGHT_DTYPES)!;
  const [input, output] = positional.map(resolvePath);
  const t0 = performance.now();
  const r = await convertToGguf({
    input,
    output,
    dtype,
    tokenizer: typeof f.tokenizer === "string" ? resolvePath(f.tokenizer) : undefined,
    name: typeof f.name === "string" ? f.name : undefined,
  });
  const types = Object.entries(r.types).map(([k, v]) => `${v} ${k}`).join(", ");
  console.log(
    `wrote ${output}: ${r.tensors} tensors (${types}), ${(r.bytes / 2 ** 20).toFixed(1)} MiB ` +
      `(${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
});
