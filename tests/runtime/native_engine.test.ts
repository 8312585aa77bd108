import assert from "node:assert/strict";
import { abiMismatches, ensureNativeLibrary, nativeAbiTable, nativeLibraryPath } from "../../runtime/ffi.ts";
import {
  createEngine,
  isBackendAvailable,
  loadModel,
  type NativeEngine,
} from "../../runtime/native_engine.ts";
import {
  ClosedError,
  ContextFullError,
  EmptyMaskError,
  EngineBusyError,
  InvalidArgumentError,
  IoError,
  ModelFormatError,
  NotFoundError,
  SinkstreamError,
} from "../../runtime/errors.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import type { SequenceOptions, StepItem } from "../../runtime/types.ts";
import { shared, STORY_PREFIX, STORY_SENTENCE } from "./_shared.ts";

const BIN = shared("models/stories260K/stories260K.bin");
const HF = shared("models/stories260K-hf");

await ensureNativeLibrary();

async function greedy(path: string, n: number): Promise<number[]> {
  using model = await loadModel(path);
  using engine = await createEngine(model, { threads: 1 });
  const seq = engine.createSequence();
  const out: number[] = [];
  let t = model.info.bosTokenId;
  for (let i = 0; i < n; i++) {
    const [r] = await engine.step([{ seq, tokens: [t] }]);
    t = r.token;
    out.push(t);
  }
  return out;
}

Deno.test("native library loads; cpu backend available", async () => {
  const path = await ensureNativeLibrary();
  assert.equal(path, nativeLibraryPath());
  assert.equal(isBackendAvailable("cpu"), true);
  assert.equal(typeof isBackendAvailable("cuda"), "boolean");
  assert.throws(() => isBackendAvailable("tpu" as "cpu"), InvalidArgumentError);
});

Deno.test("loadModel reads the info of both formats", async () => {
  for (const path of [BIN, HF]) {
    using model = await loadModel(path);
    const i = model.info;
    assert.equal(i.arch, "llama");
    assert.equal(i.dim, 64);
    assert.equal(i.hiddenDim, 172);
    assert.equal(i.nLayers, 5);
    assert.equal(i.nHeads, 8);
    assert.equal(i.nKvHeads, 4);
    assert.equal(i.headDim, 8);
    assert.equal(i.vocabSize, 512);
    assert.equal(i.maxSeqLen, 512);
    assert.equal(i.bosTokenId, 1);
    assert.equal(i.eosTokenId, 2);
    assert.equal(i.sourceDtype, "f32");
    assert.equal(i.ropeTheta, 10000);
    assert.equal(i.rmsNormEps, 1e-5);
    assert.ok(i.nParams > 250_000 && i.nParams < 270_000, `nParams ${i.nParams}`);
  }
});

Deno.test("stories260K greedy from BOS: same ids in both formats, the known story", async () => {
  const a = await greedy(BIN, 40);
  const b = await greedy(HF, 40);
  assert.deepEqual(a, b);
  const hfTok = await loadTokenizer(HF);
  const binTok = await loadTokenizer(BIN);
  const text = hfTok.decode([1, ...a]);
  assert.ok(text.startsWith(STORY_PREFIX), JSON.stringify(text));
  assert.equal(binTok.decode([1, ...b]), text);
  // The tokenizer encodes the first sentence to the ids the model produced.
  const sentence = hfTok.encode(STORY_SENTENCE);
  assert.deepEqual(a.slice(0, sentence.length), sentence);
});

Deno.test("corrupt or missing model files give typed errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sinkstream-corrupt-" });
  try {
    const data = await Deno.readFile(BIN);
    await Deno.writeFile(`${dir}/trunc.bin`, data.subarray(0, data.length - 1000));
    await Deno.writeFile(`${dir}/tiny.bin`, data.subarray(0, 12));
    await assert.rejects(loadModel(`${dir}/trunc.bin`), (e) => {
      assert.ok(e instanceof ModelFormatError);
      assert.ok(e instanceof SinkstreamError);
      assert.equal(e.code, "SS_ERR_FORMAT");
      assert.match(e.message, /trunc\.bin/);
      return true;
    });
    await assert.rejects(loadModel(`${dir}/tiny.bin`), ModelFormatError);

    await Deno.mkdir(`${dir}/hf`);
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${HF}/${f}`, `${dir}/hf/${f}`);
    }
    const st = await Deno.readFile(`${HF}/model.safetensors`);
    await Deno.writeFile(`${dir}/hf/model.safetensors`, st.subarray(0, Math.floor(st.length * 0.6)));
    await assert.rejects(loadModel(`${dir}/hf`), (e) => {
      assert.ok(e instanceof ModelFormatError);
      assert.match(e.message, /model\.safetensors/);
      return true;
    });
    await Deno.writeTextFile(`${dir}/hf/config.json`, "{ not json");
    await assert.rejects(loadModel(`${dir}/hf`), ModelFormatError);

    await assert.rejects(loadModel(`${dir}/does-not-exist.bin`), (e) => {
      assert.ok(e instanceof IoError);
      assert.equal((e as SinkstreamError).code, "SS_ERR_IO");
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a bad step item fails alone: its typed error, its sequence unchanged, the others run", async () => {
  using model = await loadModel(BIN);
  using engine = await createEngine(model, { threads: 1 });
  const seq = engine.createSequence();
  const twin = engine.createSequence();
  const other = engine.createSequence();
  const ref = engine.createSequence();
  const [r0] = await engine.step([{ seq, tokens: [1, 403] }, { seq: twin, tokens: [1, 403] }]);
  await engine.step([{ seq: other, tokens: [1, 403] }, { seq: ref, tokens: [1, 403] }]);
  const before = engine.stats(seq);
  const bad: [Partial<StepItem>, new (...a: never[]) => SinkstreamError, RegExp][] = [
    [{ tokens: [407, 512] }, InvalidArgumentError, /token 512 at position 1 outside \[0, 512\)/],
    [{ tokens: [-1] }, InvalidArgumentError, /token -1/],
    [{ tokens: [5], target: 9999 }, InvalidArgumentError, /target 9999/],
    [{ seq: 12345, tokens: [5] }, NotFoundError, /unknown sequence 12345/],
  ];
  let t = r0.token;
  for (const [item, cls, msg] of bad) {
    // the healthy neighbour runs in the same step and matches its twin run alone
    const [r, ok] = await engine.step([{ seq, tokens: [5], ...item }, { seq: other, tokens: [t] }]);
    const [alone] = await engine.step([{ seq: ref, tokens: [t] }]);
    assert.ok(r.error instanceof cls, `${JSON.stringify(item)}: ${r.error}`);
    assert.match(r.error.message, msg);
    assert.equal(r.error.status > 0, true);
    assert.doesNotMatch(r.error.message, new RegExp(`sequence ${other}\\b`));
    assert.equal(r.token, -1);
    assert.equal(ok.error, undefined);
    assert.equal(ok.token, alone.token);
    t = ok.token;
  }
  // a second item of one sequence fails; the first runs
  const [first, second] = await engine.step([{ seq: other, tokens: [t] }, { seq: other, tokens: [t] }]);
  await engine.step([{ seq: ref, tokens: [t] }]);
  assert.equal(first.error, undefined);
  assert.ok(second.error instanceof InvalidArgumentError && /twice/.test(second.error.message));
  // what the C arrays cannot hold is refused before the step, naming the value; an empty item breaks the
  // token layout and fails the whole step
  await assert.rejects(engine.step([{ seq, tokens: [1.5] }]), /token must be an integer/);
  await assert.rejects(engine.step([{ seq, tokens: [2 ** 31] }]), InvalidArgumentError);
  await assert.rejects(engine.step([{ seq: 0.5, tokens: [5] }]), InvalidArgumentError);
  await assert.rejects(
    engine.step([{ seq, tokens: [] }]),
    (e) => e instanceof InvalidArgumentError && e.status === 1,
  );
  assert.deepEqual(engine.stats(seq), before);
  // ... and seq continues exactly like its untouched twin.
  const [a] = await engine.step([{ seq, tokens: [r0.token] }]);
  const [b] = await engine.step([{ seq: twin, tokens: [r0.token] }]);
  assert.equal(a.token, b.token);
  assert.throws(() => engine.freeSequence(9999), NotFoundError);
  assert.throws(() => engine.stats(9999), (e) => e instanceof NotFoundError && e.code === "SS_ERR_NOT_FOUND");
  assert.throws(() => engine.createSequence({ policy: "bogus" as "dense" }), InvalidArgumentError);
  // capacity 0 means the model's context, as in C
  assert.equal(engine.stats(engine.createSequence({ capacity: 0 })).capacity, model.info.maxSeqLen);
});

Deno.test("step masks: a masked item samples only allowed ids, its neighbour as alone; bad masks fail alone", async () => {
  using model = await loadModel(BIN);
  using engine = await createEngine(model, { threads: 1 });
  const V = model.info.vocabSize;
  const words = Math.ceil(V / 32);
  const masked = engine.createSequence();
  const free = engine.createSequence();
  const ref = engine.createSequence();
  // Allowed: ids 300..399 only.
  const mask = new Uint32Array(words);
  for (let id = 300; id < 400; id++) mask[id >> 5] |= 1 << (id & 31);
  let tm = 1, tf = 1, tr = 1, differs = 0;
  for (let i = 0; i < 12; i++) {
    const [m, f] = await engine.step([{ seq: masked, tokens: [tm], mask, logits: true }, {
      seq: free,
      tokens: [tf],
    }]);
    const [r] = await engine.step([{ seq: ref, tokens: [tr] }]);
    assert.ok(m.token >= 300 && m.token < 400, `masked token ${m.token}`);
    // greedy among the allowed ids by the (unmasked) logits returned
    let best = 300;
    for (let id = 301; id < 400; id++) if (m.logits![id] > m.logits![best]) best = id;
    assert.equal(m.token, best);
    let top = 0;
    for (let id = 1; id < V; id++) if (m.logits![id] > m.logits![top]) top = id;
    if (top !== m.token) differs++;
    assert.equal(f.token, r.token, "the unmasked neighbour samples as alone");
    [tm, tf, tr] = [m.token, f.token, r.token];
  }
  assert.ok(differs > 0, "the mask changed the choice at some step");
  const before = engine.stats(masked);
  const [empty, ok] = await engine.step([
    { seq: masked, tokens: [tm], mask: new Uint32Array(words) },
    { seq: free, tokens: [tf] },
  ]);
  assert.ok(
    empty.error instanceof EmptyMaskError && empty.error.code === "SS_ERR_EMPTY_MASK",
    `${empty.error}`,
  );
  assert.equal(ok.error, undefined);
  assert.deepEqual(engine.stats(masked), before, "an item with an empty mask is not fed");
  await assert.rejects(
    engine.step([{ seq: masked, tokens: [tm], mask: new Uint32Array(words + 1) }]),
    (e) => e instanceof InvalidArgumentError && e.field === "mask",
  );
});

Deno.test("dense sequence without room: a ContextFullError for that item", async () => {
  using model = await loadModel(BIN);
  using engine = await createEngine(model, { threads: 1 });
  const seq = engine.createSequence({ policy: "dense", capacity: 4 });
  await engine.step([{ seq, tokens: [1, 403, 407, 261], sample: false }]);
  const [r] = await engine.step([{ seq, tokens: [378] }]);
  assert.ok(r.error instanceof ContextFullError, String(r.error));
  assert.match(r.error.message, /capacity 4/);
  assert.equal(r.token, -1);
  assert.equal(engine.stats(seq).cached, 4);
});

Deno.test("sequence limits and checkSequenceOptions come from the C validator", async () => {
  using model = await loadModel(BIN);
  using engine = await createEngine(model, { threads: 1, maxBatchTokens: 4096 });
  assert.deepEqual(engine.limits, {
    minCapacity: 2,
    maxCapacity: 1 << 24,
    defaultCapacity: model.info.maxSeqLen,
    maxTopK: 2 ** 31 - 1,
  });
  const field = (o: SequenceOptions) => {
    try {
      engine.checkSequenceOptions(o);
      return null;
    } catch (e) {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      return e.field;
    }
  };
  assert.equal(field({ sinks: 8, capacity: 8 }), "sinks");
  assert.equal(field({ policy: "window", sinks: 8, capacity: 8 }), null); // sinks only matter when streaming
  assert.equal(field({ capacity: engine.limits.minCapacity - 1 }), "capacity");
  assert.equal(field({ capacity: engine.limits.maxCapacity + 1 }), "capacity");
  assert.equal(field({ capacity: 0 }), null);
  assert.equal(field({ temperature: -1 }), "temperature");
  assert.equal(field({ temperature: NaN }), "temperature");
  assert.equal(field({ topP: 0 }), "topP");
  assert.equal(field({ topK: -1 }), "topK");
  assert.equal(field({ topK: engine.limits.maxTopK }), null);
  assert.equal(field({ policy: "bogus" as "dense" }), "policy");
  // top_k >= 2^31 cannot be represented in the C int32: refused by name, before the engine sees it
  assert.equal(field({ topK: 2 ** 31 }), "topK");
  assert.throws(() => engine.checkSequenceOptions({ topK: 2 ** 31 }), /topK must be an integer/);
  assert.equal(field({ temperature: 1e39 }), "temperature");
  assert.equal(field({ seed: 2n ** 64n }), "seed");
  assert.equal(field({ seed: -1 }), null);
  // the same rules as createSequence, which names the field too
  assert.throws(
    () => engine.createSequence({ sinks: 8, capacity: 8 }),
    (e) => (e as InvalidArgumentError).field === "sinks",
  );
  const s = engine.createSequence({ capacity: 8 });
  assert.throws(() => engine.setSampling(s, { topK: 2 ** 31 }), /topK/);
  // C's check is thread-safe: allowed while a step is in flight (createSequence is not)
  const p = engine.step([{
    seq: s,
    tokens: Array.from({ length: 2000 }, (_, i) => 3 + (i % 500)),
    sample: false,
  }]);
  assert.equal(engine.busy, true);
  engine.checkSequenceOptions({ sinks: 4, capacity: 8 });
  assert.throws(() => engine.checkSequenceOptions({ sinks: 8, capacity: 8 }), InvalidArgumentError);
  assert.throws(() => engine.createSequence(), EngineBusyError);
  await p;
});

Deno.test("kvBytesPerToken is the backend's figure: a full cache holds capacity x that many bytes", async () => {
  using model = await loadModel(BIN);
  for (const kvDtype of [undefined, "f32", "f16"] as const) {
    using engine = await createEngine(model, { threads: 1, kvDtype });
    const i = model.info;
    const bytes = kvDtype === "f32" ? 4 : 2; // the CPU cache's default is f16
    assert.equal(engine.kvBytesPerToken, 2 * i.nLayers * i.nKvHeads * i.headDim * bytes);
    await fullCacheHoldsCapacityTimesBytes(engine);
  }
});

async function fullCacheHoldsCapacityTimesBytes(engine: NativeEngine) {
  for (const capacity of [16, 24, 100]) {
    const seq = engine.createSequence({ policy: "window", capacity });
    await engine.step([{
      seq,
      tokens: Array.from({ length: capacity + 3 }, (_, k) => 3 + k),
      sample: false,
    }]);
    const st = engine.stats(seq);
    assert.equal(st.cached, capacity);
    assert.equal(st.bytes, capacity * engine.kvBytesPerToken, `capacity ${capacity}`);
  }
}

Deno.test("the ABI described in runtime/ffi.ts matches the library's own table", () => {
  const table = nativeAbiTable();
  assert.deepEqual(abiMismatches(table), []);
  assert.deepEqual(table.get("ss_seq_params.seed"), [24, 8]);
  const moved = new Map(table);
  moved.set("ss_seq_params.top_k", [20, 4]);
  assert.deepEqual(abiMismatches(moved), [
    "ss_seq_params.top_k: offset 20 in the library, 16 in the binding",
  ]);
  const grown = new Map(table);
  grown.set("ss_seq_stats.n_flushed", [40, 8]);
  grown.set("ss_seq_stats", [48, 8]);
  grown.delete("SS_POLICY_DENSE");
  assert.deepEqual(abiMismatches(grown), [
    "ss_seq_stats: size 48 in the library, 40 in the binding",
    "ss_seq_stats.n_flushed is not known to the binding",
    "SS_POLICY_DENSE is missing from the library",
  ]);
});

Deno.test("streaming cache keeps sinks + recent window; stats and cacheIndices", async () => {
  using model = await loadModel(BIN);
  using engine = await createEngine(model, { threads: 1 });
  const seq = engine.createSequence({ policy: "streaming", sinks: 4, capacity: 8 });
  const toks = Array.from({ length: 20 }, (_, i) => 3 + i);
  await engine.step([{ seq, tokens: toks, sample: false }]);
  const st = engine.stats(seq);
  assert.equal(st.policy, "streaming");
  assert.equal(st.cached, 8);
  assert.equal(st.sinks, 4);
  assert.equal(st.capacity, 8);
  assert.equal(st.seen, 20);
  assert.equal(st.evicted, 12);
  assert.ok(st.bytes > 0);
  assert.deepEqual(engine.cacheIndices(seq), [0, 1, 2, 3, 16, 17, 18, 19]);
  const w = engine.createSequence({ policy: "window", capacity: 5 });
  await engine.step([{ seq: w, tokens: toks, sample: false }]);
  assert.deepEqual(engine.cacheIndices(w), [15, 16, 17, 18, 19]);
  assert.equal(engine.stats(w).sinks, 0);
});

Deno.test("logits and target log-probabilities agree; seeded sampling is reproducible", async () => {
  using model = await loadModel(HF);
  using engine = await createEngine(model, { threads: 1 });
  const seq = engine.createSequence();
  const [r] = await engine.step([{ seq, tokens: [1, 403, 407], logits: true, target: 261 }]);
  const logits = r.logits!;
  assert.equal(logits.length, 512);
  let argmax = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[argmax]) argmax = i;
  assert.equal(r.token, argmax);
  const max = logits[argmax];
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lp = logits[261] - max - Math.log(sum);
  assert.ok(Math.abs(lp - r.targetLogprob!) < 1e-3, `${lp} vs ${r.targetLogprob}`);

  const run = async (seed: number) => {
    const s = engine.createSequence({ temperature: 1, topP: 0.9, seed });
    const out: number[] = [];
    let t = 1;
    for (let i = 0; i < 20; i++) {
      [{ token: t }] = await engine.step([{ seq: s, tokens: [t] }]);
      out.push(t);
    }
    engine.freeSequence(s);
    return out;
  };
  assert.deepEqual(await run(42), await run(42));
  const s = engine.createSequence();
  engine.setSampling(s, { temperature: 0.7, topK: 5, seed: 3n });
  assert.throws(() => engine.setSampling(s, { temperature: -1 }), InvalidArgumentError);
  assert.throws(() => engine.setSampling(s, { topP: 0 }), InvalidArgumentError);
});

Deno.test("step runs off the event loop; overlapping calls are rejected; close is deferred", async () => {
  using model = await loadModel(BIN);
  const engine = await createEngine(model, { threads: 1, maxBatchTokens: 4096 });
  const seqs = Array.from({ length: 8 }, () => engine.createSequence({ policy: "dense", capacity: 600 }));
  const items = seqs.map((seq, k) => ({
    seq,
    tokens: Array.from({ length: 512 }, (_, i) => 3 + ((i * 7 + k) % 500)),
    sample: false,
  }));
  const events: string[] = [];
  let ticks = 0;
  const timer = setInterval(() => {
    if (ticks++ === 0) events.push("timer");
  }, 0);
  const p = engine.step(items).then((r) => {
    events.push("step");
    return r;
  });
  assert.equal(engine.busy, true);
  await assert.rejects(engine.step([{ seq: seqs[0], tokens: [1] }]), EngineBusyError);
  assert.throws(() => engine.createSequence(), EngineBusyError);
  assert.throws(() => engine.stats(seqs[0]), EngineBusyError);
  await p;
  clearInterval(timer);
  assert.deepEqual(events, ["timer", "step"]);
  assert.equal(engine.busy, false);
  assert.equal(engine.stats(seqs[3]).cached, 512);

  // close() while a step is in flight: the step completes, then the engine is freed.
  const q = engine.step([{ seq: seqs[0], tokens: [5] }, { seq: seqs[1], tokens: [6] }].map((x) => ({
    ...x,
    sample: true,
  })));
  engine.close();
  engine.close();
  assert.equal(engine.closed, true);
  const r = await q;
  assert.equal(r.length, 2);
  assert.throws(() => engine.createSequence(), ClosedError);
  await assert.rejects(engine.step([{ seq: 0, tokens: [1] }]), ClosedError);
});

Deno.test("double close is harmless; the model outlives engines that use it", async () => {
  const model = await loadModel(BIN);
  const engine = await createEngine(model, { threads: 1 });
  model.close(); // engines keep the native model alive
  model.close();
  assert.equal(model.closed, true);
  const seq = engine.createSequence();
  const [r] = await engine.step([{ seq, tokens: [1] }]);
  assert.equal(r.token, 403);
  engine.close();
  engine.close();
  await assert.rejects(createEngine(model), ClosedError);
  {
    using m2 = await loadModel(BIN);
    using e2 = await createEngine(m2, { threads: 1 });
    e2.createSequence();
  }
});

Deno.test("engine options are validated", async () => {
  using model = await loadModel(BIN);
  await assert.rejects(createEngine(model, { threads: -1 }), InvalidArgumentError);
  await assert.rejects(createEngine(model, { maxBatchTokens: 0 }), InvalidArgumentError);
  await assert.rejects(createEngine(model, { backend: "tpu" as "cpu" }), InvalidArgumentError);
  if (!isBackendAvailable("cuda")) {
    await assert.rejects(createEngine(model, { backend: "cuda" }), (e) => {
      assert.ok(e instanceof SinkstreamError);
      assert.equal(e.code, "SS_ERR_UNSUPPORTED");
      return true;
    });
  }
  using e = await createEngine(model, { threads: 1, maxSequences: 2, maxBatchTokens: 16 });
  assert.equal(e.maxBatchTokens, 16);
  assert.equal(e.backend, "cpu");
  e.createSequence();
  e.createSequence();
  assert.throws(() => e.createSequence(), (err) => (err as SinkstreamError).code === "SS_ERR_LIMIT");
  const s = 0;
  await assert.rejects(
    e.step([{ seq: s, tokens: Array.from({ length: 17 }, () => 5) }]),
    (err) => (err as SinkstreamError).code === "SS_ERR_LIMIT",
  );
});
