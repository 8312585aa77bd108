/**
 * What every hostile client of bench/hostile.ts gets: the gateway (loopback only), the time the run
 * ends, the limits it is expected to enforce (the defaults of gateway/config/config.ts: the soak serves
 * with them) and its tally; and the loop they all run, bounded in count and time.
 */
import type { Config } from "../../gateway/config/config.ts";
import { RealtimeSession, realtimeUrl, sleep } from "../lib.ts";
import type { Tally } from "./tally.ts";

export interface HostileContext {
  /** http://127.0.0.1:PORT */
  base: URL;
  port: number;
  /** performance.now() at which the run ends: no cycle starts after it, holds are cut to it. */
  deadline: number;
  limits: Config;
  tally: Tally;
}

/** At most this many cycles per client, however fast they go. */
export const MAX_CYCLES = 100_000;

/** Milliseconds left until the deadline (0 when past). */
export function timeLeft(ctx: HostileContext): number {
  return Math.max(0, ctx.deadline - performance.now());
}

/**
 * Run `cycle` (one connection's worth of abuse) again and again until the deadline, with `pauseMs`
 * between cycles. A cycle that throws is counted as `failed: <message>` and the loop goes on.
 */
export async function repeat(
  ctx: HostileContext,
  pauseMs: number,
  cycle: () => Promise<void>,
): Promise<void> {
  for (let i = 0; i < MAX_CYCLES && timeLeft(ctx) > 0; i++) {
    ctx.tally.add("cycles");
    try {
      await cycle();
    } catch (e) {
      ctx.tally.add(`failed: ${(e instanceof Error ? e.message : String(e)).split("\n")[0].slice(0, 100)}`);
    }
    await sleep(Math.min(pauseMs, timeLeft(ctx)));
  }
}

/** How long a hostile client that reads waits for one server event. */
export const EVENT_TIMEOUT_MS = 60_000;

/**
 * One Realtime session for `use` (which may return early): opened, `session.created` awaited (an error
 * event instead, e.g. server_busy, is counted as `connect: error <code>` and `use` is not called), and
 * closed afterwards whatever happened.
 */
export async function withSession(ctx: HostileContext, use: (s: RealtimeSession) => Promise<void>) {
  const s = new RealtimeSession(realtimeUrl(ctx.base));
  try {
    await s.opened;
    const first = await s.until(["session.created", "error"], EVENT_TIMEOUT_MS);
    if (first.type === "error") return ctx.tally.add(`connect: error ${first.error?.code}`);
    await use(s);
  } finally {
    s.close();
    await s.closed;
  }
}
