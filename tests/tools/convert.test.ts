/**
 * `deno task convert` and the weight types end to end on stories260K:
 * - the CLI writes every type; the files load with no tokenizer path; F32/F16/BF16 GGUF files decode the
 *   llama2.c file's greedy tokens; at q8_0 / q4_0 the 172-wide w_down stays f16;
 * - eval-ppl on a 4096-token stream sampled from the model (decision D12), streaming cache: f16 / bf16
 *   weights and the f16 KV cache within 0.1% of f32, q8_0 within 1%, q4_0 within 10% (the 5% is not
 *   met on this 260K-parameter model: 4-bit error is spread over every matrix, see decisions);
 *   --weights q8_0 at load holds the bytes `deno task convert --dtype q8_0` writes (one quantization);
 * - make-model --format gguf; bad arguments and a tokenizer that cannot be written are one-line errors.
 */
import assert from "node:assert/strict";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { createEngine, loadModel } from "../../runtime/native_engine.ts";
import type { WeightDtype } from "../../runtime/types.ts";
import { evalPerplexity, sampleStream } from "../../tools/lib/eval_ppl.ts";
import { makeModel } from "../../tools/lib/make_model.ts";
import { repo, shared } from "../runtime/_shared.ts";

const BIN = shared("models/stories260K/stories260K.bin");
const HF = shared("models/stories260K-hf");

async function cli(task: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--config", repo("deno.json"), task, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

async function greedy(path: string, n: number): Promise<number[]> {
  using model = await loadModel(path);
  using engine = await createEngine(model, { threads: 1 });
  const seq = engine.createSequence({ policy: "dense", capacity: 128 });
  const out = [model.info.bosTokenId];
  for (let i = 1; i < n; i++) out.push((await engine.step([{ seq, tokens: [out[i - 1]] }]))[0].token);
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ss_convert_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("convert CLI: every type; F32/F16/BF16 files decode the llama2.c file's greedy tokens", async () => {
  await ensureNativeLibrary();
  const ref = await greedy(BIN, 40);
  await withDir(async (dir) => {
    for (const dtype of ["f32", "f16", "bf16", "q8_0", "q4_0"] as WeightDtype[]) {
      const out = `${dir}/s-${dtype}.gguf`;
      const r = await cli("convert", [BIN, out, "--dtype", dtype]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /wrote .* 47 tensors/);
      if (dtype === "q8_0" || dtype === "q4_0") assert.match(r.stdout, /5 f16/); // w_down: 172-wide rows
      using m = await loadModel(out);
      assert.equal(m.info.weightDtype, dtype);
      if (dtype === "f32" || dtype === "f16" || dtype === "bf16") {
        assert.deepEqual(await greedy(out, 40), ref, dtype);
      }
    }
  });
});

Deno.test("eval-ppl per weight type and KV type: within the bounds of each format", async () => {
  await ensureNativeLibrary();
  const tokens = await sampleStream(BIN, 4096, 1);
  const ppl = async (opts: { model?: string; weights?: WeightDtype; kvDtype?: "f32" | "f16" }) =>
    (await evalPerplexity({ model: opts.model ?? BIN, tokens, policy: "streaming", threads: 1, ...opts }))
      .ppl;
  const base = await ppl({ kvDtype: "f32" });
  const rel = (x: number) => x / base - 1;
  const results: Record<string, number> = {};
  for (
    const [name, opts, bound] of [
      ["kv f16", { kvDtype: "f16" }, 0.001],
      ["f16", { weights: "f16", kvDtype: "f32" }, 0.001],
      ["bf16", { weights: "bf16", kvDtype: "f32" }, 0.001],
      ["q8_0", { weights: "q8_0" }, 0.01],
      ["q4_0", { weights: "q4_0" }, 0.10],
    ] as const
  ) {
    const r = rel(await ppl(opts));
    results[name] = r;
    assert.ok(Math.abs(r) < bound, `${name}: ppl ${(100 * r).toFixed(3)}% from f32 (bound ${100 * bound}%)`);
  }
  console.log(`ppl f32 ${base.toFixed(4)}; relative: ${JSON.stringify(results)}`);
  await withDir(async (dir) => {
    // converted at load or converted to a file: the same quantization, byte for byte
    const r = await cli("convert", [BIN, `${dir}/q8.gguf`, "--dtype", "q8_0"]);
    assert.equal(r.code, 0, r.stderr);
    using file = await loadModel(`${dir}/q8.gguf`);
    using atLoad = await loadModel(BIN, { weights: "q8_0" });
    const ta = file.exportedTensors(), tb = atLoad.exportedTensors();
    assert.deepEqual(ta, tb);
    for (let i = 0; i < ta.length; i++) {
      const rows = ta[i].ne[1];
      const a = new Uint8Array(ta[i].rowBytes * rows), b = new Uint8Array(a.length);
      file.exportRows(i, undefined, 0, rows, a);
      atLoad.exportRows(i, undefined, 0, rows, b);
      assert.deepEqual(a, b, ta[i].name);
    }
    const pf = await ppl({ model: `${dir}/q8.gguf` });
    assert.ok(Math.abs(pf / (1 + results["q8_0"]) / base - 1) < 1e-3, `file ${pf}`);
  });
});

Deno.test("make-model --format gguf writes one GGUF file that runs", async () => {
  await ensureNativeLibrary();
  await withDir(async (dir) => {
    const r = await makeModel({
      shape: "stories260k",
      dtype: "bf16",
      out: `${dir}/m.gguf`,
      format: "gguf",
      seed: 3,
    });
    assert.equal(r.dir, `${dir}/m.gguf`);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.gguf"]); // the temporary folder is gone
    using m = await loadModel(`${dir}/m.gguf`);
    assert.equal(m.info.format, "gguf");
    assert.equal(m.info.weightDtype, "bf16");
    assert.equal((await greedy(`${dir}/m.gguf`, 4)).length, 4);
    await assert.rejects(
      makeModel({ shape: "stories260k", dtype: "f32", out: `${dir}/x`, format: "gguf" }),
      /\.gguf/,
    );
  });
});

Deno.test("convert CLI errors: one line, exit 2 for usage, exit 1 for models it cannot write", async () => {
  await withDir(async (dir) => {
    let r = await cli("convert", [BIN, `${dir}/x.gguf`, "--dtype", "q5_k"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--dtype must be one of f32, f16, bf16, q8_0, q4_0/);
    r = await cli("convert", [BIN, "--dtype", "f16"]);
    assert.equal(r.code, 2);
    r = await cli("convert", [HF, `${dir}/x.gguf`, "--dtype", "f16"]); // tokenizer.json: no scores to write
    assert.equal(r.code, 1);
    assert.match(r.stderr, /SentencePiece-style tokenizers with scores/);
    r = await cli("convert", [
      HF,
      `${dir}/x.gguf`,
      "--dtype",
      "f16",
      "--tokenizer",
      shared("models/stories260K/tok512.bin"),
    ]);
    assert.equal(r.code, 0, r.stderr);
    r = await cli("convert", [`${dir}/nope`, `${dir}/y.gguf`, "--dtype", "f16"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nope/);
  });
});
