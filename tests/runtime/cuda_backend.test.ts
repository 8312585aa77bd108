/**
 * CUDA backend through the FFI binding. Without a usable GPU (or with a library built without
 * CUDA: `make -C csrc` is CPU-only, `make -C csrc cuda` adds the CUDA backend) the GPU tests are
 * ignored with a visible message, and only the "unavailable" behaviour is checked.
 * The full GPU checks (CUDA vs CPU over many evictions, benchmarks) are in tests/gpu/check.sh.
 */
import assert from "node:assert/strict";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { createEngine, isBackendAvailable, loadModel } from "../../runtime/native_engine.ts";
import { BackendUnsupportedError } from "../../runtime/errors.ts";
import { shared } from "./_shared.ts";

const BIN = shared("models/stories260K/stories260K.bin");

await ensureNativeLibrary();
const haveCuda = isBackendAvailable("cuda");
if (!haveCuda) {
  console.log(
    "SKIP cuda_backend.test.ts: no usable CUDA device or library built without CUDA " +
      "(GPU tests ignored; run `make -C csrc cuda` on a GPU machine, or tests/gpu/check.sh)",
  );
}

Deno.test({
  name: "cuda backend: unavailable -> createEngine rejects with BackendUnsupportedError",
  ignore: haveCuda,
  async fn() {
    using model = await loadModel(BIN);
    await assert.rejects(() => createEngine(model, { backend: "cuda" }), BackendUnsupportedError);
  },
});

/** Greedy tokens from BOS, and the KV bytes the full cache holds against the engine's per-token figure. */
async function greedyStream(backend: "cpu" | "cuda", n: number) {
  using model = await loadModel(BIN);
  using engine = await createEngine(model, { backend, threads: 1 });
  const capacity = 32;
  const seq = engine.createSequence({ policy: "streaming", sinks: 4, capacity });
  const out: number[] = [];
  let t = model.info.bosTokenId;
  for (let i = 0; i < n; i++) {
    const [r] = await engine.step([{ seq, tokens: [t] }]);
    t = r.token;
    out.push(t);
  }
  return {
    tokens: out,
    perToken: engine.kvBytesPerToken,
    fullCacheBytes: engine.stats(seq).bytes / capacity,
  };
}

Deno.test({
  name: "cuda backend: greedy tokens equal the cpu backend's across evictions (stories260K, window 32)",
  ignore: !haveCuda,
  async fn() {
    const n = 120; // window 32: ~90 evictions
    const cpu = await greedyStream("cpu", n);
    const cuda = await greedyStream("cuda", n);
    assert.deepEqual(cuda.tokens, cpu.tokens);
    // KV bytes per token as each backend stores it (f16 in both: the CPU default, CUDA's compute type),
    // what a full cache holds
    assert.equal(cpu.perToken, cpu.fullCacheBytes);
    assert.equal(cuda.perToken, cuda.fullCacheBytes);
    assert.equal(cuda.perToken, cpu.perToken);
  },
});
