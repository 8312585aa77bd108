/**
 * The llama2.c encoder (independent chunks, memo, heap: runtime/tokenizer/score_merge.ts) gives the
 * ids of llama2.c's plain O(n^2) merge loop, on tok512.bin and on Llama 2's 32000-piece tokenizer.bin.
 */
import assert from "node:assert/strict";
import { Llama2cTokenizer } from "../../runtime/tokenizer/mod.ts";
import { ReferenceLlama2cEncoder } from "./_llama2c_reference.ts";
import { shared } from "./_shared.ts";
import { mixedTexts, proseWords } from "./_texts.ts";

for (const file of ["models/stories260K/tok512.bin", "tokenizers/llama2/tokenizer.bin"]) {
  Deno.test(`llama2.c encoder = the reference merge loop over mixed texts (${file})`, async () => {
    const fast = await Llama2cTokenizer.load(shared(file));
    const ref = await ReferenceLlama2cEncoder.load(shared(file));
    const lines = (await Deno.readTextFile(shared("data/mt_bench.jsonl"))).split("\n").slice(0, 6);
    const texts = [
      ...lines.map((l) => l.slice(0, 300)),
      "aaaaaaaaaaaaaaaa",
      "   ",
      "x  y   z",
      ...mixedTexts(await proseWords(), 400, 40, file.length),
    ];
    for (const text of texts) {
      // Twice: the second run goes through the memo of merged chunks.
      assert.deepEqual(fast.encode(text), ref.encode(text), JSON.stringify(text));
      assert.deepEqual(fast.encode(text), ref.encode(text), `memo: ${JSON.stringify(text)}`);
    }
  });
}

Deno.test("llama2.c encoder: one long text equals the reference (chunks inside one text)", async () => {
  const fast = await Llama2cTokenizer.load(shared("models/stories260K/tok512.bin"));
  const ref = await ReferenceLlama2cEncoder.load(shared("models/stories260K/tok512.bin"));
  const text = mixedTexts(await proseWords(), 60, 60, 7).join("");
  assert.ok(text.length > 3000);
  assert.deepEqual(fast.encode(text), ref.encode(text));
});
