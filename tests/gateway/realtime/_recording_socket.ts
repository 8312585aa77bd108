/**
 * A stand-in for a session's WebSocket that records every event the session sends and exposes a
 * settable `bufferedAmount`; the session, scheduler and engine behind it are the real ones.
 */
import type { SessionSocket } from "../../../gateway/realtime/session.ts";

// deno-lint-ignore no-explicit-any
export type Event = Record<string, any>;

export class RecordingSocket implements SessionSocket {
  readyState = 1;
  bufferedAmount = 0;
  events: Event[] = [];
  /** Called after each event is recorded, synchronously (e.g. to fill the buffer at an exact point). */
  onEvent: ((e: Event) => void) | null = null;
  send(data: string) {
    const e = JSON.parse(data);
    this.events.push(e);
    this.onEvent?.(e);
  }
  close() {
    this.readyState = 3;
  }
  count(type: string): number {
    return this.events.filter((e) => e.type === type).length;
  }
  last(type: string): Event | undefined {
    return this.events.findLast((e) => e.type === type);
  }
  /** Wait (polling) until `count(type)` reaches n; the last such event. */
  async until(type: string, n = 1, ms = 10_000): Promise<Event> {
    const t0 = Date.now();
    while (this.count(type) < n) {
      if (Date.now() - t0 > ms) throw new Error(`timeout waiting for ${n} x ${type}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    return this.last(type)!;
  }
}
