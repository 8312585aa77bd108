/**
 * Items a client added but never asked a response for survive a disconnect for the resume TTL, like
 * the cache does: after a resume, response.create answers them exactly as a session that never
 * disconnected does (greedy).
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";

const ITEMS = ["Lily found a little cat.", "What did she call it?"];

function addItems(c: WsClient): void {
  c.send({ type: "session.update", session: { temperature: 0, instructions: "Tell a short story." } });
  for (const text of ITEMS) {
    c.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
  }
}

async function answer(c: WsClient): Promise<{ text: string; input: number }> {
  c.send({ type: "response.create", response: { max_output_tokens: 16 } });
  const done = await c.next("response.done", 20_000);
  assert.equal(done.response.status, "incomplete");
  return { text: done.response.output[0].content[0].text, input: done.response.usage.input_tokens };
}

Deno.test("realtime resume: items added before a disconnect are answered after the resume", async () => {
  const g = await startGateway({ sessionTtl: 30 });
  try {
    const ref = await WsClient.open(g.ws);
    await ref.next("session.created");
    addItems(ref);
    await ref.next((e) => e.type === "conversation.item.done" && e.item.content[0].text === ITEMS[1]);
    const expected = await answer(ref);
    await ref.close();

    const c = await WsClient.open(g.ws);
    const { session } = await c.next("session.created");
    addItems(c);
    await c.next((e) => e.type === "conversation.item.done" && e.item.content[0].text === ITEMS[1]);
    await c.close();
    await new Promise((r) => setTimeout(r, 50));
    const { session_id, resume_token } = session.sinkstream;
    const back = await WsClient.open(`${g.ws}?session_id=${session_id}&resume_token=${resume_token}`);
    const again = await back.next((e) => e.type === "session.created" || e.type === "error");
    assert.equal(again.type, "session.created", `resume refused: ${JSON.stringify(again.error)}`);
    assert.equal(again.session.sinkstream.session_id, session_id);
    assert.deepEqual(await answer(back), expected);
    await back.close();
  } finally {
    await g.close();
  }
});
