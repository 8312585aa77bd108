/**
 * The perplexity experiment on our own committed model (tests/fixtures/sink-stories/, trained by
 * tools/train/ with BOS at position 0 of every window; its README has the recipe and measurements):
 * the folder loads through our HF loader and its tokenizer round-trips; streaming with 4 sinks stays
 * within 5% of the sliding window with recomputation once the cache evicts; dense attention collapses
 * past the training length.
 *
 * Not asserted: window attention collapsing after the first eviction (issue 14's ">= 2x streaming").
 * The committed model has no attention sink yet (0.009-0.045 of its attention on position 0 per layer
 * after 1000 steps), and on it window equals streaming within 0.3%: a test for that collapse would fail,
 * so it is not claimed (docs/decisions.md D63).
 */
import assert from "node:assert/strict";
import { evalPerplexity, sampleStream } from "../../tools/lib/eval_ppl.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import { loadModel } from "../../runtime/native_engine.ts";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { repo } from "../runtime/_shared.ts";

const MODEL = repo("tests/fixtures/sink-stories");

function meanFrom(nlls: number[], from: number): number {
  // nlls[i] predicts stream token i + 1: the tokens predicted once the cache has evicted.
  const part = nlls.slice(from - 1);
  return Math.exp(part.reduce((a, b) => a + b, 0) / part.length);
}

Deno.test("sink-stories: the HF folder loads, with its own tokenizer and chat template", async () => {
  await ensureNativeLibrary();
  using model = await loadModel(MODEL);
  const tok = await loadTokenizer(MODEL);
  assert.equal(model.info.vocabSize, tok.vocabSize);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.ok(tok.chatTemplate && tok.chatTemplate.includes("messages"));
  const text = 'Once upon a time, a little dog named Max found a red ball. "Look!" he said. Ünïcode ☃ too.';
  const ids = tok.encode(text);
  assert.ok(ids.length < text.length, `${ids.length} tokens for ${text.length} characters: no merges?`);
  assert.equal(tok.decode(ids), text);
});

Deno.test("sink-stories: 4 sinks match recomputation after the first eviction; dense collapses past training", async () => {
  const W = 128;
  const stream = await sampleStream(MODEL, 1024, 7, false, true);
  assert.equal(stream.length, 1024);
  const run = (policy: "dense" | "streaming" | "recompute") =>
    evalPerplexity({
      model: MODEL,
      tokens: stream,
      policy,
      capacity: policy === "dense" ? undefined : W,
      sinks: 4,
    });
  const streaming = await run("streaming");
  const recompute = await run("recompute");
  const dense = await run("dense");
  // Token W is the first one fed after the cache is full, when the first token is evicted.
  const s = meanFrom(streaming.nlls, W + 1);
  const r = meanFrom(recompute.nlls, W + 1);
  assert.ok(
    Math.abs(s / r - 1) <= 0.05,
    `after token ${W}: streaming ${s.toFixed(3)}, recompute ${r.toFixed(3)}`,
  );
  // Past twice the training length (256), dense attention sees positions it never trained on.
  const d2 = meanFrom(dense.nlls, 2 * dense.maxSeqLen);
  const r2 = meanFrom(recompute.nlls, 2 * dense.maxSeqLen);
  assert.equal(dense.maxSeqLen, 256);
  assert.ok(
    d2 >= 1.5 * r2,
    `after token ${2 * dense.maxSeqLen}: dense ${d2.toFixed(2)}, recompute ${r2.toFixed(2)}`,
  );
});
