/**
 * sinkstream and llama.cpp side by side on the same GGUF file, the same threads, in one run:
 *
 *   flock /tmp/sinkstream-bench.lock deno task bench:vs-llamacpp MODEL.gguf [--threads 2] [--prompt 16]
 *       [--tokens 64] [--runs 3] [--batch 16] [--json]
 *
 * Both decode `tokens` greedy tokens after the same `prompt` ids (the file's tokenizer), batch 1, KV cache
 * f16 (both engines' default), nothing evicted; the runs alternate (sinkstream, llama.cpp, sinkstream, ...)
 * so that load from elsewhere hits both alike, and the median run of each is reported. llama.cpp is
 * node-llama-cpp 3.21.1's prebuilt CPU binary (tools/lib/llamacpp.ts). Also: sinkstream at --batch B
 * (B sequences decoding together: aggregate tok/s), the machine's memory read bandwidth with the same
 * threads (csrc/build/bench_membw) and the fraction of it each engine reaches, counting the file's weight
 * bytes per token (model info weightBytesPerToken) as the bytes read per token.
 */
import { parseArgs } from "node:util";
import { ensureNativeLibrary } from "../runtime/ffi.ts";
import { createEngine, loadModel, type NativeEngine } from "../runtime/native_engine.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { llamaCppGreedy } from "../tools/lib/llamacpp.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    threads: { type: "string", default: "2" },
    prompt: { type: "string", default: "16" },
    tokens: { type: "string", default: "64" },
    runs: { type: "string", default: "3" },
    batch: { type: "string", default: "16" },
    json: { type: "boolean", default: false },
  },
});
if (positionals.length !== 1) {
  console.error(
    "usage: deno task bench:vs-llamacpp MODEL.gguf [--threads 2] [--prompt 16] [--tokens 64] [--runs 3]",
  );
  Deno.exit(2);
}
const path = positionals[0];
const threads = Number(values.threads), nPrompt = Number(values.prompt), nTokens = Number(values.tokens);
const runs = Number(values.runs), batch = Number(values.batch);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Decode seconds of `n` greedy tokens after `prompt` for `b` sequences stepping together. */
async function ours(engine: NativeEngine, prompt: number[], n: number, b: number): Promise<number> {
  const seqs = Array.from(
    { length: b },
    () => engine.createSequence({ policy: "dense", capacity: prompt.length + n + 1 }),
  );
  try {
    let res = await engine.step(seqs.map((seq) => ({ seq, tokens: prompt })));
    const t0 = performance.now();
    for (let i = 1; i < n; i++) {
      res = await engine.step(seqs.map((seq, k) => ({ seq, tokens: [res[k].token] })));
    }
    return (performance.now() - t0) / 1000 / (n - 1);
  } finally {
    for (const s of seqs) engine.freeSequence(s);
  }
}

async function memoryBandwidth(t: number): Promise<number | null> {
  const bin = new URL("../csrc/build/bench_membw", import.meta.url).pathname;
  const make = await new Deno.Command("make", {
    args: ["-C", new URL("../csrc", import.meta.url).pathname, "bench"],
    stdout: "null",
    stderr: "null",
  }).output();
  if (!make.success) return null;
  const out = await new Deno.Command(bin, { args: ["--threads", String(t)], stdout: "piped" }).output();
  const m = /([0-9.]+) GB\/s/.exec(new TextDecoder().decode(out.stdout));
  return m ? Number(m[1]) : null;
}

await ensureNativeLibrary();
using model = await loadModel(path);
using engine = await createEngine(model, {
  threads,
  maxSequences: batch,
  maxBatchTokens: Math.max(512, batch * nPrompt),
});
const tok = await loadTokenizer(path);
const words = "Once upon a time there was a little girl named Lily who loved to play in the park with her dog"
  .split(" ");
let prompt = tok.encode(words.join(" "), { bos: true }).slice(0, nPrompt);
while (prompt.length < nPrompt) {
  prompt = [...prompt, ...tok.encode(" " + words[prompt.length % words.length])];
}
prompt = prompt.slice(0, nPrompt);

const oursS: number[] = [], theirsS: number[] = [];
for (let r = 0; r < runs; r++) {
  oursS.push(await ours(engine, prompt, nTokens, 1));
  const l = await llamaCppGreedy(path, {
    prompt,
    maxTokens: nTokens,
    threads,
    contextSize: nPrompt + nTokens + 16,
  });
  theirsS.push(l.decodeSeconds / (l.tokens.length - 1));
}
const batchS = await ours(engine, prompt, Math.min(nTokens, 32), batch);
const bw = await memoryBandwidth(threads);
const bytes = model.info.weightBytesPerToken;
const ourTps = 1 / median(oursS), theirTps = 1 / median(theirsS), batchTps = batch / batchS;
const frac = (tps: number) => (bw ? ((bytes * tps) / 1e9 / bw) : NaN);
const result = {
  model: path,
  weights: model.info.weightDtype,
  weightBytesPerToken: bytes,
  threads,
  prompt: nPrompt,
  tokens: nTokens,
  runs,
  sinkstream: {
    msPerToken: 1000 * median(oursS),
    tokPerS: ourTps,
    bandwidthFraction: frac(ourTps),
    runsMs: oursS.map((s) => 1000 * s),
  },
  llamacpp: {
    msPerToken: 1000 * median(theirsS),
    tokPerS: theirTps,
    bandwidthFraction: frac(theirTps),
    runsMs: theirsS.map((s) => 1000 * s),
  },
  ratio: ourTps / theirTps,
  batch: { size: batch, aggregateTokPerS: batchTps, vsBatch1: batchTps / ourTps },
  memoryBandwidthGBs: bw,
  loadAverage: Deno.loadavg(),
  date: new Date().toISOString(),
};
if (values.json) {
  console.log(JSON.stringify(result));
} else {
  const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : "n/a");
  console.log(
    `model ${path}: weights ${result.weights}, ${
      (bytes / 2 ** 20).toFixed(1)
    } MiB read per token, ${threads} threads`,
  );
  console.log(
    `memory read bandwidth (${threads} threads): ${bw?.toFixed(1) ?? "n/a"} GB/s; load average ${
      result.loadAverage.map((x) => x.toFixed(2)).join(" ")
    }`,
  );
  console.log("| engine | ms/token (median of " + runs + ") | tok/s | of bandwidth | runs (ms/token) |");
  console.log("| --- | ---: | ---: | ---: | --- |");
  console.log(
    `| sinkstream | ${result.sinkstream.msPerToken.toFixed(1)} | ${ourTps.toFixed(1)} | ${
      pct(result.sinkstream.bandwidthFraction)
    } | ${result.sinkstream.runsMs.map((x) => x.toFixed(1)).join(", ")} |`,
  );
  console.log(
    `| llama.cpp | ${result.llamacpp.msPerToken.toFixed(1)} | ${theirTps.toFixed(1)} | ${
      pct(result.llamacpp.bandwidthFraction)
    } | ${result.llamacpp.runsMs.map((x) => x.toFixed(1)).join(", ")} |`,
  );
  console.log(
    `sinkstream / llama.cpp tokens/s: ${result.ratio.toFixed(2)}x; sinkstream batch ${batch}: ${
      batchTps.toFixed(1)
    } tok/s aggregate (${result.batch.vsBatch1.toFixed(2)}x batch 1)`,
  );
}
