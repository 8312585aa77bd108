/**
 * KV admission: the worst-case KV memory of every live conversation (full capacity, in the engine's
 * bytes per cached token), reserved at a conversation's first response and returned when it is
 * released, against `--kv-budget-mb` (0 = unlimited).
 */
import type { Engine, SequenceOptions } from "../../runtime/types.ts";
import type { Conversation } from "./job.ts";

export class KvBudget {
  /** KV bytes per cached token as the engine stores them (f32 on the CPU backend, f16/bf16 on CUDA). */
  readonly bytesPerToken: number;
  /** The conversations holding a reservation. */
  readonly conversations = new Set<Conversation>();
  #reserved = 0;

  constructor(readonly engine: Engine, readonly budgetBytes: number) {
    this.bytesPerToken = engine.kvBytesPerToken;
  }

  /** Capacity in tokens a conversation with these options may hold (0 / unset = the engine's default). */
  capacityOf(options: SequenceOptions): number {
    const w = options.capacity ?? 0;
    return w > 0 ? w : this.engine.limits.defaultCapacity;
  }

  get reserved(): number {
    return this.#reserved;
  }

  /**
   * Frees reservations that can go (idle conversations kept only to be continued, e.g. stored Responses
   * API chains), at least `bytes` if it can; asked before a reservation is refused.
   */
  reclaim: ((bytes: number) => void) | null = null;

  /** Reserve the conversation's worst case unless it holds one already; false when it does not fit. */
  reserve(conv: Conversation): boolean {
    if (conv.reservedBytes > 0) return true;
    const bytes = this.capacityOf(conv.options) * this.bytesPerToken;
    if (this.#over(bytes)) this.reclaim?.(this.#reserved + bytes - this.budgetBytes);
    if (this.#over(bytes)) return false;
    conv.reservedBytes = bytes;
    this.#reserved += bytes;
    this.conversations.add(conv);
    return true;
  }

  #over(bytes: number): boolean {
    return this.budgetBytes > 0 && this.#reserved + bytes > this.budgetBytes;
  }

  release(conv: Conversation): void {
    this.#reserved -= conv.reservedBytes;
    conv.reservedBytes = 0;
    this.conversations.delete(conv);
  }
}
