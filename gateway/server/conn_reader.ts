/**
 * Buffered reads from one connection, with at most one `conn.read` in flight: a read that outlives a
 * deadline stays pending and the next fill() awaits it, so no byte is ever lost or read twice. Read errors
 * (reset, a close from our side) count as end of stream.
 */
import { READ_CHUNK_BYTES } from "./limits.ts";

export type FillResult = "data" | "eof" | "timeout" | "full";

export class ConnReader {
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #pending: Promise<"data" | "eof"> | null = null;
  #eof = false;

  /** `capacity`: the most bytes ever buffered (a request head must fit). */
  constructor(readonly conn: Deno.Conn, readonly capacity: number) {
    this.#buf = new Uint8Array(Math.min(capacity, READ_CHUNK_BYTES));
  }

  /** Buffered bytes not yet consumed. */
  get size(): number {
    return this.#end - this.#start;
  }

  get eof(): boolean {
    return this.#eof;
  }

  /** The buffered bytes: a view that stays valid until the next fill(). */
  view(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  consume(n: number): void {
    this.#start += n; // never moves #end: a read in flight writes at #end
  }

  /** Read more bytes into the buffer. `deadline` is a Date.now() time; past it: "timeout". */
  fill(deadline?: number): Promise<FillResult> {
    if (this.#eof) return Promise.resolve("eof");
    if (this.#pending === null) {
      if (!this.#makeRoom()) return Promise.resolve("full");
      const room = this.#buf.subarray(this.#end, Math.min(this.#buf.length, this.#end + READ_CHUNK_BYTES));
      // The read's result is applied here, once, however many callers await it.
      this.#pending = this.conn.read(room).catch(() => null).then((n) => {
        this.#pending = null;
        if (n === null) {
          this.#eof = true;
          return "eof";
        }
        this.#end += n;
        return "data";
      });
    }
    return deadline === undefined ? this.#pending : withDeadline(this.#pending, deadline);
  }

  /** Space after #end for one read: compact, then grow up to the capacity. False when full. */
  #makeRoom(): boolean {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#buf.length - this.#end >= READ_CHUNK_BYTES / 4) return true;
    const size = this.size;
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#start = 0;
      this.#end = size;
      if (this.#buf.length - this.#end >= READ_CHUNK_BYTES / 4) return true;
    }
    if (this.#buf.length < this.capacity) {
      const grown = new Uint8Array(Math.min(this.capacity, this.#buf.length * 2));
      grown.set(this.#buf.subarray(0, size));
      this.#buf = grown;
      return true;
    }
    return this.#end < this.#buf.length;
  }
}

/** `p`, or "timeout" at `deadline` (a Date.now() time) if it has not settled by then. */
export function withDeadline<T>(p: Promise<T>, deadline: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
