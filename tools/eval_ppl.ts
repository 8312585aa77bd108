/**
 * deno task eval-ppl --model PATH --tokens FILE.json --policy streaming|window|dense|recompute
 *   [--sinks S] [--window W] [--threads N] [--weights TYPE] [--kv-dtype f32|f16] [--json]
 * Perplexity of the whole stream and of each 512-token segment; the last line is `ppl=<number>`
 * (with --json: one JSON object instead).
 */
import {
  KV_DTYPES,
  optChoice,
  optNumber,
  parseFlags,
  requireString,
  resolvePath,
  runMain,
  WEIGHT_DTYPES,
} from "./lib/cli.ts";
import { EVAL_POLICIES, evalPerplexity, parseTokenFile } from "./lib/eval_ppl.ts";

const USAGE =
  `usage: deno task eval-ppl --model PATH --tokens FILE.json --policy streaming|window|dense|recompute
         [--sinks S] [--window W] [--threads N] [--weights f32|f16|bf16|q8_0|q4_0] [--kv-dtype f32|f16] [--json]
  FILE.json: a JSON array of token ids. --weights converts the weights at load (default: the file's types). Window W defaults to the model's training length
  (dense: the stream length, so positions run past the training length).`;

await runMain(USAGE, async () => {
  const f = parseFlags(Deno.args, {
    model: { type: "string" },
    tokens: { type: "string" },
    policy: { type: "string" },
    sinks: { type: "string" },
    window: { type: "string" },
    threads: { type: "string" },
    weights: { type: "string" },
    "kv-dtype": { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (f.help) {
    console.log(USAGE);
    return;
  }
  const model = resolvePath(requireString(f.model, "model"));
  const tokensPath = resolvePath(requireString(f.tokens, "tokens"));
  const policy = optChoice(requireString(f.policy, "policy"), "policy", EVAL_POLICIES)!;
  const tokens = parseTokenFile(await Deno.readTextFile(tokensPath), tokensPath);
  const json = f.json === true;
  const r = await evalPerplexity({
    model,
    tokens,
    policy,
    sinks: optNumber(f.sinks, "sinks", { integer: true, min: 0 }),
    capacity: optNumber(f.window, "window", { integer: true, min: 1 }),
    threads: optNumber(f.threads, "threads", { integer: true, min: 0 }),
    weights: optChoice(f.weights, "weights", WEIGHT_DTYPES),
    kvDtype: optChoice(f["kv-dtype"], "kv-dtype", KV_DTYPES),
    onProgress: json ? undefined : (done, total) => {
      if (Deno.stderr.isTerminal()) {
        Deno.stderr.writeSync(new TextEncoder().encode(`\r${done}/${total}`));
      }
    },
  });
  if (json) {
    const { nlls: _nlls, ...rest } = r;
    console.log(JSON.stringify(rest));
    return;
  }
  if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(new TextEncoder().encode("\r"));
  console.log(
    `policy=${r.policy} sinks=${r.sinks} window=${r.capacity} tokens=${r.nTokens} ` +
      `(model trained at ${r.maxSeqLen}) time=${r.seconds.toFixed(2)}s`,
  );
  for (const s of r.segments) {
    console.log(`segment ${s.start}-${s.end - 1}: ppl=${s.ppl.toFixed(4)} (${s.count} tokens)`);
  }
  console.log(`ppl=${r.ppl}`);
});
