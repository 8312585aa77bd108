/**
 * The StreamingLLM perplexity experiment on one long stream:
 *   deno task bench:ppl [--model PATH] [--tokens N] [--window W] [--sinks S] [--seed K] [--out FILE]
 *
 * The stream is in-distribution text for the model: stories sampled independently from BOS
 * (temperature 1, each in a fresh dense sequence, until EOS or 400 tokens) and concatenated into
 * one long text that starts with a single BOS, like the paper's concatenated books (with
 * --bos-between, each story keeps its BOS, as the training data is laid out). Sampling never
 * uses the policies under test.
 * Then the stream's perplexity is measured under dense (capacity = stream length, so positions
 * run past the training length), window, sliding window with recomputation, and streaming,
 * overall and per 512-token segment.
 */
import { parseArgs } from "node:util";
import { ensureNativeLibrary } from "../runtime/ffi.ts";
import { evalPerplexity, type EvalPolicy, sampleStream } from "../tools/lib/eval_ppl.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: {
      type: "string",
      default: new URL("../../shared/models/stories260K/stories260K.bin", import.meta.url).pathname,
    },
    tokens: { type: "string", default: "4096" },
    window: { type: "string", default: "128" },
    sinks: { type: "string", default: "4" },
    seed: { type: "string", default: "1" },
    out: { type: "string" },
    "bos-between": { type: "boolean", default: false },
  },
});
const nTokens = Number(values.tokens);
const window = Number(values.window);
const sinks = Number(values.sinks);

await ensureNativeLibrary();
const t0 = performance.now();
const stream = await sampleStream(values.model!, nTokens, Number(values.seed), values["bos-between"]!);
console.log(`stream: ${stream.length} tokens sampled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(stream));

const runs: { label: string; policy: EvalPolicy; window?: number; sinks?: number }[] = [
  { label: "dense", policy: "dense" },
  { label: `window (W=${window})`, policy: "window", window },
  { label: `recompute (W=${window})`, policy: "recompute", window },
  { label: `streaming (S=${sinks}, W=${window})`, policy: "streaming", window, sinks },
];
const rows: string[][] = [];
let segHeader: string[] = [];
for (const r of runs) {
  const res = await evalPerplexity({
    model: values.model!,
    tokens: stream,
    policy: r.policy,
    capacity: r.window,
    sinks: r.sinks,
  });
  segHeader = res.segments.map((s) => `${s.start}-${s.end}`);
  rows.push([
    r.label,
    res.ppl.toFixed(2),
    ...res.segments.map((s) => s.ppl.toFixed(2)),
    res.seconds.toFixed(1),
  ]);
}
const header = ["policy", "ppl (all)", ...segHeader.map((h) => `ppl ${h}`), "seconds"];
console.log(`| ${header.join(" | ")} |`);
console.log(`| ${header.map(() => "---").join(" | ")} |`);
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
