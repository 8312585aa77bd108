/**
 * Hostile client 2, huge items: a Realtime client that reads normally and sends items of 250 KB (just
 * under --max-frame-bytes) two more than its session's share (--max-pending-bytes) holds, then asks for a
 * response. Expected: the share accepted, the rest `input_too_large`, and the turn of ~2 M tokens
 * (every "x" is a token of stories260K) `prompt_too_large`; then it disconnects (its items wait for a
 * resume for --session-ttl) and starts over.
 */
import { ITEM_OVERHEAD_BYTES } from "../../gateway/response/input_budget.ts";
import { EVENT_TIMEOUT_MS, type HostileContext, repeat, withSession } from "./context.ts";

export const HUGE_ITEM_CHARS = 250_000;

export function hugeItems(ctx: HostileContext): Promise<void> {
  const text = "x".repeat(HUGE_ITEM_CHARS);
  const items = Math.floor(ctx.limits.maxPendingBytes / (HUGE_ITEM_CHARS + ITEM_OVERHEAD_BYTES)) + 2;
  return repeat(ctx, 100, () =>
    withSession(ctx, async (s) => {
      for (let i = 0; i < items; i++) {
        s.send({
          type: "conversation.item.create",
          item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
        });
      }
      for (let i = 0; i < items; i++) {
        const e = await s.until(["conversation.item.done", "error"], EVENT_TIMEOUT_MS);
        ctx.tally.add(e.type === "error" ? `item: error ${e.error?.code}` : "item: accepted");
      }
      s.send({ type: "response.create", response: { max_output_tokens: 8 } });
      const e = await s.until(["response.done", "error"], EVENT_TIMEOUT_MS);
      ctx.tally.add(
        e.type === "error" ? `response: error ${e.error?.code}` : `response: ${e.response?.status}`,
      );
    }));
}
