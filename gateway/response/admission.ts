/**
 * Admission for both front ends: whether new work may start, and a typed refusal when not.
 *  - Slots: `--max-sessions` counts Realtime sessions (attached or waiting for a resume) and running
 *    HTTP completions together.
 *  - KV budget: a conversation's first response reserves its worst case in the scheduler (KvBudget);
 *    `submit` turns the scheduler's refusal into the same typed refusal.
 *  - Draining: during shutdown everything new is refused with `server_shutting_down`.
 * Every capacity refusal (`server_busy`) is counted in `sinkstream:requests_rejected_total`.
 */
import type { Metrics } from "../metrics/metrics.ts";
import {
  BusyError,
  type Conversation,
  type GenerateRequest,
  type JobHandle,
  type Scheduler,
  SchedulerClosedError,
} from "../scheduler/scheduler.ts";

export interface Refusal {
  code: "server_busy" | "server_shutting_down";
  message: string;
}

/** A held slot; `release` is idempotent. */
export interface Slot {
  release(): void;
}

export function isRefusal(x: Slot | JobHandle | Refusal): x is Refusal {
  return "code" in x;
}

export const SHUTTING_DOWN: Refusal = {
  code: "server_shutting_down",
  message: "the server is shutting down",
};

export class Admission {
  #draining = false;
  #sessions = 0;
  #completions = 0;

  constructor(readonly maxSessions: number, readonly metrics: Metrics) {}

  get draining(): boolean {
    return this.#draining;
  }

  /** Shutdown: refuse everything new from now on. */
  drain(): void {
    this.#draining = true;
  }

  /** Slots held by Realtime sessions. */
  get sessions(): number {
    return this.#sessions;
  }

  /** Slots held by running HTTP completions. */
  get completions(): number {
    return this.#completions;
  }

  /** A slot for a new Realtime session or HTTP completion, or why there is none. */
  acquire(kind: "session" | "completion"): Slot | Refusal {
    if (this.#draining) return SHUTTING_DOWN;
    if (this.#sessions + this.#completions >= this.maxSessions) {
      return this.#busy(`the server is at its limit of ${this.maxSessions} sessions; try again later`);
    }
    if (kind === "session") this.#sessions++;
    else this.#completions++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        if (kind === "session") this.#sessions--;
        else this.#completions--;
      },
    };
  }

  /** Submit a response: the job, or a refusal when the KV budget is exhausted or the server is closing. */
  submit(scheduler: Scheduler, conv: Conversation, req: GenerateRequest): JobHandle | Refusal {
    try {
      return scheduler.submit(conv, req);
    } catch (e) {
      if (e instanceof BusyError) return this.#busy(e.message);
      if (e instanceof SchedulerClosedError) return SHUTTING_DOWN;
      throw e;
    }
  }

  #busy(message: string): Refusal {
    this.metrics.rejected.inc();
    return { code: "server_busy", message };
  }
}
