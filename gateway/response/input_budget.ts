/**
 * Memory held by client input that the engine has not consumed yet, bounded per session and over the
 * whole process, so that no sequence of client actions can grow the heap until the process dies.
 *
 * What is counted (bytes, estimated from above):
 *  - a Realtime item from `conversation.item.create` until the response that answers it has finished
 *    (or the item is deleted, or its session ends): the UTF-8 size of its text plus ITEM_OVERHEAD_BYTES
 *    (the item object, its echo events), so a flood of tiny items is bounded too;
 *  - a rendered prompt from rendering until its job has finished: PROMPT_TOKEN_BYTES per token (the
 *    token array the scheduler holds while it feeds the prompt chunk by chunk).
 * Per session: `--max-pending-bytes` of items. Per response: `--max-prompt-tokens`. Over everything:
 * `--input-budget-mb`; past it new input is refused with `server_busy` (the server is full, the client's
 * input is fine) and nothing that was accepted is lost — except by sessions nobody is connected to: before
 * refusing, the budget asks its reclaimer (the session manager) to expire detached sessions early, oldest
 * first, so abandoned sessions cannot hold the budget against live ones for their resume TTL.
 */
import type { Metrics } from "../metrics/metrics.ts";

/** Charged per item on top of its text: the item object and the three echo events it causes. */
export const ITEM_OVERHEAD_BYTES = 512;
/** Charged per prompt token: one element of a JS number array. */
export const PROMPT_TOKEN_BYTES = 8;

const encoder = new TextEncoder();

/** UTF-8 bytes of a string, without encoding it when the answer is plain (ASCII-only strings). */
export function utf8Bytes(s: string): number {
  // Every UTF-16 unit encodes to 1..3 bytes; only strings with non-ASCII units need the real count.
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return encoder.encode(s).length;
  }
  return s.length;
}

/** The whole gateway is at its budget: the client's input is fine, the server is full. */
export interface BudgetRefusal {
  code: "server_busy";
  message: string;
}

/** Why an item was not accepted. */
export type InputRefusal = { code: "input_too_large"; message: string } | BudgetRefusal;

/** The process-wide budget; one per gateway. */
export class InputBudget {
  #used = 0;
  /** Frees at least `bytes` if it can (expires detached sessions); see the file comment. */
  reclaim: ((bytes: number) => void) | null = null;

  /** `maxBytes` 0 = unlimited. */
  constructor(readonly maxBytes: number, readonly metrics?: Metrics) {}

  /** Bytes held now over all sessions and responses. */
  get used(): number {
    return this.#used;
  }

  /** Hold `bytes` if the budget has room; else the refusal. */
  hold(bytes: number, what: string): BudgetRefusal | null {
    if (this.#over(bytes)) this.reclaim?.(this.#used + bytes - this.maxBytes);
    if (this.#over(bytes)) {
      this.metrics?.rejected.inc();
      return {
        code: "server_busy",
        message: `the server holds its limit of ${mib(this.maxBytes)} of unprocessed input; ${what} ` +
          `was refused, try again later`,
      };
    }
    this.#used += bytes;
    this.metrics?.inputBytes.set(this.#used);
    return null;
  }

  #over(bytes: number): boolean {
    return this.maxBytes > 0 && this.#used + bytes > this.maxBytes;
  }

  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
    this.metrics?.inputBytes.set(this.#used);
  }
}

/** One session's share: its pending items, capped at `maxBytes` (0 = no per-session cap). */
export class InputLedger {
  #held = 0;

  constructor(readonly budget: InputBudget, readonly maxBytes: number) {}

  get held(): number {
    return this.#held;
  }

  /** Hold the cost of one item of `textBytes` bytes of text, or say why not (nothing is held then). */
  holdItem(textBytes: number): InputRefusal | null {
    const cost = textBytes + ITEM_OVERHEAD_BYTES;
    if (this.maxBytes > 0 && this.#held + cost > this.maxBytes) {
      return {
        code: "input_too_large",
        message: `this item (${textBytes} bytes) would take the session's unanswered items past ` +
          `--max-pending-bytes ${this.maxBytes} (${this.#held} held); ask for a response or delete items first`,
      };
    }
    const refused = this.budget.hold(cost, "this item");
    if (refused) return refused;
    this.#held += cost;
    return null;
  }

  releaseItem(textBytes: number): void {
    const cost = Math.min(this.#held, textBytes + ITEM_OVERHEAD_BYTES);
    this.#held -= cost;
    this.budget.release(cost);
  }

  /** Give everything back (the session is over). */
  releaseAll(): void {
    this.budget.release(this.#held);
    this.#held = 0;
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(bytes % (1 << 20) === 0 ? 0 : 1)} MiB`;
}
