/**
 * Cross-check against llama.cpp (node-llama-cpp 3.21.1, pinned, its prebuilt CPU binary): the same GGUF
 * file — stories260K written by `deno task convert` at F32, F16 and Q8_0 — gives the same first 64 greedy
 * tokens in sinkstream and in llama.cpp, from the same prompt ids, with a cache large enough that
 * nothing is evicted (and an f16 KV cache in both: llama.cpp's default); and llama.cpp tokenizes the
 * prompt as our tokenizer read from that file does (so the tokenizer.ggml.* we write is the vocabulary
 * llama.cpp expects). The prompts are ones whose greedy path has no near tie (the top two logits of every
 * step at least 0.01 apart in our run, checked here): at a tie (e.g. "The little dog ran to the park and",
 * 0.0002 apart at step 18) rounding alone picks the token, in either engine.
 */
import assert from "node:assert/strict";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { createEngine, loadModel } from "../../runtime/native_engine.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import type { WeightDtype } from "../../runtime/types.ts";
import { convertToGguf } from "../../tools/lib/convert.ts";
import { llamaCppGreedy } from "../../tools/lib/llamacpp.ts";
import { shared } from "../runtime/_shared.ts";

const N = 64;
const PROMPTS = ["Once upon a time", "Lily and Ben went to the beach."];
const MIN_GAP = 0.01;

/** Our greedy tokens and the smallest gap between the top two logits along the way. */
async function ourGreedy(path: string, prompt: number[]): Promise<{ tokens: number[]; minGap: number }> {
  using model = await loadModel(path);
  using engine = await createEngine(model, { threads: 2, kvDtype: "f16" });
  const seq = engine.createSequence({ policy: "dense", capacity: 512 });
  const tokens: number[] = [];
  let feed = prompt, minGap = Infinity;
  while (tokens.length < N) {
    const [r] = await engine.step([{ seq, tokens: feed, logits: true }]);
    const l = r.logits!;
    let a = -Infinity, b = -Infinity;
    for (const v of l) {
      if (v > a) [a, b] = [v, a];
      else if (v > b) b = v;
    }
    minGap = Math.min(minGap, a - b);
    tokens.push(r.token);
    feed = [r.token];
  }
  return { tokens, minGap };
}

for (const dtype of ["f32", "f16", "q8_0"] as WeightDtype[]) {
  Deno.test(`llama.cpp cross-check: stories260K ${dtype} GGUF, first ${N} greedy tokens equal`, async () => {
    await ensureNativeLibrary();
    const dir = await Deno.makeTempDir({ prefix: "ss_llamacpp_" });
    try {
      const path = `${dir}/stories260K-${dtype}.gguf`;
      const r = await convertToGguf({
        input: shared("models/stories260K/stories260K.bin"),
        output: path,
        dtype,
      });
      if (dtype === "q8_0") {
        assert.ok((r.types.q8_0 ?? 0) > 20 && (r.types.f16 ?? 0) === 5, JSON.stringify(r.types));
      }
      const tok = await loadTokenizer(path);
      for (const text of PROMPTS) {
        const prompt = tok.encode(text, { bos: true });
        const ours = await ourGreedy(path, prompt);
        const theirs = await llamaCppGreedy(path, { prompt, maxTokens: N, threads: 2, text });
        assert.deepEqual(theirs.tokenized, prompt, `llama.cpp tokenizes "${text}" differently`);
        assert.ok(
          ours.minGap > MIN_GAP,
          `"${text}" has a near tie (${ours.minGap}): not a meaningful prompt`,
        );
        assert.equal(ours.tokens.length, N);
        assert.deepEqual(
          ours.tokens,
          theirs.tokens,
          `${dtype} "${text}": ${tok.decode(ours.tokens)} | ${tok.decode(theirs.tokens)}`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
