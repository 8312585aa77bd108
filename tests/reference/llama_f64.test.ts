// Validates the float64 reference on its own, before it is used to judge the engine.
import assert from "node:assert/strict";
import { argmax, Llama2cVocab, LlamaF64, RefSequence, relErr, rope, sharedDir } from "./llama_f64.ts";

const MODEL_DIR = new URL("models/stories260K/", sharedDir());
const STORY =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.";

Deno.test("reference: stories260K header parsed", () => {
  const m = LlamaF64.fromFile(new URL("stories260K.bin", MODEL_DIR));
  assert.deepEqual(
    { ...m.config },
    {
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 512,
      headSize: 8,
      kvDim: 32,
      sharedClassifier: true,
    },
  );
});

Deno.test("reference: greedy decoding from BOS tells the known story", () => {
  const m = LlamaF64.fromFile(new URL("stories260K.bin", MODEL_DIR));
  const vocab = Llama2cVocab.fromFile(new URL("tok512.bin", MODEL_DIR), m.config.vocabSize);
  const seq = new RefSequence(m, { kind: "dense" });
  const ids = [1];
  let text = "";
  while (ids.length < 64 && !text.startsWith(STORY)) {
    ids.push(argmax(seq.feed(ids[ids.length - 1])));
    text = vocab.decode(ids);
  }
  assert.ok(text.startsWith(STORY), `got ${JSON.stringify(text)} from ${ids.join(",")}`);
});

Deno.test("reference: rope is a rotation; relative positions only matter", () => {
  const q = Float64Array.from({ length: 16 }, (_, i) => Math.sin(i + 1));
  const k = Float64Array.from({ length: 16 }, (_, i) => Math.cos(3 * i + 2));
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, x, i) => s + x * b[i], 0);
  const d1 = dot(rope(q, 8, 10), rope(k, 8, 3));
  const d2 = dot(rope(q, 8, 1007), rope(k, 8, 1000));
  assert.ok(Math.abs(d1 - d2) < 1e-12);
  assert.ok(Math.abs(dot(rope(q, 8, 5), rope(q, 8, 5)) - dot(q, q)) < 1e-12);
});

Deno.test("reference: policies agree before the first eviction and differ after", () => {
  const m = LlamaF64.fromFile(new URL("stories260K.bin", MODEL_DIR));
  const W = 16;
  const s = new RefSequence(m, { kind: "streaming", sinks: 4, window: W });
  const w = new RefSequence(m, { kind: "window", window: W });
  const d = new RefSequence(m, { kind: "dense" });
  for (let t = 0; t < 40; t++) {
    const tok = t === 0 ? 1 : (t * 37 + 11) % 512;
    const [ls, lw, ld] = [s.feed(tok), w.feed(tok), d.feed(tok)];
    if (t < W) {
      assert.ok(relErr(ls, ld) < 1e-12 && relErr(lw, ld) < 1e-12, `step ${t}`);
    } else {
      assert.ok(relErr(ls, lw) > 1e-3, `streaming == window at step ${t}`);
      assert.ok(relErr(lw, ld) > 1e-3, `window == dense at step ${t}`);
    }
  }
  assert.deepEqual(s.cacheIndices(), [0, 1, 2, 3, ...Array.from({ length: 12 }, (_, i) => 28 + i)]);
  assert.deepEqual(w.cacheIndices(), Array.from({ length: 16 }, (_, i) => 24 + i));
  assert.equal(d.cacheIndices().length, 40);
  assert.equal(s.evicted, 24);
});
