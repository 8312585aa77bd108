/**
 * The SentencePiece-BPE fast path of HfTokenizer (runtime/tokenizer/sentencepiece_bpe.ts) gives the ids of
 * @huggingface/tokenizers' own encode, special-token text included, on stories260K's tokenizer.json and
 * on variants of it (specials with lstrip / rstrip, a merge that joins across "▁").
 */
import assert from "node:assert/strict";
import { Tokenizer as Library } from "@huggingface/tokenizers";
import { HfTokenizer } from "../../runtime/tokenizer/mod.ts";
import { shared } from "./_shared.ts";
import { mixedTexts, proseWords } from "./_texts.ts";

type Json = Record<string, unknown>;
const dir = shared("models/stories260K-hf");
const baseJson = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`)) as Json;
const baseConfig = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)) as Json;

function variant(edit: (j: Json) => void): Json {
  const j = structuredClone(baseJson);
  edit(j);
  return j;
}

const VARIANTS: Record<string, Json> = {
  "as shipped": baseJson,
  "specials with lstrip and rstrip": variant((j) => {
    for (const t of j.added_tokens as Json[]) {
      if (t.content === "</s>") t.lstrip = true;
      if (t.content === "<s>") t.rstrip = true;
    }
  }),
  "a merge across ▁ (x + ▁y)": variant((j) => {
    const model = j.model as { vocab: Record<string, number>; merges: (string | string[])[] };
    const id = Object.keys(model.vocab).length;
    model.vocab["e\u2581t"] = id;
    model.merges.unshift(Array.isArray(model.merges[0]) ? ["e", "\u2581t"] : "e \u2581t");
  }),
};

for (const [name, json] of Object.entries(VARIANTS)) {
  Deno.test(`HF fast path = the library's encode over mixed texts (${name})`, async () => {
    const lib = new Library(json, baseConfig);
    const ours = new HfTokenizer(json, baseConfig);
    assert.equal(ours.encoder, "sentencepiece-bpe");
    const texts = mixedTexts(await proseWords(), 500, 40, name.length);
    texts.push(texts.join(""));
    for (const text of texts) {
      const want = text.length > 0 ? lib.encode(text, { add_special_tokens: false }).ids : [];
      assert.deepEqual(ours.encode(text), want, JSON.stringify(text.slice(0, 300)));
    }
  });
}

Deno.test("HF fast path: other tokenizer.json shapes use the library", () => {
  const metaspace = variant((j) => {
    j.normalizer = null;
    j.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false };
  });
  assert.equal(new HfTokenizer(metaspace, baseConfig).encoder, "library");
  const normalizedSpecial = variant((j) => ((j.added_tokens as Json[])[2].normalized = true));
  assert.equal(new HfTokenizer(normalizedSpecial, baseConfig).encoder, "library");
});
