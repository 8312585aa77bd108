/**
 * One greedy turn in a fresh Realtime session of a gateway at `base` (http://HOST:PORT): the text a
 * process that is well gives for "Once upon a time" in 48 tokens. Tests compare it before and after
 * whatever they do to the process.
 */
import assert from "node:assert/strict";
import { WsClient } from "./_gateway.ts";

export async function greedyTurn(base: URL): Promise<string> {
  const c = await WsClient.open(new URL("/v1/realtime", base).href.replace(/^http/, "ws"));
  try {
    await c.next("session.created");
    const done = await c.turn("Once upon a time", { max_output_tokens: 48, temperature: 0 });
    assert.equal(done.response.status, "incomplete");
    return done.response.output[0].content[0].text;
  } finally {
    await c.close();
  }
}
