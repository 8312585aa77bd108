/**
 * The native engine against the independent float64 reference (llama_f64.ts), per cache policy.
 *
 * Tolerance metric (relErr in llama_f64.ts), per step and per sequence:
 *   err = max_j |engine_j - ref_j| / max_j |ref_j|   over the vocab logits after the step's last token,
 * required <= TOL = 1e-4. The engine computes in float32 (rounding ~1e-7 relative per op); the
 * reference in float64. Normalising by the largest reference logit rather than elementwise avoids a
 * meaningless ratio on logits near zero; any policy / position / cache mistake moves logits by
 * 3e-2 or more on this model (measured: streaming vs window, window vs dense, every step past W),
 * i.e. > 300 x TOL; keeping the sinks but not re-indexing positions moves them by >= 1e-2 (100 x TOL).
 * The sanity test below asserts those gaps on the engine's own logits, so the comparison can fail.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createEngine, ensureNativeLibrary, loadModel } from "../../mod.ts";
import type { Engine, SequenceOptions } from "../../runtime/types.ts";
import { argmax, LlamaF64, logprob, type RefPolicy, RefSequence, relErr, sharedDir } from "./llama_f64.ts";

const TOL = 1e-4;
const MODEL_PATH = new URL("models/stories260K/stories260K.bin", sharedDir());
/** The same weights as a Hugging Face folder (rotate-half Q/K layout in the safetensors). */
const HF_MODEL_PATH = new URL("models/stories260K-hf/", sharedDir());

let refModel: LlamaF64 | undefined;
function reference(): LlamaF64 {
  return refModel ??= LlamaF64.fromFile(MODEL_PATH);
}

/** BOS then fixed pseudo-random ids in [3, vocab) (LCG, reproducible). */
function tokenStream(n: number, seed: number, vocab = 512): number[] {
  const out = [1];
  let x = seed >>> 0;
  while (out.length < n) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out.push(3 + ((x >>> 8) % (vocab - 3)));
  }
  return out;
}

function range(a: number, b: number): number[] {
  return Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
}

/** Closed form of the cached stream indices after `seen` tokens. */
function expectedIndices(p: RefPolicy, seen: number): number[] {
  if (p.kind === "dense") return range(0, seen);
  const S = p.kind === "streaming" ? p.sinks : 0;
  if (seen <= p.window) return range(0, seen);
  return [...range(0, S), ...range(seen - (p.window - S), seen)];
}

function seqOptions(p: RefPolicy, denseCapacity = 256): SequenceOptions {
  if (p.kind === "streaming") {
    return { policy: "streaming", sinks: p.sinks, capacity: p.window, temperature: 0 };
  }
  if (p.kind === "window") return { policy: "window", capacity: p.window, temperature: 0 };
  return { policy: "dense", capacity: denseCapacity, temperature: 0 };
}

async function withEngine(fn: (engine: Engine) => Promise<void>, path = MODEL_PATH): Promise<void> {
  await ensureNativeLibrary();
  const model = await loadModel(fileURLToPath(path));
  try {
    // f32 KV cache: the comparison with the f64 reference is at 1e-4 (the CPU default, f16, is checked
    // against f32 by csrc/tests/test_weight_types.c and eval-ppl in tests/tools/convert.test.ts)
    const engine = await createEngine(model, { threads: 2, kvDtype: "f32" });
    try {
      await fn(engine);
    } finally {
      engine.close();
    }
  } finally {
    model.close();
  }
}

const STREAMING: RefPolicy = { kind: "streaming", sinks: 4, window: 32 };
const WINDOW: RefPolicy = { kind: "window", window: 32 };
const DENSE: RefPolicy = { kind: "dense" };
const N = 150;

/** Feed `n` tokens one at a time; logits and cache indices must match the reference at every step. */
async function checkOneByOne(policy: RefPolicy, n: number, path = MODEL_PATH): Promise<number> {
  const tokens = tokenStream(n, 12345);
  let worst = 0;
  let worstAt = -1;
  await withEngine(async (engine) => {
    const seq = engine.createSequence(seqOptions(policy));
    const ref = new RefSequence(reference(), policy);
    for (let t = 0; t < tokens.length; t++) {
      const [res] = await engine.step([{ seq, tokens: [tokens[t]], sample: false, logits: true }]);
      const want = ref.feed(tokens[t]);
      assert.ok(res.logits, "logits requested but not returned");
      const err = relErr(res.logits, want);
      if (err > worst) [worst, worstAt] = [err, t];
      assert.ok(
        err <= TOL,
        `${policy.kind}: step ${t} (stream index ${t}) logits rel err ${err.toExponential(3)}`,
      );
      assert.deepEqual(engine.cacheIndices(seq), ref.cacheIndices(), `${policy.kind}: cache after step ${t}`);
    }
    assert.deepEqual(ref.cacheIndices(), expectedIndices(policy, n));
    const st = engine.stats(seq);
    const cached = expectedIndices(policy, n).length;
    assert.equal(st.policy, policy.kind);
    assert.equal(st.seen, n);
    assert.equal(st.cached, cached);
    assert.equal(st.evicted, n - cached);
    assert.equal(st.sinks, policy.kind === "streaming" ? policy.sinks : 0);
    assert.equal(st.capacity, policy.kind === "dense" ? 256 : policy.window);
  }, path);
  console.log(`  ${policy.kind}: max rel err ${worst.toExponential(3)} at step ${worstAt}`);
  return worst;
}

for (const policy of [STREAMING, WINDOW, DENSE]) {
  Deno.test(`engine vs f64 reference: ${policy.kind}, ${N} tokens fed one at a time`, async () => {
    await checkOneByOne(policy, N);
  });
}

Deno.test("engine vs f64 reference: streaming past the training context (1100 tokens, seq_len 512)", async () => {
  // Stream indices grow past max_position_embeddings while re-indexed positions stay < W.
  await checkOneByOne({ kind: "streaming", sinks: 4, window: 64 }, 1100);
});

Deno.test("engine vs f64 reference: Hugging Face folder of the same weights, streaming", async () => {
  await checkOneByOne(STREAMING, 100, HF_MODEL_PATH);
});

Deno.test("cache contents after evictions: exactly the first S and the last W - S", async () => {
  await withEngine(async (engine) => {
    const cases: RefPolicy[] = [
      { kind: "streaming", sinks: 4, window: 16 },
      { kind: "streaming", sinks: 1, window: 8 },
      { kind: "streaming", sinks: 0, window: 8 },
      { kind: "window", window: 10 },
    ];
    const seqs = cases.map((p) => engine.createSequence(seqOptions(p)));
    const tokens = tokenStream(60, 7);
    for (let t = 0; t < tokens.length; t++) {
      await engine.step(seqs.map((seq) => ({ seq, tokens: [tokens[t]], sample: false })));
      cases.forEach((p, i) => {
        assert.deepEqual(
          engine.cacheIndices(seqs[i]),
          expectedIndices(p, t + 1),
          `${JSON.stringify(p)} t=${t}`,
        );
      });
    }
    assert.deepEqual(engine.cacheIndices(seqs[0]), [0, 1, 2, 3, ...range(48, 60)]);
    assert.deepEqual(engine.cacheIndices(seqs[3]), range(50, 60));
    assert.equal(engine.stats(seqs[0]).evicted, 44);
  });
});

Deno.test("sanity: streaming != window != dense, and != no re-indexing, once evictions begin (engine)", async () => {
  const W = 32;
  const tokens = tokenStream(80, 12345);
  await withEngine(async (engine) => {
    const policies = [STREAMING, WINDOW, DENSE];
    const seqs = policies.map((p) => engine.createSequence(seqOptions(p)));
    const refWindow = new RefSequence(reference(), WINDOW);
    const refDense = new RefSequence(reference(), DENSE);
    // Sinks + recent window but without re-indexing (positions = stream indices): wrong on purpose.
    const refNoReindex = new RefSequence(reference(), { ...STREAMING, reindex: false } as RefPolicy);
    for (let t = 0; t < tokens.length; t++) {
      const res = await engine.step(
        seqs.map((seq) => ({ seq, tokens: [tokens[t]], sample: false, logits: true })),
      );
      const [ls, lw, ld] = res.map((r) => r.logits!);
      const rw = refWindow.feed(tokens[t]);
      const rd = refDense.feed(tokens[t]);
      const rn = refNoReindex.feed(tokens[t]);
      if (t < W) {
        // No eviction yet: all three policies are the same computation.
        assert.ok(
          relErr(ls, rw) <= TOL && relErr(lw, rd) <= TOL,
          `step ${t}: policies differ before eviction`,
        );
      } else {
        // The comparison must be able to fail: the engine's streaming logits are far from the
        // window reference, and its window logits far from the dense reference.
        assert.ok(relErr(ls, rw) > 100 * TOL, `step ${t}: streaming matches window reference`);
        assert.ok(relErr(ls, rn) > 50 * TOL, `step ${t}: streaming matches the not-re-indexed reference`);
        assert.ok(relErr(lw, rd) > 100 * TOL, `step ${t}: window matches dense reference`);
        assert.ok(relErr(ls, lw) > 100 * TOL, `step ${t}: engine streaming == engine window`);
        assert.ok(relErr(lw, ld) > 100 * TOL, `step ${t}: engine window == engine dense`);
      }
    }
  });
});

Deno.test("engine vs f64 reference: mixed batch, different policies, lengths and prefill chunks", async () => {
  interface Lane {
    name: string;
    policy: RefPolicy;
    tokens: number[];
    /** Round at which this sequence joins. */
    start: number;
    /** Chunk size per round (cycled); 1 = decode one token at a time. */
    chunks: number[];
    seq: number;
    ref: RefSequence;
    fed: number;
    round: number;
    worst: number;
  }
  const specs: Omit<Lane, "seq" | "ref" | "fed" | "round" | "worst">[] = [
    {
      name: "A streaming S4 W32 decode",
      policy: STREAMING,
      tokens: tokenStream(150, 1),
      start: 0,
      chunks: [1],
    },
    {
      name: "B window W24 chunks",
      policy: { kind: "window", window: 24 },
      tokens: tokenStream(140, 2),
      start: 0,
      chunks: [7, 1, 3, 1, 1, 9, 2],
    },
    { name: "C dense chunks", policy: DENSE, tokens: tokenStream(120, 3), start: 3, chunks: [17, 1, 5, 1] },
    {
      name: "D streaming S2 W20, chunks longer than the cache",
      policy: { kind: "streaming", sinks: 2, window: 20 },
      tokens: tokenStream(150, 4),
      start: 1,
      chunks: [45, 1, 1, 23, 1, 2],
    },
    {
      name: "E streaming S4 W32 late joiner",
      policy: STREAMING,
      tokens: tokenStream(90, 5),
      start: 20,
      chunks: [1],
    },
    {
      name: "F streaming S4 W16 prompt then decode",
      policy: { kind: "streaming", sinks: 4, window: 16 },
      tokens: tokenStream(100, 6),
      start: 5,
      chunks: [30, 1],
    },
  ];
  await withEngine(async (engine) => {
    const lanes: Lane[] = [];
    for (let round = 0; lanes.length < specs.length || lanes.some((l) => l.fed < l.tokens.length); round++) {
      for (const s of specs) {
        if (s.start === round) {
          const seq = engine.createSequence(seqOptions(s.policy));
          lanes.push({ ...s, seq, ref: new RefSequence(reference(), s.policy), fed: 0, round: 0, worst: 0 });
        }
      }
      const active = lanes.filter((l) => l.fed < l.tokens.length);
      if (active.length === 0) continue;
      const items = active.map((l) => {
        const n = Math.min(l.chunks[l.round % l.chunks.length], l.tokens.length - l.fed);
        const chunk = l.tokens.slice(l.fed, l.fed + n);
        const target = l.fed + n < l.tokens.length ? l.tokens[l.fed + n] : undefined;
        return { lane: l, chunk, target };
      });
      const results = await engine.step(
        items.map(({ lane, chunk, target }) => ({
          seq: lane.seq,
          tokens: chunk,
          sample: true,
          logits: true,
          target,
        })),
      );
      items.forEach(({ lane, chunk, target }, i) => {
        let want: Float64Array = new Float64Array();
        for (const tok of chunk) want = lane.ref.feed(tok);
        const at = `${lane.name}: round ${round}, stream index ${lane.fed + chunk.length - 1}`;
        const res = results[i];
        const err = relErr(res.logits!, want);
        lane.worst = Math.max(lane.worst, err);
        assert.ok(err <= TOL, `${at}: logits rel err ${err.toExponential(3)}`);
        let scale = 0;
        for (const v of want) scale = Math.max(scale, Math.abs(v));
        if (target !== undefined) {
          const lp = logprob(want, target);
          assert.ok(
            res.targetLogprob !== undefined && Math.abs(res.targetLogprob - lp) <= 2 * TOL * scale,
            `${at}: target logprob ${res.targetLogprob} vs ${lp}`,
          );
        }
        // Greedy sample = reference argmax unless the top two are within the tolerance.
        const sorted = Array.from(want).sort((a, b) => b - a);
        if (sorted[0] - sorted[1] > 4 * TOL * scale) {
          assert.equal(res.token, argmax(want), `${at}: greedy token`);
        }
        lane.fed += chunk.length;
        lane.round++;
        assert.deepEqual(engine.cacheIndices(lane.seq), lane.ref.cacheIndices(), `${at}: cache indices`);
        assert.deepEqual(lane.ref.cacheIndices(), expectedIndices(lane.policy, lane.fed));
      });
    }
    for (const l of lanes) {
      assert.equal(engine.stats(l.seq).seen, l.tokens.length);
      console.log(`  ${l.name}: max rel err ${l.worst.toExponential(3)}`);
    }
  });
});
