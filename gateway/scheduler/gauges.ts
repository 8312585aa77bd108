/** The scheduler's gauges in /metrics: KV bytes and tokens held, KV usage, running and waiting jobs. */
import type { Metrics } from "../metrics/metrics.ts";
import type { Job } from "./job.ts";
import type { KvBudget } from "./kv_budget.ts";

export function publishGauges(m: Metrics, kv: KvBudget, jobs: readonly Job[]): void {
  let bytes = 0, cached = 0;
  for (const c of kv.conversations) {
    bytes += c.stats?.bytes ?? 0;
    cached += c.stats?.cached ?? 0;
  }
  m.kvBytes.set(bytes);
  m.cachedTokens.set(cached);
  // Usage of the budget, or of what is reserved when there is no budget.
  const denom = kv.budgetBytes > 0 ? kv.budgetBytes : kv.reserved;
  m.kvUsage.set(denom > 0 ? bytes / denom : 0);
  let running = 0, waiting = 0;
  for (const j of jobs) if (j.status !== "done") j.req.isPaused?.() ? waiting++ : running++;
  m.running.set(running);
  m.waiting.set(waiting);
}
