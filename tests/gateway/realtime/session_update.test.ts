/**
 * session.update applies every field it can: unsupported fields (audio, voices, tools, ...) and unknown ones
 * each get a non-fatal error event naming them, and the rest of the update (instructions first) applies.
 * response.create refuses a response that asks for something the server does not do.
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";

Deno.test("session.update: unsupported and unknown fields are named, the rest applies", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send({
      type: "session.update",
      event_id: "evt_u1",
      session: {
        type: "realtime",
        instructions: "Be brief.",
        max_output_tokens: 7,
        output_modalities: ["audio"],
        voice: "alloy",
        tools: [{ type: "function", name: "f", parameters: {} }],
        tool_choice: "auto",
        audio: { output: { voice: "marin", bogus: 1 }, input: { noise_reduction: null } },
        truncation: "auto",
        shiny: true,
      },
    });
    const errors = [];
    let updated;
    while (!updated) {
      const e = await c.next((e) => e.type === "error" || e.type === "session.updated");
      if (e.type === "error") errors.push(e.error);
      else updated = e;
    }
    const byParam = Object.fromEntries(errors.map((e) => [e.param, e.code]));
    assert.deepEqual(byParam, {
      "session.output_modalities": "unsupported_parameter",
      "session.voice": "unsupported_parameter",
      "session.tools": "unsupported_parameter",
      "session.audio.output.voice": "unsupported_parameter",
      "session.audio.output.bogus": "unknown_parameter",
      "session.shiny": "unknown_parameter",
    });
    for (const e of errors) assert.equal(e.event_id, "evt_u1");
    assert.equal(updated.session.instructions, "Be brief.");
    assert.equal(updated.session.max_output_tokens, 7);
    assert.deepEqual(updated.session.output_modalities, ["text"]);
    const done = await c.turn("Hi");
    assert.equal(done.response.usage.output_tokens, 7);
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("response.create: a response asking for tools or unknown fields is refused, the session goes on", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hi" }] },
    });
    const refused: [unknown, string, string][] = [
      [{ tools: [{ type: "function", name: "f" }] }, "unsupported_parameter", "response.tools"],
      [{ output_modalities: ["audio"] }, "unsupported_parameter", "response.output_modalities"],
      [{ tool_choice: "required" }, "unsupported_parameter", "response.tool_choice"],
      [{ sparkle: 1 }, "unknown_parameter", "response.sparkle"],
    ];
    for (const [response, code, param] of refused) {
      c.send({ type: "response.create", response });
      const e = await c.next("error");
      assert.equal(e.error.code, code, JSON.stringify(response));
      assert.equal(e.error.param, param);
    }
    assert.ok(!c.events.some((e) => e.type === "response.created"));
    c.send({ type: "response.create", response: { max_output_tokens: 3, tool_choice: "none" } });
    const done = await c.next("response.done", 20_000);
    assert.equal(done.response.usage.output_tokens, 3);
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("session.update: resending the cache settings unchanged after the first response is not a lock error", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    c.send({ type: "session.update", session: { sinkstream: { window: 64, sinks: 4 } } });
    await c.next("session.updated");
    await c.turn("Hi", { max_output_tokens: 2 });
    c.send({
      type: "session.update",
      session: { instructions: "Again.", sinkstream: { window: 64, sinks: 4 } },
    });
    assert.equal((await c.next("session.updated")).session.instructions, "Again.");
    c.send({ type: "session.update", session: { sinkstream: { window: 96 } } });
    assert.equal((await c.next("error")).error.code, "session_settings_locked");
    await c.close();
  } finally {
    await g.close();
  }
});
