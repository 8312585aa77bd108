/** `usage.sinkstream`: the state of a response's cache after it, the same on every front end. */
import type { CacheStats, SequenceOptions } from "../../runtime/types.ts";

export interface CacheUsage {
  policy: string | undefined;
  sinks: number;
  window: number;
  cached_tokens: number;
  seen_tokens: number;
  evicted_tokens: number;
  cache_bytes: number;
}

/** From the cache's stats (null before its sequence exists: the options and capacity say what it will be). */
export function cacheUsage(stats: CacheStats | null, options: SequenceOptions, capacity: number): CacheUsage {
  return {
    policy: stats?.policy ?? options.policy,
    sinks: stats?.sinks ?? 0,
    window: stats?.capacity ?? capacity,
    cached_tokens: stats?.cached ?? 0,
    seen_tokens: stats?.seen ?? 0,
    evicted_tokens: stats?.evicted ?? 0,
    cache_bytes: stats?.bytes ?? 0,
  };
}
