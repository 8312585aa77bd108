/**
 * The Responses API against the real engine: a stored response, GET and DELETE, `previous_response_id`
 * continuing the same live sequence (no re-prefill; the same text as the Realtime session gives for the same
 * conversation), a chain rebuilt from the stored ids when its sequence is not live (the same text again, said
 * in the usage), instructions not repeated, streaming events in OpenAI's order, logprobs.
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";
import { call, type Json, outputText, post, stream } from "./_client.ts";

const T1 = "Lily had a red ball.";
const T2 = "Tom came to play.";

/** The greedy texts of a two-turn conversation over the Realtime API (each turn `max` tokens). */
async function realtimeTexts(ws: string, max: number, instructions?: string): Promise<string[]> {
  const c = await WsClient.open(ws);
  await c.next("session.created");
  if (instructions) {
    c.send({ type: "session.update", session: { instructions } });
    await c.next("session.updated");
  }
  const texts = [];
  for (const t of [T1, T2]) {
    const d = await c.turn(t, { max_output_tokens: max });
    texts.push(d.response.output[0].content[0].text as string);
  }
  await c.close();
  return texts;
}

Deno.test("responses: stored, GET, previous_response_id continues the live sequence, a second child rebuilds", async () => {
  const g = await startGateway();
  try {
    const [rt1, rt2] = await realtimeTexts(g.ws, 10, "Be kind.");
    const renderer = g.gw.ctx.renderer;
    const r1 = await post(g, { input: T1, instructions: "Be kind.", max_output_tokens: 10 });
    assert.equal(r1.status, 200, JSON.stringify(r1.json));
    const a = r1.json;
    assert.match(a.id, /^resp_/);
    assert.equal(a.object, "response");
    assert.equal(a.status, "incomplete");
    assert.deepEqual(a.incomplete_details, { reason: "max_output_tokens" });
    assert.equal(a.output[0].type, "message");
    assert.equal(a.output[0].role, "assistant");
    assert.equal(outputText(a), rt1);
    const turn1 = renderer.encodeTurn([{ role: "system", content: "Be kind." }, {
      role: "user",
      content: T1,
    }], true);
    assert.equal(a.usage.input_tokens, turn1.length);
    assert.equal(a.usage.input_tokens_details.cached_tokens, 0);
    assert.equal(a.usage.output_tokens, 10);
    assert.equal(a.usage.sinkstream.cache, "new");
    assert.deepEqual((await call(g, "GET", a.id)).json, a);
    assert.equal(g.gw.responses.liveChains, 1);

    // The continuation: the same sequence, only the new turn (+ the pending last token) is prefilled.
    const prefilled = g.gw.metrics.promptTokens.value;
    const r2 = await post(g, {
      input: T2,
      instructions: "Be kind.",
      previous_response_id: a.id,
      max_output_tokens: 10,
    });
    const b = r2.json;
    assert.equal(b.previous_response_id, a.id);
    assert.equal(b.usage.sinkstream.cache, "live");
    const turn2 = renderer.encodeTurn([{ role: "user", content: T2 }], false).length;
    const cached = a.usage.sinkstream.cached_tokens;
    assert.equal(cached, turn1.length + 10 - 1);
    assert.equal(b.usage.input_tokens_details.cached_tokens, cached);
    assert.equal(b.usage.input_tokens, cached + turn2 + 1);
    assert.equal(g.gw.metrics.promptTokens.value - prefilled, turn2 + 1, "no re-prefill of the history");
    assert.equal(outputText(b), rt2, "the same text as the Realtime session's second turn");
    assert.equal(g.gw.responses.liveChains, 1);

    // a is no longer its chain's head: a second child is rebuilt from a's stored ids, exactly.
    const r3 = await post(g, { input: T2, previous_response_id: a.id, max_output_tokens: 10 });
    const c3 = r3.json;
    assert.equal(c3.usage.sinkstream.cache, "rebuilt");
    assert.equal(c3.usage.sinkstream.rebuilt_tokens, turn1.length + 10);
    assert.equal(c3.usage.input_tokens_details.cached_tokens, 0);
    assert.equal(c3.usage.input_tokens, turn1.length + 10 + turn2);
    assert.equal(outputText(c3), rt2);

    // DELETE: gone for GET and for previous_response_id.
    assert.deepEqual((await call(g, "DELETE", a.id)).json, { id: a.id, object: "response", deleted: true });
    assert.equal((await call(g, "GET", a.id)).status, 404);
    assert.equal((await call(g, "DELETE", a.id)).status, 404);
    const gone = await post(g, { input: T2, previous_response_id: a.id });
    assert.equal(gone.status, 400);
    assert.equal(gone.json.error.code, "previous_response_not_found");
    assert.equal(gone.json.error.param, "previous_response_id");

    // store: false is not stored, and its sequence is freed.
    const live = g.gw.scheduler.liveConversations;
    const n = await post(g, { input: T1, store: false, max_output_tokens: 3 });
    assert.equal(n.json.store, false);
    assert.equal((await call(g, "GET", n.json.id)).status, 404);
    assert.equal(g.gw.scheduler.liveConversations, live);
  } finally {
    await g.close();
  }
});

Deno.test("responses: streaming events in OpenAI's order, numbered, text and logprobs as the JSON response", async () => {
  const g = await startGateway();
  try {
    const body = {
      input: T1,
      max_output_tokens: 8,
      include: ["message.output_text.logprobs"],
      top_logprobs: 2,
    };
    const json = (await post(g, { ...body, store: false })).json;
    const events = await stream(g, body);
    const types = events.map((e) => e.type);
    const deltas = types.filter((t) => t === "response.output_text.delta").length;
    assert.deepEqual(types, [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      ...Array(deltas).fill("response.output_text.delta"),
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.incomplete",
    ]);
    assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
    assert.equal(events[0].response.status, "in_progress");
    const text = events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
    assert.equal(text, outputText(json));
    const done = events.at(-1)!.response as Json;
    assert.equal(outputText(done), text);
    const lp = events.filter((e) => e.type === "response.output_text.delta").flatMap((e) => e.logprobs);
    assert.equal(lp.length, 8);
    assert.deepEqual(lp, json.output[0].content[0].logprobs);
    assert.equal(lp[0].top_logprobs.length, 2);
    assert.deepEqual(events.find((e) => e.type === "response.output_text.done")!.logprobs, lp);
    // The streamed response was stored: GET gives its final object.
    assert.deepEqual((await call(g, "GET", done.id)).json, done);
  } finally {
    await g.close();
  }
});

Deno.test("responses: bad requests get typed 400s, unsupported parameters named", async () => {
  const g = await startGateway();
  try {
    const cases: [Json, string, string | null][] = [
      [{}, "invalid_value", "input"],
      [{ input: "x", tools: [{ type: "function", name: "f" }] }, "unsupported_parameter", "tools"],
      [{ input: "x", text: { format: { type: "json_schema" } } }, "invalid_value", "text.format.name"],
      [{ input: "x", include: ["reasoning.encrypted_content"] }, "unsupported_parameter", "include"],
      [{ input: "x", background: true }, "unsupported_parameter", "background"],
      [
        { input: [{ type: "function_call_output", call_id: "c", output: "1" }] },
        "unsupported_parameter",
        "input.0",
      ],
      [{ input: "x", sparkle: 1 }, "unknown_parameter", "sparkle"],
      [
        { input: "x", previous_response_id: "resp_nope" },
        "previous_response_not_found",
        "previous_response_id",
      ],
      [{ input: "x", temperature: 9 }, "invalid_value", "temperature"],
    ];
    for (const [body, code, param] of cases) {
      const r = await post(g, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.error.code, code, JSON.stringify(body));
      assert.equal(r.json.error.param, param, JSON.stringify(body));
    }
    const wrong = await post(g, { input: "x", model: "gpt-9" });
    assert.equal(wrong.status, 404);
    assert.equal(g.gw.metrics.generationTokens.value, 0);
    // Values that ask for nothing pass; items as messages.
    const ok = await post(g, {
      input: [{ role: "developer", content: "Be brief." }, {
        role: "user",
        content: [{ type: "input_text", text: T1 }],
      }],
      tools: [],
      tool_choice: "auto",
      text: { format: { type: "text" } },
      reasoning: { effort: null },
      truncation: "disabled",
      user: "u",
      metadata: { k: "v" },
      max_output_tokens: 2,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.deepEqual(ok.json.metadata, { k: "v" });
  } finally {
    await g.close();
  }
});
