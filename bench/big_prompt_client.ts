/**
 * The `ws` load of bench/tokenize_offload.ts in a process of its own (so that building, sending and parsing its
 * 200 KB events does not share the gateway's event loop, as a real client would not): a Realtime client that
 * sends a big prompt as items of 200 KB, asks for a response, cancels it once created, and starts over with
 * new text, until SIGTERM; then it prints how many big turns it sent and exits.
 *
 *   deno run -A bench/big_prompt_client.ts --url ws://127.0.0.1:PORT/v1/realtime --chars 1000000
 */
import { parseArgs } from "node:util";
import { intFlag, RealtimeSession } from "./lib.ts";

/** Characters per conversation item (under the gateway's --max-frame-bytes the benchmark sets). */
export const ITEM_CHARS = 200_000;

/** `n` characters of prose, different for each `round` (so no run re-encodes the previous text). */
export async function bigText(n: number): Promise<(round: number) => string> {
  const base = (await Deno.readTextFile(new URL("../../shared/data/mt_bench.jsonl", import.meta.url)))
    .replace(/[{}"\[\]]/g, " ");
  const body = base.repeat(Math.ceil(n / base.length)).slice(0, n);
  return (round) => `Round ${round}. ${body}`.slice(0, n);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { url: { type: "string" }, chars: { type: "string", default: "1000000" } },
  });
  if (!values.url) throw new Error("--url is required");
  const text = await bigText(intFlag("chars", values.chars, 1000, 64 << 20));
  let turns = 0;
  let stopped = false;
  Deno.addSignalListener("SIGTERM", () => (stopped = true));
  const big = new RealtimeSession(new URL(values.url));
  await big.opened;
  await big.until(["session.created"]);
  console.log("ready");
  while (!stopped) {
    const t = text(turns++);
    for (let i = 0; i < t.length; i += ITEM_CHARS) {
      big.send({
        type: "conversation.item.create",
        item: {
          type: "message",
          role: "user",
          content: [{ type: "input_text", text: t.slice(i, i + ITEM_CHARS) }],
        },
      });
    }
    big.send({ type: "response.create", response: { max_output_tokens: 1 } });
    const e = await big.until(["response.created", "error"]);
    if (e.type === "response.created") big.send({ type: "response.cancel" });
    await big.until(["response.done"]).catch(() => {});
  }
  big.close();
  console.log(`turns ${turns}`);
  Deno.exit(0);
}
