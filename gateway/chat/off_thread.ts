/**
 * Encoding chat turns off the event loop: one Deno Worker (encode_worker.ts) holds its own tokenizer,
 * loaded from the same files (Tokenizer.source), and its own ChatRenderer with the same template, and
 * encodes the turns it is sent one after another. Started on the first turn sent, stopped by close().
 *
 * The queue is bounded: the message contents of the turns sent and not yet answered total at most
 * MAX_PENDING_CHARS; a turn that would go past it is refused at once with EncoderBusyError, so several
 * sessions sending big turns cannot pile memory up in the worker.
 */
import type { TokenizerSource } from "../../runtime/types.ts";
import type { ChatMessage } from "./turn_segments.ts";
import type { WorkerReply, WorkerRequest } from "./encode_worker.ts";

/** Bound on the UTF-16 units of message content waiting in (or being encoded by) the worker. */
export const MAX_PENDING_CHARS = 8 * 1024 * 1024;

/** The worker's queue is full: try again later (the gateway answers `server_busy`). */
export class EncoderBusyError extends Error {
  override name = "EncoderBusyError";
  readonly code = "tokenizer_busy";
}

/** What the worker's tokenizer must match (a changed file on disk would change the ids). */
export interface TokenizerIdentity {
  vocabSize: number;
  bosId: number;
  eosId: number;
  chatTemplate?: string;
}

interface Pending {
  chars: number;
  resolve: (ids: number[]) => void;
  reject: (e: Error) => void;
}

/** Int32Array -> number[] (an index loop: Array.from and push are 10-30x slower at 1M tokens). */
function toArray(a: Int32Array): number[] {
  const out = new Array<number>(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i];
  return out;
}

export class OffThreadEncoder {
  readonly #source: TokenizerSource;
  readonly #identity: TokenizerIdentity;
  #worker: Worker | null = null;
  readonly #pending = new Map<number, Pending>();
  #pendingChars = 0;
  #nextId = 1;

  constructor(source: TokenizerSource, identity: TokenizerIdentity) {
    this.#source = source;
    this.#identity = identity;
  }

  /** Content units waiting in the worker now. */
  get pendingChars(): number {
    return this.#pendingChars;
  }

  /** The ids of ChatRenderer.encodeTurn(messages, first), computed in the worker. `chars`: content size. */
  encodeTurn(messages: ChatMessage[], first: boolean, chars: number): Promise<number[]> {
    if (this.#pendingChars + chars > MAX_PENDING_CHARS) {
      return Promise.reject(
        new EncoderBusyError(
          `the tokenizer queue is full (${this.#pendingChars} + ${chars} characters waiting, at most ` +
            `${MAX_PENDING_CHARS}); try again later`,
        ),
      );
    }
    let worker: Worker;
    try {
      worker = this.#worker ??= this.#start();
    } catch (e) {
      return Promise.reject(new Error(`the tokenizer worker cannot start: ${(e as Error).message}`));
    }
    const id = this.#nextId++;
    this.#pendingChars += chars;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { chars, resolve, reject });
      const req: WorkerRequest = { type: "encode", id, messages, first };
      worker.postMessage(req);
    });
  }

  /** Stop the worker; turns still waiting are rejected. */
  close(): void {
    this.#fail(new Error("the tokenizer worker was stopped"));
  }

  #start(): Worker {
    const worker = new Worker(new URL("./encode_worker.ts", import.meta.url).href, { type: "module" });
    worker.onmessage = (e: MessageEvent<WorkerReply>) => this.#reply(e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#fail(new Error(`the tokenizer worker failed: ${e.message}`));
    };
    worker.onmessageerror = () => this.#fail(new Error("the tokenizer worker sent an unreadable message"));
    const init: WorkerRequest = { type: "init", source: this.#source, identity: this.#identity };
    worker.postMessage(init);
    return worker;
  }

  #reply(r: WorkerReply): void {
    if (r.type === "fatal") return this.#fail(new Error(`the tokenizer worker cannot start: ${r.message}`));
    const p = this.#pending.get(r.id);
    if (!p) return;
    this.#pending.delete(r.id);
    this.#pendingChars -= p.chars;
    if (r.type === "ids") p.resolve(toArray(r.ids));
    else p.reject(new Error(r.message));
  }

  /** Reject everything waiting and drop the worker (the next turn starts a new one). */
  #fail(e: Error): void {
    this.#worker?.terminate();
    this.#worker = null;
    const waiting = [...this.#pending.values()];
    this.#pending.clear();
    this.#pendingChars = 0;
    for (const p of waiting) p.reject(e);
  }
}
