/**
 * Training text for tools/train/train.py: stories sampled from a model with our own engine.
 *   deno run -A tools/train/sample_stories.ts --model PATH --stories N --out FILE.jsonl [--seed K]
 *     [--batch B] [--max-tokens T] [--temperature 1] [--threads N (0: all cores)]
 *
 * Each story is sampled independently from BOS at the given temperature (story i uses seed K + i)
 * until EOS or T tokens, in batches of B sequences per engine step, decoded to text with the
 * model's own tokenizer and written one JSON string per line. The output is text, not token ids:
 * the trainer retokenizes it with its own tokenizer.
 */
import { parseArgs } from "node:util";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { createEngine, loadModel } from "../../runtime/native_engine.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    stories: { type: "string", default: "1000" },
    out: { type: "string" },
    seed: { type: "string", default: "1" },
    batch: { type: "string", default: "64" },
    "max-tokens": { type: "string", default: "400" },
    temperature: { type: "string", default: "1" },
    threads: { type: "string", default: "0" },
  },
});
if (!values.model || !values.out) {
  console.error("usage: sample_stories.ts --model PATH --stories N --out FILE.jsonl [--seed K] [--batch B]");
  Deno.exit(2);
}
const nStories = Number(values.stories);
const seed = Number(values.seed);
const batch = Number(values.batch);
const maxTokens = Number(values["max-tokens"]);
const temperature = Number(values.temperature);
for (const [k, v] of [["stories", nStories], ["batch", batch], ["max-tokens", maxTokens]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${v}`);
}

await ensureNativeLibrary();
using model = await loadModel(values.model);
const tok = await loadTokenizer(values.model);
const { bosTokenId: bos, eosTokenId: eos, maxSeqLen } = model.info;
const limit = Math.min(maxTokens, maxSeqLen - 1);
using engine = await createEngine(model, {
  threads: Number(values.threads),
  maxBatchTokens: Math.max(512, batch),
});
const out = await Deno.open(values.out, { write: true, create: true, truncate: true });
const enc = new TextEncoder();
const t0 = performance.now();
let written = 0;
let tokensTotal = 0;
for (let first = 0; first < nStories; first += batch) {
  const n = Math.min(batch, nStories - first);
  const live = Array.from({ length: n }, (_, j) => ({
    seq: engine.createSequence({ policy: "dense", capacity: limit + 1, temperature, seed: seed + first + j }),
    next: bos,
    tokens: [] as number[],
    done: false,
  }));
  while (live.some((s) => !s.done)) {
    const active = live.filter((s) => !s.done);
    const res = await engine.step(active.map((s) => ({ seq: s.seq, tokens: [s.next] })));
    res.forEach((r, j) => {
      if (r.error) throw r.error;
      const s = active[j];
      if (r.token === eos || r.token === bos) s.done = true;
      else {
        s.tokens.push(r.token);
        s.next = r.token;
        if (s.tokens.length >= limit) s.done = true;
      }
    });
  }
  let lines = "";
  for (const s of live) {
    engine.freeSequence(s.seq);
    const text = tok.decode(s.tokens).trim();
    tokensTotal += s.tokens.length;
    if (text) {
      lines += JSON.stringify(text) + "\n";
      written++;
    }
  }
  await out.write(enc.encode(lines));
  if ((first / batch) % 20 === 0) {
    const sec = (performance.now() - t0) / 1000;
    console.error(`${first + n}/${nStories} stories, ${tokensTotal} tokens, ${sec.toFixed(0)} s`);
  }
}
out.close();
const sec = (performance.now() - t0) / 1000;
console.error(`wrote ${written} stories (${tokensTotal} tokens) to ${values.out} in ${sec.toFixed(1)} s`);
