import assert from "node:assert/strict";
import { HfTokenizer, Llama2cTokenizer, loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import { Detokenizer } from "../../runtime/detokenizer.ts";
import { shared, STORY_SENTENCE } from "./_shared.ts";

const hfDir = shared("models/stories260K-hf");
const binModel = shared("models/stories260K/stories260K.bin");

Deno.test("loadTokenizer picks tokenizer.json for an HF folder and tok512.bin beside a .bin", async () => {
  const hf = await loadTokenizer(hfDir);
  const l2 = await loadTokenizer(binModel);
  assert.ok(hf instanceof HfTokenizer);
  assert.ok(l2 instanceof Llama2cTokenizer);
  assert.equal(hf.vocabSize, 512);
  assert.equal(l2.vocabSize, 512);
  assert.equal(hf.bosId, 1);
  assert.equal(hf.eosId, 2);
  assert.equal(l2.bosId, 1);
  assert.equal(hf.specialTokens.bos_token, "<s>");
  const explicit = await loadTokenizer(binModel, shared("models/stories260K/tok512.bin"));
  assert.ok(explicit instanceof Llama2cTokenizer);
});

Deno.test("HF tokenizer.json and llama2.c tok512.bin encode the story sentence to the same ids", async () => {
  const hf = await loadTokenizer(hfDir);
  const l2 = await loadTokenizer(binModel);
  const a = hf.encode(STORY_SENTENCE, { bos: true });
  const b = l2.encode(STORY_SENTENCE, { bos: true });
  assert.deepEqual(a, b);
  assert.deepEqual(a.slice(0, 5), [1, 403, 407, 261, 378]);
  assert.equal(hf.decode(a), STORY_SENTENCE);
  assert.equal(l2.decode(b), STORY_SENTENCE);
  // Without BOS the ids are the same minus the first.
  assert.deepEqual(hf.encode(STORY_SENTENCE), a.slice(1));
  assert.deepEqual(l2.encode(STORY_SENTENCE, { eos: true }), [...a.slice(1), 2]);
});

Deno.test("both tokenizers agree on unicode, spaces, byte fallback", async () => {
  const hf = await loadTokenizer(hfDir);
  const l2 = await loadTokenizer(binModel);
  for (const text of ["é😀中 x", "  two  spaces\n\nnew", " lead", "Ünïcödé ☃ 🎉🎉", "a", ""]) {
    const ids = l2.encode(text);
    assert.deepEqual(hf.encode(text), ids, JSON.stringify(text));
    assert.equal(l2.decode(ids), text);
    assert.equal(hf.decode(ids), text);
  }
});

Deno.test("Llama-2 tokenizer.bin: 'Hello world' -> [1, 15043, 3186]", async () => {
  const t = await Llama2cTokenizer.load(shared("tokenizers/llama2/tokenizer.bin"));
  assert.equal(t.vocabSize, 32000);
  assert.deepEqual(t.encode("Hello world", { bos: true }), [1, 15043, 3186]);
  assert.deepEqual(t.encode("Hello world"), [15043, 3186]);
  assert.equal(t.decode([1, 15043, 3186]), "Hello world");
  // byte fallback: U+1F600 is not in the vocab -> 4 byte tokens (<0xF0> = 3 + 0xF0)
  const ids = t.encode("😀");
  assert.deepEqual(ids.slice(-4), [0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3]);
  assert.equal(t.decode(ids), "😀");
  assert.deepEqual(Array.from(t.tokenBytes(0x0a + 3)), [0x0a]);
  assert.deepEqual(Array.from(t.tokenBytes(1)), []);
});

Deno.test("llama2.c encoder stays fast and exact on long text (heap merge)", async () => {
  const t = await Llama2cTokenizer.load(shared("tokenizers/llama2/tokenizer.bin"));
  const text = (await Deno.readTextFile(shared("data/mt_bench.jsonl"))).slice(0, 20000);
  const ids = t.encode(text);
  assert.ok(ids.length > 2000);
  assert.equal(t.decode(ids), text);
});

Deno.test("tokenBytes: byte-fallback tokens map to raw bytes, sentencepiece ▁ to space", async () => {
  const hf = await loadTokenizer(hfDir);
  const l2 = await loadTokenizer(binModel);
  for (let id = 0; id < 512; id++) {
    assert.deepEqual(Array.from(hf.tokenBytes(id)), Array.from(l2.tokenBytes(id)), `id ${id}`);
  }
  assert.deepEqual(Array.from(hf.tokenBytes(3 + 0xe4)), [0xe4]);
  assert.throws(() => hf.tokenBytes(512), RangeError);
  assert.throws(() => l2.tokenBytes(-1), RangeError);
});

Deno.test("Detokenizer holds back split multi-byte sequences (emoji, CJK)", async () => {
  const l2 = await loadTokenizer(binModel);
  for (const text of ["😀 中文 🎉", "é😀中 x", "plain words here"]) {
    const ids = l2.encode(text, { bos: true });
    const d = new Detokenizer(l2);
    const parts = ids.map((id) => d.push(id));
    assert.equal(parts.join("") + d.flush(), text);
    for (const p of parts) {
      assert.ok(!p.includes("\uFFFD"), `partial character leaked in ${JSON.stringify(p)}`);
    }
  }
  // The 4 byte tokens of 😀: nothing until the last one.
  const t = await Llama2cTokenizer.load(shared("tokenizers/llama2/tokenizer.bin"));
  const d = new Detokenizer(t);
  assert.equal(d.push(0xf0 + 3), "");
  assert.equal(d.push(0x9f + 3), "");
  assert.equal(d.push(0x98 + 3), "");
  assert.equal(d.push(0x80 + 3), "😀");
  // CJK 中 = E4 B8 AD
  assert.equal(d.push(0xe4 + 3) + d.push(0xb8 + 3), "");
  assert.equal(d.push(0xad + 3), "中");
  // incomplete at the end -> replacement char on flush
  assert.equal(d.push(0xe4 + 3), "");
  assert.equal(d.flush(), "\uFFFD");
});

Deno.test("Detokenizer: leading space dropped after BOS only, kept mid-stream", async () => {
  const hf = await loadTokenizer(hfDir);
  const ids = hf.encode(STORY_SENTENCE);
  const mid = new Detokenizer(hf);
  assert.equal(mid.pushAll(ids), " " + STORY_SENTENCE);
  const start = new Detokenizer(hf, { stripLeadingSpace: true });
  assert.equal(start.pushAll(ids), STORY_SENTENCE);
  const afterBos = new Detokenizer(hf);
  assert.equal(afterBos.pushAll([1, ...ids, 2]), STORY_SENTENCE);
  assert.equal(afterBos.text, STORY_SENTENCE);
  assert.equal(afterBos.tokenCount, ids.length + 2);
});
