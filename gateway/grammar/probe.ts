/**
 * Whether xgrammar can compile a schema, asked of a Worker (probe_worker.ts) before the gateway's own
 * xgrammar instance sees it: xgrammar answers a schema it cannot handle (an unknown type, a malformed
 * keyword) with Emscripten's `abort()`, which would leave the instance that serves every constrained
 * response unreliable. The probe compiles against a 256-token byte vocabulary (what fails does not depend
 * on the vocabulary; the cost does, and this one is small), one schema at a time; a Worker that failed
 * closes itself and the next schema gets a new one. A schema that takes over PROBE_TIMEOUT_MS is refused.
 */
import type { ProbeReply, ProbeRequest } from "./probe_worker.ts";

/** How long one schema may take to compile in the probe. */
export const PROBE_TIMEOUT_MS = 10_000;

export class SchemaProbe {
  #worker: { worker: Worker; ready: Promise<void> } | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  #next = 0;
  #pending = new Map<number, (r: ProbeReply) => void>();
  #closed = false;

  /** null when xgrammar compiles `schema` (JSON), else its reason. Calls run one after the other. */
  check(schema: string): Promise<string | null> {
    const run = this.#chain.then(() => this.#check(schema));
    this.#chain = run.catch(() => {});
    return run;
  }

  async #check(schema: string): Promise<string | null> {
    if (this.#closed) throw new Error("the schema probe is closed");
    const w = this.#start();
    await w.ready;
    const id = this.#next++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await new Promise<ProbeReply | null>((resolve) => {
      this.#pending.set(id, resolve);
      timer = setTimeout(() => resolve(null), PROBE_TIMEOUT_MS);
      w.worker.postMessage({ id, schema } satisfies ProbeRequest);
    });
    clearTimeout(timer);
    this.#pending.delete(id);
    if (reply === null) {
      this.#stop();
      return `the schema took over ${PROBE_TIMEOUT_MS / 1000} s to compile`;
    }
    if (reply.ok) return null;
    this.#stop(); // it closed itself: its instance aborted
    return reply.message;
  }

  #start(): { worker: Worker; ready: Promise<void> } {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL("./probe_worker.ts", import.meta.url).href, { type: "module" });
    let ready!: () => void;
    let failed!: (e: Error) => void;
    const w = { worker, ready: new Promise<void>((res, rej) => ((ready = res), (failed = rej))) };
    worker.onmessage = (e: MessageEvent<ProbeReply>) => {
      if (e.data.id === -1) ready();
      else this.#pending.get(e.data.id)?.(e.data);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      failed(new Error(`the schema probe failed: ${e.message}`));
      for (const resolve of this.#pending.values()) resolve({ id: -2, ok: false, message: e.message });
      if (this.#worker === w) this.#stop();
    };
    this.#worker = w;
    return w;
  }

  #stop(): void {
    this.#worker?.worker.terminate();
    this.#worker = null;
  }

  /** Stop the Worker (idempotent); later checks fail. */
  close(): void {
    this.#closed = true;
    this.#stop();
  }
}
