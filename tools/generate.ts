/**
 * deno task generate --model PATH --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P]
 *   [--top-k K] [--seed S] [--sinks S] [--window W] [--policy streaming|window|dense]
 *   [--threads N] [--tokenizer PATH] [--weights TYPE] [--kv-dtype f32|f16]
 * Streams the continuation to stdout; a summary goes to stderr.
 */
import {
  KV_DTYPES,
  optChoice,
  optNumber,
  parseFlags,
  requireString,
  resolvePath,
  runMain,
  UsageError,
  WEIGHT_DTYPES,
} from "./lib/cli.ts";
import { generate } from "./lib/generate.ts";

const USAGE =
  `usage: deno task generate --model PATH --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P]
         [--top-k K] [--seed S] [--sinks S] [--window W] [--policy streaming|window|dense]
         [--threads N] [--tokenizer PATH] [--weights f32|f16|bf16|q8_0|q4_0] [--kv-dtype f32|f16] [--quiet]
  PATH: a Hugging Face folder, a GGUF file or a llama2.c .bin checkpoint. Greedy unless --temperature > 0.
  --weights converts the weights at load (default: the file's types).`;

await runMain(USAGE, async () => {
  const f = parseFlags(Deno.args, {
    model: { type: "string" },
    prompt: { type: "string" },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-p": { type: "string" },
    "top-k": { type: "string" },
    seed: { type: "string" },
    sinks: { type: "string" },
    window: { type: "string" },
    policy: { type: "string" },
    threads: { type: "string" },
    tokenizer: { type: "string" },
    weights: { type: "string" },
    "kv-dtype": { type: "string" },
    quiet: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(USAGE);
    return;
  }
  const model = resolvePath(requireString(f.model, "model"));
  if (typeof f.prompt !== "string") throw new UsageError("--prompt is required (may be empty: --prompt '')");
  const enc = new TextEncoder();
  const r = await generate({
    model,
    prompt: f.prompt,
    tokenizer: typeof f.tokenizer === "string" ? resolvePath(f.tokenizer) : undefined,
    maxTokens: optNumber(f["max-tokens"], "max-tokens", { integer: true, min: 1 }),
    temperature: optNumber(f.temperature, "temperature", { min: 0 }),
    topP: optNumber(f["top-p"], "top-p", { min: 0, minExclusive: true, max: 1 }),
    topK: optNumber(f["top-k"], "top-k", { integer: true, min: 0 }),
    seed: optNumber(f.seed, "seed", { integer: true, min: 0 }),
    sinks: optNumber(f.sinks, "sinks", { integer: true, min: 0 }),
    capacity: optNumber(f.window, "window", { integer: true, min: 1 }),
    policy: optChoice(f.policy, "policy", ["streaming", "window", "dense"] as const),
    threads: optNumber(f.threads, "threads", { integer: true, min: 0 }),
    weights: optChoice(f.weights, "weights", WEIGHT_DTYPES),
    kvDtype: optChoice(f["kv-dtype"], "kv-dtype", KV_DTYPES),
    onText: async (s) => {
      await Deno.stdout.write(enc.encode(s));
    },
  });
  await Deno.stdout.write(enc.encode("\n"));
  if (!f.quiet) {
    const tps = r.tokens.length / Math.max(r.decodeSeconds, 1e-9);
    console.error(
      `[${r.promptTokens.length} prompt tokens in ${
        r.prefillSeconds.toFixed(3)
      } s, ${r.tokens.length} generated ` +
        `(${tps.toFixed(1)} tok/s), stop: ${r.stopReason}, cache ${r.stats.cached}/${r.stats.capacity} ` +
        `(${r.stats.policy}, evicted ${r.stats.evicted})]`,
    );
  }
});
