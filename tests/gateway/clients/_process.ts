/**
 * The client-library tests' gateway: a real gateway process (what `deno task start` runs) on a loopback
 * port with the shared stories260K model, greedy by default, stopped when the test's function returns.
 * Plus the turn renderer of that model, to say how many tokens a rendered turn has.
 */
import { type GatewayProcess, SHARED_MODEL, startGatewayProcess } from "../../../bench/gateway_process.ts";
import { loadTokenizer } from "../../../mod.ts";
import { ChatRenderer } from "../../../gateway/chat/template.ts";
import type { ChatMessage } from "../../../gateway/chat/template.ts";

export const MODEL_NAME = "stories260K";
export const API_KEY = "sk-client-test";

/** Run `fn` against a fresh gateway process (`--api-key API_KEY` plus `args`); it is stopped afterwards. */
export async function withGatewayProcess(
  fn: (g: GatewayProcess) => Promise<void>,
  args: string[] = [],
): Promise<void> {
  const g = await startGatewayProcess({ args: ["--api-key", API_KEY, "--model-name", MODEL_NAME, ...args] });
  try {
    await fn(g);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- gateway stderr ---\n${g.stderrTail()}`, { cause: e });
  } finally {
    await g.stop();
  }
}

let renderer: Promise<ChatRenderer> | null = null;

/** Tokens of a turn as the gateway renders it (`first`: the conversation's first turn). */
export async function turnTokens(messages: ChatMessage[], first: boolean): Promise<number> {
  renderer ??= loadTokenizer(SHARED_MODEL).then((t) => new ChatRenderer(t));
  const r = await renderer;
  return r.encodeTurn(messages, first).length;
}
