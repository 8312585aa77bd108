/**
 * GGUF through the runtime: a converted stories260K loads with its info (format, weight type, bytes per
 * token) and no tokenizer path; the tokenizer read from tokenizer.ggml.* encodes and decodes as the
 * llama2.c tokenizer it came from, keeps a chat template, reloads in a Worker from its source; files of
 * an unknown format and broken GGUF metadata get typed errors.
 */
import assert from "node:assert/strict";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { ModelFormatError } from "../../runtime/errors.ts";
import { parseGgufMetadata, readGgufMetadata } from "../../runtime/gguf.ts";
import { loadModel } from "../../runtime/native_engine.ts";
import { loadTokenizerFromSource } from "../../runtime/tokenizer/source.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import { convertToGguf } from "../../tools/lib/convert.ts";
import { type GgufKv, writeGguf } from "../../tools/lib/gguf_write.ts";
import { mixedTexts, proseWords } from "./_texts.ts";
import { shared } from "./_shared.ts";

const BIN = shared("models/stories260K/stories260K.bin");

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ss_gguf_rt_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("GGUF model info: format, weight type, bytes read per token", async () => {
  await ensureNativeLibrary();
  await withDir(async (dir) => {
    using f32 = await loadModel(BIN);
    for (const [dtype, ratio] of [["f32", 1], ["f16", 0.5], ["q8_0", 0.33]] as const) {
      await convertToGguf({ input: BIN, output: `${dir}/m.gguf`, dtype });
      using m = await loadModel(`${dir}/m.gguf`);
      assert.equal(m.info.format, "gguf");
      assert.equal(m.info.sourceDtype, dtype);
      assert.equal(m.info.weightDtype, dtype);
      assert.equal(m.info.nParams, f32.info.nParams);
      const r = m.info.weightBytesPerToken / f32.info.weightBytesPerToken;
      assert.ok(Math.abs(r - ratio) < 0.05, `${dtype}: ${r}`);
      using conv = await loadModel(`${dir}/m.gguf`, { weights: "f32" });
      assert.equal(conv.info.weightDtype, "f32");
      assert.equal(conv.info.sourceDtype, dtype);
    }
  });
});

Deno.test("GGUF tokenizer: encodes and decodes as the llama2.c tokenizer it was written from", async () => {
  await ensureNativeLibrary();
  await withDir(async (dir) => {
    await convertToGguf({ input: BIN, output: `${dir}/m.gguf`, dtype: "q8_0" });
    const a = await loadTokenizer(BIN);
    const b = await loadTokenizer(`${dir}/m.gguf`); // no --tokenizer: the file has it
    assert.equal(b.vocabSize, a.vocabSize);
    assert.deepEqual([b.bosId, b.eosId], [a.bosId, a.eosId]);
    assert.deepEqual(b.specialTokens, a.specialTokens);
    for (const text of mixedTexts(await proseWords(), 300, 6)) {
      const ids = a.encode(text, { bos: true });
      assert.deepEqual(b.encode(text, { bos: true }), ids, JSON.stringify(text));
      assert.equal(b.decode(ids), a.decode(ids));
    }
    for (let id = 0; id < a.vocabSize; id++) {
      assert.deepEqual(b.tokenBytes(id), a.tokenBytes(id), `token ${id}`);
    }
    // a Worker loads it again from its source
    assert.ok(b.source);
    const c = await loadTokenizerFromSource(b.source!);
    assert.deepEqual(c.encode("Lily and Ben", { bos: true }), a.encode("Lily and Ben", { bos: true }));
  });
});

/** A GGUF file with only metadata (no tensors). */
async function metaOnly(path: string, kv: GgufKv[]): Promise<void> {
  await writeGguf(path, kv, [], () => {});
}

Deno.test("GGUF tokenizer metadata: chat template kept; unsupported or broken vocabularies are typed errors", async () => {
  await withDir(async (dir) => {
    const base: GgufKv[] = [
      { key: "general.architecture", type: "string", value: "llama" },
      { key: "tokenizer.ggml.model", type: "string", value: "llama" },
      {
        key: "tokenizer.ggml.tokens",
        type: "array",
        elem: "string",
        value: ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a"],
      },
      { key: "tokenizer.ggml.scores", type: "array", elem: "f32", value: [0, 0, 0, -3, -4, -5, -1] },
      { key: "tokenizer.ggml.token_type", type: "array", elem: "i32", value: [2, 3, 3, 1, 1, 1, 1] },
      { key: "tokenizer.ggml.bos_token_id", type: "u32", value: 1 },
      { key: "tokenizer.ggml.eos_token_id", type: "u32", value: 2 },
    ];
    const p = `${dir}/t.gguf`;
    await metaOnly(p, [...base, { key: "tokenizer.chat_template", type: "string", value: "{{ messages }}" }]);
    const t = await loadTokenizer(p);
    assert.equal(t.chatTemplate, "{{ messages }}");
    assert.deepEqual(t.encode("a", { bos: true }), [1, 6]); // "▁" + "a" merged into "▁a"
    assert.equal(t.decode([1, 6, 5, 2, 0]), "ab");

    const cases: [GgufKv[], RegExp][] = [
      [[
        ...base.slice(0, 1),
        { key: "tokenizer.ggml.model", type: "string", value: "gpt2" },
        ...base.slice(2),
      ], /gpt2/],
      [base.filter((k) => k.key !== "tokenizer.ggml.model"), /no tokenizer/],
      [base.filter((k) => k.key !== "tokenizer.ggml.tokens"), /tokenizer\.ggml\.tokens/],
      [[
        ...base.slice(0, 3),
        { key: "tokenizer.ggml.scores", type: "array", elem: "f32", value: [0] },
        ...base.slice(4),
      ], /scores/],
      [
        [...base.slice(0, 5), { key: "tokenizer.ggml.bos_token_id", type: "u32", value: 9 }, base[6]],
        /bos_token_id/,
      ],
    ];
    for (const [kv, re] of cases) {
      await metaOnly(p, kv);
      await assert.rejects(loadTokenizer(p), (e) => e instanceof ModelFormatError && re.test(e.message));
    }
    // truncated metadata, wrong version: typed errors naming the file
    await metaOnly(p, base);
    const bytes = await Deno.readFile(p);
    await Deno.writeFile(p, bytes.subarray(0, 60));
    await assert.rejects(readGgufMetadata(p), (e) => e instanceof ModelFormatError && e.message.includes(p));
    const v = bytes.slice();
    v[4] = 7;
    assert.throws(() => parseGgufMetadata(v, "x.gguf"), /version 7/);
  });
});

Deno.test("a file of no known format: ModelFormatError naming the known formats", async () => {
  await ensureNativeLibrary();
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/weights.dat`, "certainly not a model, just some text in a file");
    await assert.rejects(loadModel(`${dir}/weights.dat`), (e) => {
      assert.ok(e instanceof ModelFormatError, String(e));
      assert.match(e.message, /unknown model format/);
      assert.match(e.message, /Hugging Face folder/);
      assert.match(e.message, /GGUF/);
      assert.match(e.message, /llama2\.c/);
      return true;
    });
    // a GGUF file is no longer read as a llama2.c checkpoint (it used to fail with "n_heads 0")
    await convertToGguf({ input: BIN, output: `${dir}/model.weights`, dtype: "f16" });
    using m = await loadModel(`${dir}/model.weights`);
    assert.equal(m.info.format, "gguf");
  });
});
