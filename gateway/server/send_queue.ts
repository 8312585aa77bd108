/**
 * The one send path of a connection: every byte the server writes (HTTP heads and bodies, WebSocket frames)
 * is queued here, in order, with one `conn.write` in flight at a time; small queued chunks are coalesced
 * into one write. `bufferedAmount` is what is queued and not yet taken by the kernel: the session's
 * backpressure pause and the per-connection hard cap read it.
 */
import { COALESCE_BYTES } from "./limits.ts";

export class SendQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  #buffered = 0;
  #writing = false;
  #failed = false;
  #scratch: Uint8Array | null = null;
  #waiters: { pushed: number; resolve: () => void }[] = [];
  #pushed = 0;
  #written = 0;
  /** Called once when a write fails (the peer is gone). */
  onFail: (() => void) | null = null;

  constructor(readonly conn: Deno.Conn) {}

  get bufferedAmount(): number {
    return this.#buffered;
  }

  /** A write failed: nothing more will be sent. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Queue bytes (the queue keeps the reference: do not reuse the buffer). */
  push(bytes: Uint8Array): void {
    if (this.#failed || bytes.length === 0) return;
    this.#chunks.push(bytes);
    this.#buffered += bytes.length;
    this.#pushed += bytes.length;
    if (!this.#writing) void this.#run();
  }

  /** Resolves when everything queued so far is written, or the connection failed. */
  flushed(): Promise<void> {
    if (this.#failed || this.#written >= this.#pushed) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ pushed: this.#pushed, resolve }));
  }

  async #run(): Promise<void> {
    this.#writing = true;
    while (this.#head < this.#chunks.length && !this.#failed) {
      const data = this.#take();
      try {
        for (let off = 0; off < data.length;) {
          const n = await this.conn.write(data.subarray(off));
          off += n;
          this.#buffered -= n;
          this.#written += n;
        }
      } catch {
        this.#fail();
      }
      this.#wake();
    }
    this.#writing = false;
  }

  /** The next write: one chunk, or several small ones copied into the scratch buffer. */
  #take(): Uint8Array {
    const first = this.#chunks[this.#head];
    const next = this.#chunks[this.#head + 1];
    if (next === undefined || first.length + next.length > COALESCE_BYTES) return this.#shift();
    this.#scratch ??= new Uint8Array(COALESCE_BYTES);
    let n = 0;
    while (this.#head < this.#chunks.length && n + this.#chunks[this.#head].length <= COALESCE_BYTES) {
      const c = this.#shift();
      this.#scratch.set(c, n);
      n += c.length;
    }
    return this.#scratch.subarray(0, n);
  }

  #shift(): Uint8Array {
    const c = this.#chunks[this.#head++];
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
    return c;
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const still = [];
    for (const w of this.#waiters) {
      if (this.#failed || this.#written >= w.pushed) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }

  #fail(): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#chunks = [];
    this.#head = 0;
    this.#buffered = 0;
    this.#wake();
    this.onFail?.();
  }
}
