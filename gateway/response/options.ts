/** The cache settings of a new conversation: the configured defaults, overridden per session. */
import type { CachePolicy, SequenceOptions } from "../../runtime/types.ts";
import type { Config } from "../config/config.ts";

export interface CacheOverrides {
  policy?: CachePolicy;
  sinks?: number;
  /** Cache capacity in tokens; 0 = the model's context. */
  window?: number;
}

export function sequenceOptions(config: Config, o: CacheOverrides = {}): SequenceOptions {
  const window = o.window ?? config.window;
  return {
    policy: o.policy ?? config.policy,
    sinks: o.sinks ?? config.sinks,
    capacity: window > 0 ? window : undefined,
  };
}
