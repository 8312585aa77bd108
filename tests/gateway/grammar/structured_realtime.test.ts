/**
 * Structured outputs on the Realtime API (our extension, the Responses API's shape): `session.text.format`
 * in session.update applies to every response of the session and is echoed in session.updated;
 * `response.text.format` in response.create overrides it for that response (`{type: "text"}`: plain text);
 * a schema xgrammar cannot compile fails the response.create with invalid_value naming where it was set,
 * and the session goes on.
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";
import { assertJsonObject, assertValid, PET_SCHEMA } from "./_schemas.ts";

// deno-lint-ignore no-explicit-any
const textOf = (done: any): string =>
  done.response.output[0].content.map((c: { text: string }) => c.text).join("");

Deno.test("realtime: session.text.format constrains every response; response.text.format overrides it", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    const format = { type: "json_schema", name: "pet", schema: PET_SCHEMA, strict: true };
    c.send({ type: "session.update", session: { max_output_tokens: 400, text: { format } } });
    const updated = await c.next("session.updated");
    assert.deepEqual(updated.session.text.format, format);

    const first = await c.turn("Tell me about Lily's cat.");
    assert.equal(first.response.status, "completed", JSON.stringify(first.response.status_details));
    assertValid(textOf(first), PET_SCHEMA, "first turn");
    const second = await c.turn("And her dog?");
    assertValid(textOf(second), PET_SCHEMA, "second turn (same session format)");

    const obj = await c.turn("Now anything.", { text: { format: { type: "json_object" } } });
    assertJsonObject(textOf(obj), "response.text.format json_object");
    const plain = await c.turn("Tell a story.", {
      text: { format: { type: "text" } },
      max_output_tokens: 20,
    });
    assert.throws(() => JSON.parse(textOf(plain)), "text: the model writes prose");

    c.send({
      type: "session.update",
      session: { temperature: 1, sinkstream: { seed: 3 } },
    });
    await c.next("session.updated");
    const sampled = await c.turn("One more pet.");
    assertValid(textOf(sampled), PET_SCHEMA, "sampled turn");
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("realtime: a schema that cannot be compiled fails response.create (invalid_value), the session goes on", async () => {
  const g = await startGateway();
  try {
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    const bad = {
      type: "json_schema",
      name: "bad",
      schema: { type: "object", properties: { a: { type: "frog" } } },
    };
    c.send({ type: "session.update", session: { text: { format: bad } } });
    await c.next("session.updated");
    c.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hi" }] },
    });
    c.send({ type: "response.create", event_id: "evt_r1" });
    const err = await c.next("error");
    assert.equal(err.error.code, "invalid_value");
    assert.equal(err.error.param, "session.text.format");
    assert.equal(err.error.event_id, "evt_r1");
    // A response-level format replaces the session's: the unanswered item is answered now.
    const done = await c.turn("Hello", { text: { format: { type: "json_object" } }, max_output_tokens: 400 });
    assertJsonObject(textOf(done), "after the refusal");
    c.send({ type: "session.update", session: { text: { format: { type: "json_schema", name: "x y" } } } });
    const refused = await c.next("error");
    assert.equal(refused.error.code, "invalid_value");
    assert.match(refused.error.param, /^session\.text\.format/);
    await c.close();
  } finally {
    await g.close();
  }
});
