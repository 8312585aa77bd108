/**
 * Client input is bounded (#12 failure 2): a session's unanswered items by --max-pending-bytes, a turn by
 * --max-prompt-tokens, all sessions' unconsumed input by --input-budget-mb. What goes over is refused
 * with a typed error and nothing that was accepted is lost: the answer is the one a session that never
 * sent the refused input gives (greedy).
 */
import assert from "node:assert/strict";
import { type Ev, startGateway, WsClient } from "../_gateway.ts";
import { ITEM_OVERHEAD_BYTES } from "../../../gateway/response/input_budget.ts";

function item(text: string, id?: string): Ev {
  return {
    type: "conversation.item.create",
    event_id: `ev_${id ?? text.length}`,
    item: { ...(id ? { id } : {}), type: "message", role: "user", content: [{ type: "input_text", text }] },
  };
}

/** The item's echo or the error it caused. */
function addedOrError(c: WsClient): Promise<Ev> {
  return c.next((e) => e.type === "conversation.item.done" || e.type === "error");
}

async function answer(c: WsClient): Promise<{ text: string; input: number }> {
  c.send({ type: "response.create", response: { max_output_tokens: 12 } });
  const done = await c.next("response.done", 30_000);
  assert.equal(done.response.status, "incomplete", JSON.stringify(done.response.status_details));
  return { text: done.response.output[0].content[0].text, input: done.response.usage.input_tokens };
}

const WORDS = "Lily went to the park with her mom and saw a big red ball. ";

Deno.test("input limits: an item over --max-pending-bytes is refused, the accepted ones are answered", async () => {
  const itemBytes = 2000;
  const text = WORDS.repeat(Math.ceil(itemBytes / WORDS.length)).slice(0, itemBytes);
  // Room for exactly three items.
  const g = await startGateway({ maxPendingBytes: 3 * (itemBytes + ITEM_OVERHEAD_BYTES) + 10 });
  try {
    const ref = await WsClient.open(g.ws);
    await ref.next("session.created");
    for (let i = 0; i < 3; i++) ref.send(item(text));
    for (let i = 0; i < 3; i++) assert.equal((await addedOrError(ref)).type, "conversation.item.done");
    const expected = await answer(ref);
    await ref.close();

    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    for (let i = 0; i < 3; i++) c.send(item(text));
    for (let i = 0; i < 3; i++) assert.equal((await addedOrError(c)).type, "conversation.item.done");
    c.send(item(text + "!", "item_over"));
    const refused = await addedOrError(c);
    assert.equal(refused.type, "error");
    assert.equal(refused.error.code, "input_too_large");
    assert.equal(refused.error.type, "invalid_request_error");
    assert.equal(refused.error.event_id, `ev_item_over`);
    assert.match(refused.error.message, /--max-pending-bytes/);
    assert.deepEqual(await answer(c), expected, "the refused item changed the answer");
    // Answered items no longer count: the session takes new items again.
    c.send(item(text));
    assert.equal((await addedOrError(c)).type, "conversation.item.done");
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("input limits: past --input-budget-mb new input is server_busy for everyone until it drains", async () => {
  const itemBytes = 10_000;
  const text = WORDS.repeat(Math.ceil(itemBytes / WORDS.length)).slice(0, itemBytes);
  const g = await startGateway({ inputBudgetMb: 100_000 / (1 << 20), maxPendingBytes: 0, sessionTtl: 0.3 });
  try {
    const a = await WsClient.open(g.ws);
    await a.next("session.created");
    const held: string[] = [];
    for (let i = 0; i < 20; i++) {
      a.send(item(text, `item_a${i}`));
      const r = await addedOrError(a);
      if (r.type === "error") {
        assert.equal(r.error.code, "server_busy", JSON.stringify(r.error));
        assert.equal(r.error.type, "server_error");
        break;
      }
      held.push(r.item.id);
    }
    assert.equal(held.length, Math.floor(100_000 / (itemBytes + ITEM_OVERHEAD_BYTES)));
    const metrics = await (await fetch(`${g.http}/metrics`)).text();
    assert.match(metrics, /^sinkstream:input_bytes (9\d{4})$/m);

    const b = await WsClient.open(g.ws);
    await b.next("session.created");
    b.send(item(text));
    const busy = await addedOrError(b);
    assert.equal(busy.type, "error");
    assert.equal(busy.error.code, "server_busy");
    // A gives two items back: B's input fits again.
    for (const id of held.slice(0, 2)) {
      a.send({ type: "conversation.item.delete", item_id: id });
      await a.next("conversation.item.deleted");
    }
    b.send(item(text));
    assert.equal((await addedOrError(b)).type, "conversation.item.done");
    await a.close();
    await b.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(g.gw.ctx.inputBudget.used > 0, "unanswered items wait for a resume");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(g.gw.ctx.inputBudget.used, 0, "expired sessions give their input back");
  } finally {
    await g.close();
  }
});

Deno.test("input limits: a turn over --max-prompt-tokens is refused and kept; deleting the item unblocks", async () => {
  const g = await startGateway({ maxPromptTokens: 60 });
  try {
    const ref = await WsClient.open(g.ws);
    await ref.next("session.created");
    ref.send(item("Lily saw a cat."));
    await addedOrError(ref);
    const expected = await answer(ref);
    await ref.close();

    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send(item(WORDS.repeat(10), "item_long"));
    assert.equal((await addedOrError(c)).type, "conversation.item.done");
    c.send({ type: "response.create", event_id: "ev_big", response: { max_output_tokens: 12 } });
    const refused = await c.next("error");
    assert.equal(refused.error.code, "prompt_too_large");
    assert.equal(refused.error.event_id, "ev_big");
    assert.match(refused.error.message, /--max-prompt-tokens/);
    // Still there: asking again gives the same refusal, not an empty turn.
    c.send({ type: "response.create", response: {} });
    assert.equal((await c.next("error")).error.code, "prompt_too_large");
    c.send({ type: "conversation.item.delete", item_id: "item_long" });
    assert.deepEqual((await c.next("conversation.item.deleted")).item_id, "item_long");
    c.send({ type: "conversation.item.delete", item_id: "item_long" });
    assert.equal((await c.next("error")).error.code, "item_not_found");
    c.send(item("Lily saw a cat."));
    await addedOrError(c);
    assert.deepEqual(await answer(c), expected);
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("input limits: answered items cannot be deleted (they are in the KV cache)", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send(item("Lily saw a cat.", "item_sent"));
    await addedOrError(c);
    await answer(c);
    c.send({ type: "conversation.item.delete", item_id: "item_sent" });
    const e = await c.next("error");
    assert.equal(e.error.code, "item_not_found");
    assert.match(e.error.message, /KV cache/);
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("input limits: an HTTP completion over --max-prompt-tokens is a 400 prompt_too_large", async () => {
  const g = await startGateway({ maxPromptTokens: 60 });
  try {
    const res = await fetch(`${g.http}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: WORDS.repeat(10) }], max_tokens: 4 }),
    });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.code, "prompt_too_large");
    assert.equal(body.error.param, "messages");
    assert.equal(g.gw.ctx.inputBudget.used, 0);
    const ok = await fetch(`${g.http}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
    });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  } finally {
    await g.close();
  }
});

Deno.test("input limits: under budget pressure detached sessions are expired early, live ones keep theirs", async () => {
  const itemBytes = 10_000;
  const text = WORDS.repeat(Math.ceil(itemBytes / WORDS.length)).slice(0, itemBytes);
  const budget = 100_000;
  const g = await startGateway({ inputBudgetMb: budget / (1 << 20), maxPendingBytes: 0, sessionTtl: 60 });
  try {
    const fill = async (c: WsClient, n: number) => {
      for (let i = 0; i < n; i++) {
        c.send(item(text));
        assert.equal((await addedOrError(c)).type, "conversation.item.done");
      }
    };
    const perItem = itemBytes + ITEM_OVERHEAD_BYTES;
    const gone = await WsClient.open(g.ws);
    const { session } = await gone.next("session.created");
    await fill(gone, 4);
    await gone.close();
    const live = await WsClient.open(g.ws);
    const liveId = (await live.next("session.created")).session.sinkstream.session_id;
    const liveItems = Math.floor(budget / perItem) - 4;
    await fill(live, liveItems); // the budget is full now
    const other = await WsClient.open(g.ws);
    await other.next("session.created");
    await fill(other, 1); // room made by expiring the detached session, not the live one
    const { session_id, resume_token } = session.sinkstream;
    const back = await WsClient.open(`${g.ws}?session_id=${session_id}&resume_token=${resume_token}`);
    assert.equal((await back.next("error")).error.code, "session_not_found");
    // With no detached session left to expire, the budget refuses again.
    let refused: Ev | null = null;
    for (let i = 0; i < 10 && refused === null; i++) {
      other.send(item(text));
      const e = await addedOrError(other);
      if (e.type === "error") refused = e;
    }
    assert.equal(refused?.error.code, "server_busy");
    // The live session kept every item.
    assert.equal(g.gw.sessions.sessions.get(liveId)?.input.held, liveItems * perItem);
    await live.close();
    await other.close();
  } finally {
    await g.close();
  }
});
