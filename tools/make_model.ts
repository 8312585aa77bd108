/**
 * deno task make-model --shape NAME --dtype f32|f16|bf16 --out DIR [--seed N] [--tokenizer PATH]
 *   [--format hf|gguf]   (gguf: --out FILE.gguf)
 */
import {
  optChoice,
  optNumber,
  parseFlags,
  requireString,
  resolvePath,
  runMain,
  UsageError,
} from "./lib/cli.ts";
import { makeModel, SHAPES } from "./lib/make_model.ts";

const USAGE =
  `usage: deno task make-model --shape NAME --dtype f32|f16|bf16 --out DIR [--seed N] [--tokenizer PATH]
         [--format hf|gguf]
  shapes: ${Object.keys(SHAPES).join(", ")}
  Writes a random-weight Hugging Face folder (config.json, model.safetensors, tokenizer.bin), or with
  --format gguf one GGUF file (--out FILE.gguf) with the tokenizer in it.`;

await runMain(USAGE, async () => {
  const f = parseFlags(Deno.args, {
    shape: { type: "string" },
    dtype: { type: "string" },
    out: { type: "string" },
    seed: { type: "string" },
    tokenizer: { type: "string" },
    format: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(USAGE);
    return;
  }
  const shape = requireString(f.shape, "shape");
  if (!(shape in SHAPES)) {
    throw new UsageError(`unknown shape "${shape}" (known: ${Object.keys(SHAPES).join(", ")})`);
  }
  const dtype = optChoice(requireString(f.dtype, "dtype"), "dtype", ["f32", "f16", "bf16"] as const)!;
  const out = resolvePath(requireString(f.out, "out"));
  const seed = optNumber(f.seed, "seed", { integer: true, min: 0 });
  const format = optChoice(f.format, "format", ["hf", "gguf"] as const);
  const t0 = performance.now();
  const r = await makeModel({
    shape,
    dtype,
    out,
    seed,
    format,
    tokenizer: typeof f.tokenizer === "string" ? resolvePath(f.tokenizer) : undefined,
  });
  console.log(
    `wrote ${r.dir}: ${shape} ${dtype}, ${r.nParams} params, ${(r.bytes / 2 ** 20).toFixed(1)} MiB, ` +
      `tokenizer ${r.tokenizer} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
});
