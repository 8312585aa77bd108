/**
 * Hostile client 4, faulty dense sequences: a Realtime session set to `policy: "dense", window: 16` (no
 * eviction) that sends a prompt longer than 16 tokens. Its sequence overflows, the engine fails that item
 * of the batched step only: the response ends `failed` with `engine_error`, and every other session in
 * the step goes on. (Realtime only: HTTP chat completions take no per-request cache policy.)
 */
import { EVENT_TIMEOUT_MS, type HostileContext, repeat, withSession } from "./context.ts";

/** ~40 tokens of stories260K: more than the window. */
const PROMPT =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park " +
  "with her big red ball and her best friend Ben.";

export function faultyDense(ctx: HostileContext): Promise<void> {
  return repeat(ctx, 200, () =>
    withSession(ctx, async (s) => {
      s.send({ type: "session.update", session: { sinkstream: { policy: "dense", window: 16 } } });
      const updated = await s.until(["session.updated", "error"], EVENT_TIMEOUT_MS);
      if (updated.type === "error") return ctx.tally.add(`session.update: error ${updated.error?.code}`);
      s.send({
        type: "conversation.item.create",
        item: { type: "message", role: "user", content: [{ type: "input_text", text: PROMPT }] },
      });
      s.send({ type: "response.create", response: { max_output_tokens: 8 } });
      const e = await s.until(["response.done", "error"], EVENT_TIMEOUT_MS);
      if (e.type === "error") return ctx.tally.add(`response: error ${e.error?.code}`);
      const why = e.response?.status_details?.error?.code;
      ctx.tally.add(`response: ${e.response?.status}${why ? ` ${why}` : ""}`);
    }));
}
