/**
 * The real engine behind a thin subclassable wrapper: every call goes to the native engine; a test
 * overrides only what it simulates (another KV element size, a failing item, a step held open).
 */
import type {
  Engine,
  SamplingOptions,
  SequenceOptions,
  StepItem,
  StepResult,
} from "../../../runtime/types.ts";

export class DelegatingEngine implements Engine {
  constructor(readonly inner: Engine) {}
  get info() {
    return this.inner.info;
  }
  get backend() {
    return this.inner.backend;
  }
  get maxBatchTokens() {
    return this.inner.maxBatchTokens;
  }
  get kvBytesPerToken() {
    return this.inner.kvBytesPerToken;
  }
  get limits() {
    return this.inner.limits;
  }
  checkSequenceOptions(o: SequenceOptions) {
    this.inner.checkSequenceOptions(o);
  }
  createSequence(o?: SequenceOptions) {
    return this.inner.createSequence(o);
  }
  freeSequence(s: number) {
    this.inner.freeSequence(s);
  }
  setSampling(s: number, o: SamplingOptions) {
    this.inner.setSampling(s, o);
  }
  stats(s: number) {
    return this.inner.stats(s);
  }
  cacheIndices(s: number) {
    return this.inner.cacheIndices(s);
  }
  step(items: StepItem[]): Promise<StepResult[]> {
    return this.inner.step(items);
  }
  close() {}
  [Symbol.dispose]() {}
}

/** A promise the test resolves when it wants: `await gate.wait()` blocks until `gate.open()`. */
export class Gate {
  #open!: () => void;
  #p = new Promise<void>((r) => (this.#open = r));
  wait(): Promise<void> {
    return this.#p;
  }
  open(): void {
    this.#open();
  }
}
