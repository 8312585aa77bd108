/**
 * The StreamingLLM perplexity experiment on one long stream:
 *   deno task bench:ppl [--model PATH] [--tokens N] [--window W] [--sinks S] [--seed K] [--out FILE]
 *     [--bos-between | --eos-between] [--sink-counts 0,1,2,4,8] [--plot FILE] [--json FILE]
 *
 * The stream is in-distribution text for the model: stories sampled independently from BOS
 * (temperature 1, each in a fresh dense sequence, until EOS or 400 tokens) and concatenated into
 * one long text that starts with a single BOS, like the paper's concatenated books (with
 * --bos-between, each story keeps its BOS, as stories260K's training data is laid out; with
 * --eos-between each story keeps its closing EOS, as tools/train/ packs its data). Sampling never
 * uses the policies under test.
 * Then the stream's perplexity is measured under dense (capacity = stream length, so positions
 * run past the training length), window, sliding window with recomputation, and streaming,
 * overall and per 512-token segment; with --sink-counts, also streaming at each of those sink
 * counts (the paper's table of sinks; 0 sinks is window attention).
 * --plot FILE writes FILE.svg and FILE.png: log-perplexity against stream position for every policy
 * (the paper's Figure 3). --json FILE writes every run's figures (per-token NLLs included).
 */
import { parseArgs } from "node:util";
import { ensureNativeLibrary } from "../runtime/ffi.ts";
import { evalPerplexity, type EvalPolicy, type EvalResult, sampleStream } from "../tools/lib/eval_ppl.ts";
import { writePlot } from "../tools/lib/ppl_plot.ts";
import { loadModel } from "../runtime/native_engine.ts";

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
    "eos-between": { type: "boolean", default: false },
    "sink-counts": { type: "string" },
    plot: { type: "string" },
    json: { type: "string" },
    segment: { type: "string", default: "512" },
  },
});
const nTokens = Number(values.tokens);
const window = Number(values.window);
const sinks = Number(values.sinks);
const segment = Number(values.segment);
const sinkCounts = values["sink-counts"] === undefined ? [] : values["sink-counts"].split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 0 || n >= window) {
    throw new Error(`--sink-counts: "${s}" is not a sink count below the window ${window}`);
  }
  return n;
});

await ensureNativeLibrary();
let trainedAt: number;
{
  using m = await loadModel(values.model!);
  trainedAt = m.info.maxSeqLen;
}
const t0 = performance.now();
const stream = await sampleStream(
  values.model!,
  nTokens,
  Number(values.seed),
  values["bos-between"]!,
  values["eos-between"]!,
);
console.log(
  `stream: ${stream.length} tokens sampled in ${((performance.now() - t0) / 1000).toFixed(1)} s ` +
    `(model trained at ${trainedAt} tokens)`,
);
if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(stream));

interface Run {
  label: string;
  policy: EvalPolicy;
  window?: number;
  sinks?: number;
}

async function measure(runs: Run[]): Promise<{ run: Run; res: EvalResult }[]> {
  const out: { run: Run; res: EvalResult }[] = [];
  for (const r of runs) {
    const res = await evalPerplexity({
      model: values.model!,
      tokens: stream,
      policy: r.policy,
      capacity: r.window,
      sinks: r.sinks,
      segment,
    });
    out.push({ run: r, res });
  }
  return out;
}

function table(results: { run: Run; res: EvalResult }[], first: string): void {
  const segHeader = results[0].res.segments.map((s) => `${s.start}-${s.end}`);
  const header = [first, "ppl (all)", ...segHeader.map((h) => `ppl ${h}`), "seconds"];
  console.log(`| ${header.join(" | ")} |`);
  console.log(`| ${header.map(() => "---").join(" | ")} |`);
  for (const { run, res } of results) {
    const row = [
      run.label,
      res.ppl.toFixed(2),
      ...res.segments.map((s) => s.ppl.toFixed(2)),
      res.seconds.toFixed(1),
    ];
    console.log(`| ${row.join(" | ")} |`);
  }
}

const main = await measure([
  { label: "dense", policy: "dense" },
  { label: `window (W=${window})`, policy: "window", window },
  { label: `recompute (W=${window})`, policy: "recompute", window },
  { label: `streaming (S=${sinks}, W=${window})`, policy: "streaming", window, sinks },
]);
table(main, "policy");

let sweep: { run: Run; res: EvalResult }[] = [];
if (sinkCounts.length > 0) {
  console.log("");
  sweep = await measure(sinkCounts.map((s) => ({
    label: `streaming S=${s} (W=${window})`,
    policy: "streaming" as const,
    window,
    sinks: s,
  })));
  table(sweep, "sinks");
}

if (values.plot) {
  const files = await writePlot(
    values.plot,
    main.map(({ run, res }) => ({ label: run.label, nlls: res.nlls })),
    {
      title: `${values.model!.split("/").filter(Boolean).pop()}: ${stream.length}-token stream`,
      bin: Math.max(16, Math.round(stream.length / 64)),
      marks: [
        { at: window, label: `cache full (W=${window})` },
        ...(trainedAt !== window ? [{ at: trainedAt, label: `trained at ${trainedAt}` }] : []),
      ],
    },
  );
  console.log(`plot: ${files.svg}, ${files.png}`);
}
if (values.json) {
  const dump = (rs: { run: Run; res: EvalResult }[]) =>
    rs.map(({ run, res }) => ({ label: run.label, ...res, window: run.window, sinks: res.sinks }));
  await Deno.writeTextFile(
    values.json,
    JSON.stringify({ model: values.model, trainedAt, stream, runs: dump(main), sinkSweep: dump(sweep) }),
  );
}
