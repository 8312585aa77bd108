/**
 * A FAKE engine for pure unit tests of the scheduler's planning (fairness.test.ts, prefill_pacing.test.ts): it
 * records each step and computes nothing; with `msPerToken` a step takes that long per token fed (a real
 * timer), so that time-based planning can be tested. Integration tests elsewhere use the real engine.
 */
import assert from "node:assert/strict";
import type { CacheStats, Engine, StepItem, StepResult } from "../../../runtime/types.ts";

export class FakeCountingEngine implements Engine {
  info = {
    arch: "llama" as const,
    dim: 8,
    hiddenDim: 8,
    nLayers: 1,
    nHeads: 1,
    nKvHeads: 1,
    headDim: 8,
    vocabSize: 100,
    maxSeqLen: 64,
    bosTokenId: 1,
    eosTokenId: 2,
    sourceDtype: "f32" as const,
    ropeTheta: 1e4,
    rmsNormEps: 1e-5,
    nParams: 0,
    format: "hf" as const,
    weightDtype: "f32" as const,
    weightBytesPerToken: 0,
  };
  backend = "cpu" as const;
  maxBatchTokens = 16;
  kvBytesPerToken = 64;
  limits = { minCapacity: 2, maxCapacity: 64, defaultCapacity: 64, maxTopK: 100 };
  checkSequenceOptions() {}
  steps: StepItem[][] = [];
  #next = 0;
  #fed = new Map<number, number>();
  createSequence() {
    const id = this.#next++;
    this.#fed.set(id, 0);
    return id;
  }
  freeSequence(seq: number) {
    this.#fed.delete(seq);
  }
  setSampling() {}
  stats(seq: number): CacheStats {
    const n = this.#fed.get(seq) ?? 0;
    return {
      policy: "streaming",
      cached: Math.min(n, 64),
      sinks: 4,
      capacity: 64,
      seen: n,
      evicted: 0,
      bytes: n,
    };
  }
  cacheIndices() {
    return [];
  }
  /** Wall time of a step per token fed, ms (0: a step resolves at once). */
  msPerToken = 0;
  async step(items: StepItem[]): Promise<StepResult[]> {
    const seqs = new Set(items.map((i) => i.seq));
    assert.equal(seqs.size, items.length, "a sequence appears at most once per step");
    assert.ok(items.reduce((a, i) => a + i.tokens.length, 0) <= this.maxBatchTokens);
    this.steps.push(items.map((i) => ({ ...i, tokens: Array.from(i.tokens) })));
    for (const i of items) this.#fed.set(i.seq, (this.#fed.get(i.seq) ?? 0) + i.tokens.length);
    const tokens = items.reduce((a, i) => a + i.tokens.length, 0);
    if (this.msPerToken > 0) await new Promise((r) => setTimeout(r, tokens * this.msPerToken));
    else await Promise.resolve();
    return items.map((i) => ({ token: i.sample === false ? -1 : 10 }));
  }
  close() {}
  [Symbol.dispose]() {}
}
