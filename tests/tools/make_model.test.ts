import assert from "node:assert/strict";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  safetensorsHeader,
} from "../../tools/lib/safetensors.ts";
import { getShape, makeModel, MakeModelError, paramCount, SHAPES } from "../../tools/lib/make_model.ts";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { createEngine, loadModel } from "../../runtime/native_engine.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import { Llama2cTokenizer } from "../../runtime/tokenizer/llama2c.ts";
import { repo } from "../runtime/_shared.ts";

Deno.test("f16 conversion rounds to nearest even and handles specials", () => {
  assert.equal(f32ToF16Bits(0), 0);
  assert.equal(f32ToF16Bits(-0), 0x8000);
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(65520), 0x7c00); // rounds up to inf
  assert.equal(f32ToF16Bits(1e6), 0x7c00);
  assert.equal(f32ToF16Bits(Infinity), 0x7c00);
  assert.equal(f32ToF16Bits(-Infinity), 0xfc00);
  assert.ok((f32ToF16Bits(NaN) & 0x7c00) === 0x7c00 && (f32ToF16Bits(NaN) & 0x3ff) !== 0);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1).
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even): rounds up.
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  // subnormals: smallest 2^-24, ties to even at 2^-25 -> 0, 3*2^-25 -> 2*2^-24
  assert.equal(f32ToF16Bits(2 ** -24), 1);
  assert.equal(f32ToF16Bits(2 ** -25), 0);
  assert.equal(f32ToF16Bits(3 * 2 ** -25), 2);
  assert.equal(f32ToF16Bits(2 ** -14), 0x0400);
  assert.equal(f32ToF16Bits(2 ** -14 - 2 ** -25), 0x0400); // largest subnormal + half ulp ties to even (up)
  // round trip of every finite half value
  for (let h = 0; h < 0x7c00; h++) {
    assert.equal(f32ToF16Bits(f16BitsToF32(h)), h);
    assert.equal(f32ToF16Bits(f16BitsToF32(h | 0x8000)), h | 0x8000);
  }
});

Deno.test("bf16 conversion rounds to nearest even", () => {
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(f32ToBf16Bits(-1), 0xbf80);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie -> even (up)
  assert.equal(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -16), 0x3f81);
  assert.equal(f32ToBf16Bits(Infinity), 0x7f80);
  assert.ok((f32ToBf16Bits(NaN) & 0x7f) !== 0);
  for (const v of [0.02, -3.5, 1e-30, 12345.678]) {
    const r = bf16BitsToF32(f32ToBf16Bits(v));
    assert.ok(Math.abs(r - v) <= Math.abs(v) * 2 ** -8, `${v} -> ${r}`);
  }
});

Deno.test("safetensors header is 8-byte aligned JSON with data offsets", () => {
  const h = safetensorsHeader(
    [{ name: "a", dtype: "F16", shape: [3, 5] }, { name: "b", dtype: "F32", shape: [7] }],
    { format: "pt" },
  );
  const n = Number(new DataView(h.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  assert.equal(h.length, 8 + n);
  const json = JSON.parse(new TextDecoder().decode(h.subarray(8)));
  assert.deepEqual(json.a.data_offsets, [0, 30]);
  assert.deepEqual(json.b.data_offsets, [30, 58]);
  assert.equal(json.__metadata__.format, "pt");
});

Deno.test("unknown shape -> clear error (library and CLI)", async () => {
  assert.throws(
    () => getShape("gpt5"),
    (e) => e instanceof MakeModelError && /known: stories260k/.test(e.message),
  );
  await assert.rejects(makeModel({ shape: "gpt5", dtype: "f16", out: "/nonexistent/x" }), MakeModelError);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      repo("tools/make_model.ts"),
      "--shape",
      "gpt5",
      "--dtype",
      "f16",
      "--out",
      "/tmp/never",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /unknown shape "gpt5"/);
});

Deno.test("shapes have the documented sizes", () => {
  assert.equal(paramCount(SHAPES["stories260k"]), 260032);
  const p7 = paramCount(SHAPES["llama2-7b"]);
  assert.ok(p7 > 6.7e9 && p7 < 6.8e9, `${p7}`);
  const p1 = paramCount(SHAPES["tinyllama-1.1b"]);
  assert.ok(p1 > 1.0e9 && p1 < 1.2e9, `${p1}`);
});

Deno.test("make-model stories260k f32/f16/bf16 loads with the right info and runs", async () => {
  await ensureNativeLibrary();
  const dir = await Deno.makeTempDir({ prefix: "sinkstream-mm-" });
  try {
    for (const dtype of ["f32", "f16", "bf16"] as const) {
      const out = `${dir}/${dtype}`;
      const r = await makeModel({ shape: "stories260k", dtype, out, seed: 1 });
      assert.equal(r.nParams, 260032);
      using model = await loadModel(out);
      const i = model.info;
      assert.equal(i.sourceDtype, dtype);
      assert.equal(i.dim, 64);
      assert.equal(i.hiddenDim, 172);
      assert.equal(i.nLayers, 5);
      assert.equal(i.nHeads, 8);
      assert.equal(i.nKvHeads, 4);
      assert.equal(i.vocabSize, 512);
      assert.equal(i.maxSeqLen, 512);
      assert.equal(i.nParams, 260032);
      const tok = await loadTokenizer(out);
      assert.ok(tok instanceof Llama2cTokenizer);
      assert.equal(tok.vocabSize, 512);
      using engine = await createEngine(model, { threads: 1 });
      const seq = engine.createSequence();
      const [s] = await engine.step([{
        seq,
        tokens: tok.encode("Hello there", { bos: true }),
        logits: true,
      }]);
      assert.ok(s.logits!.every(Number.isFinite));
      assert.ok(s.token >= 0 && s.token < 512);
    }
    const f32 = await Deno.readFile(`${dir}/f32/model.safetensors`);
    const f16 = await Deno.readFile(`${dir}/f16/model.safetensors`);
    assert.ok(f16.length < f32.length * 0.51);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
