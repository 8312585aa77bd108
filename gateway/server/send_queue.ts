/**
 * The one send path of a connection: every byte the server writes (HTTP heads and bodies, WebSocket frames)
 * is queued here, in order, with one `conn.write` in flight at a time. `bufferedAmount` is what is queued
 * and not yet taken by the kernel: the session's backpressure pause and the per-connection hard cap read it.
 *
 * Memory follows `bufferedAmount`: while a write is in flight, small chunks (token deltas, error events)
 * are copied into shared blocks that are written with one call each, instead of being kept as thousands of
 * tiny buffers whose per-object overhead would dwarf their bytes. An idle queue writes a chunk as it is.
 */
import { SEND_BLOCK_BYTES } from "./limits.ts";

/** Chunks up to this size are copied into a block while a write is in flight. */
const SMALL_CHUNK = SEND_BLOCK_BYTES / 4;

export class SendQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  #block: Uint8Array | null = null;
  #blockUsed = 0;
  #buffered = 0;
  #writing = false;
  #failed = false;
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

  /** Queue bytes (the queue may keep the reference: do not reuse the buffer). */
  push(bytes: Uint8Array): void {
    if (this.#failed || bytes.length === 0) return;
    this.#buffered += bytes.length;
    this.#pushed += bytes.length;
    if (!this.#writing) {
      this.#chunks.push(bytes);
      void this.#run();
    } else if (bytes.length <= SMALL_CHUNK) this.#append(bytes);
    else {
      this.#seal();
      this.#chunks.push(bytes);
    }
  }

  /** Resolves when everything queued so far is written, or the connection failed. */
  flushed(): Promise<void> {
    if (this.#failed || this.#written >= this.#pushed) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ pushed: this.#pushed, resolve }));
  }

  #append(bytes: Uint8Array): void {
    if (this.#block === null || this.#block.length - this.#blockUsed < bytes.length) {
      this.#seal();
      this.#block = new Uint8Array(SEND_BLOCK_BYTES);
    }
    this.#block.set(bytes, this.#blockUsed);
    this.#blockUsed += bytes.length;
  }

  /** The block being filled joins the chunk list (it is always the newest data). */
  #seal(): void {
    if (this.#block !== null && this.#blockUsed > 0) {
      this.#chunks.push(this.#block.subarray(0, this.#blockUsed));
    }
    this.#block = null;
    this.#blockUsed = 0;
  }

  #next(): Uint8Array | null {
    if (this.#head === this.#chunks.length) this.#seal();
    if (this.#head === this.#chunks.length) return null;
    const c = this.#chunks[this.#head++];
    if (this.#head === this.#chunks.length) {
      this.#chunks.length = 0; // the common case (one chunk per write): no new array
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
    return c;
  }

  async #run(): Promise<void> {
    this.#writing = true;
    for (let data = this.#next(); data !== null && !this.#failed; data = this.#next()) {
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
    this.#block = null;
    this.#buffered = 0;
    this.#wake();
    this.onFail?.();
  }
}
