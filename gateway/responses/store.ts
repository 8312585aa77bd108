/**
 * Stored Responses API responses (`store: true`, OpenAI's default) and the live chains behind them.
 *
 * A record is what `GET /v1/responses/{id}` returns plus what continuing it needs: the ids that rebuild its
 * chain's cache (kept_tokens.ts), the instructions last fed to the chain, the cache options. It lives for
 * `--responses-ttl` seconds; the store holds at most `--responses-max` records and `--responses-max-mb` of
 * them (objects + kept ids, estimated from above), the oldest going first.
 *
 * Live chains: the conversation (engine sequence) that just answered a stored response stays alive as that
 * response's chain head, so a request with `previous_response_id` = it continues the same sequence with no
 * re-prefill. At most `--responses-live` idle chains are kept (least recently used freed first); their KV
 * counts against `--kv-budget-mb`, and when a new conversation cannot reserve KV the scheduler asks the store to
 * free idle chains first (KvBudget.reclaim). A chain continued from another record, or whose head was
 * continued already, or freed, is rebuilt from the kept ids.
 */
import type { SequenceOptions } from "../../runtime/types.ts";
import type { Conversation, Scheduler } from "../scheduler/scheduler.ts";
import { utf8Bytes } from "../response/input_budget.ts";

export interface StoreLimits {
  ttlMs: number;
  maxRecords: number;
  maxBytes: number;
  maxLive: number;
}

export interface StoredResponse {
  readonly id: string;
  /** The response object as the API returns it (updated when the response ends). */
  object: Record<string, unknown>;
  /** False while the response runs. */
  done: boolean;
  /** Ids that rebuild the chain's cache up to the end of this response. */
  kept: Int32Array;
  /** The instructions last fed into the chain (not repeated when a continuation sends them again). */
  chainInstructions: string | null;
  /** Cache options of the chain. */
  options: SequenceOptions;
  expiresAt: number;
  bytes: number;
}

/** Bytes a record is charged: its object as JSON (UTF-8, estimated as its text) and its kept ids. */
const RECORD_OVERHEAD_BYTES = 512;

function recordBytes(r: StoredResponse): number {
  return utf8Bytes(JSON.stringify(r.object)) + r.kept.length * 4 + RECORD_OVERHEAD_BYTES;
}

export class ResponseStore {
  /** Insertion order = age: the first entry is the oldest. */
  readonly #records = new Map<string, StoredResponse>();
  /** Idle live chains by head response id, least recently used first. */
  readonly #live = new Map<string, Conversation>();
  #bytes = 0;
  #sweeper: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  constructor(readonly scheduler: Scheduler, readonly limits: StoreLimits, readonly now = () => Date.now()) {
    scheduler.kv.reclaim = (bytes) => this.#freeLive(bytes);
  }

  get size(): number {
    return this.#records.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Idle chains holding a live sequence now. */
  get liveChains(): number {
    return this.#live.size;
  }

  get(id: string): StoredResponse | undefined {
    const r = this.#records.get(id);
    if (r && r.expiresAt <= this.now()) {
      this.delete(id);
      return undefined;
    }
    return r;
  }

  /** Store a record (or store it again after it changed); false when the store keeps none (or is closed). */
  put(r: StoredResponse): boolean {
    if (this.limits.maxRecords === 0 || this.#closed) return false;
    const old = this.#records.get(r.id);
    if (old) this.#bytes -= old.bytes;
    else this.#records.set(r.id, r);
    r.bytes = recordBytes(r);
    this.#bytes += r.bytes;
    this.#evict();
    this.#startSweeper();
    return this.#records.has(r.id);
  }

  delete(id: string): boolean {
    const r = this.#records.get(id);
    if (!r) return false;
    this.#records.delete(id);
    this.#bytes -= r.bytes;
    this.#dropLive(id);
    return true;
  }

  /** Keep `conv` live as the chain head of record `id`; frees the least recently used idle chain past the cap. */
  keepLive(id: string, conv: Conversation): void {
    if (this.limits.maxLive === 0 || this.#closed || !this.#records.has(id) || conv.released) {
      this.scheduler.release(conv);
      return;
    }
    this.#live.set(id, conv);
    while (this.#live.size > this.limits.maxLive) this.#dropLive(this.#live.keys().next().value!);
  }

  /** The live conversation of record `id` when it is its chain's head, taken out of the idle set; else null. */
  takeLive(id: string): Conversation | null {
    const conv = this.#live.get(id) ?? null;
    this.#live.delete(id);
    return conv === null || conv.released ? null : conv;
  }

  /** Drop expired records. */
  sweep(): void {
    const t = this.now();
    for (const [id, r] of this.#records) if (r.expiresAt <= t) this.delete(id);
  }

  /** Free every live chain and stop the sweeper (shutdown). */
  close(): void {
    this.#closed = true;
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
    for (const id of [...this.#live.keys()]) this.#dropLive(id);
  }

  #dropLive(id: string): void {
    const conv = this.#live.get(id);
    if (!conv) return;
    this.#live.delete(id);
    this.scheduler.release(conv);
  }

  /** KV is short: free idle chains, least recently used first, until `bytes` of reservations are gone. */
  #freeLive(bytes: number): void {
    let freed = 0;
    for (const [id, conv] of this.#live) {
      if (freed >= bytes) break;
      freed += conv.reservedBytes;
      this.#dropLive(id);
    }
  }

  #evict(): void {
    const { maxRecords, maxBytes } = this.limits;
    for (const id of this.#records.keys()) {
      if (this.#records.size <= maxRecords && (maxBytes === 0 || this.#bytes <= maxBytes)) break;
      const r = this.#records.get(id)!;
      if (!r.done && this.#records.size <= maxRecords) continue; // a running response's record goes last
      this.delete(id);
    }
  }

  #startSweeper(): void {
    if (this.#sweeper !== null) return;
    const every = Math.max(1000, Math.min(this.limits.ttlMs, 60_000));
    this.#sweeper = setInterval(() => this.sweep(), every);
    Deno.unrefTimer(this.#sweeper);
  }
}
