/**
 * Structured outputs over HTTP from stories260K (a 260K-parameter story model that knows nothing of JSON):
 * chat completions with `response_format` json_object and json_schema, streaming and not, greedy and at
 * temperature 1 with several seeds; the Responses API's `text.format`; the official `openai` SDK's
 * `response_format` and `chat.completions.parse`; invalid formats and schemas get typed 400s. Every output
 * is parsed and validated against its schema with ajv.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { MAX_SCHEMA_BYTES } from "../../../gateway/grammar/format.ts";
import { startGateway, type TestGateway } from "../_gateway.ts";
import { assertJsonObject, assertValid, PET_SCHEMA } from "./_schemas.ts";

type Json = Record<string, unknown>;
const messages = [{ role: "user", content: "Tell me about Lily's cat." }];
const petFormat = { type: "json_schema", json_schema: { name: "pet", schema: PET_SCHEMA, strict: true } };

async function chat(g: TestGateway, body: Json): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${g.http}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: 400, ...body }),
  });
  return { status: r.status, json: await r.json() };
}

/** A streamed chat completion: the deltas joined, the last finish_reason. */
async function chatStream(g: TestGateway, body: Json): Promise<{ text: string; finish: string | null }> {
  const r = await fetch(`${g.http}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: 400, stream: true, ...body }),
  });
  assert.equal(r.status, 200);
  let text = "";
  let finish: string | null = null;
  for (const line of (await r.text()).split("\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const ev = JSON.parse(line.slice(6));
    assert.equal(ev.error, undefined, JSON.stringify(ev.error));
    const choice = ev.choices[0];
    text += choice.delta.content ?? "";
    finish = choice.finish_reason ?? finish;
  }
  return { text, finish };
}

function content(json: Json): { text: string; finish: string } {
  const choice = (json.choices as { message: { content: string }; finish_reason: string }[])[0];
  return { text: choice.message.content, finish: choice.finish_reason };
}

Deno.test("chat completions: json_object and json_schema outputs parse and validate, greedy and sampled", async () => {
  const g = await startGateway();
  try {
    const plain = await chat(g, { max_tokens: 30 });
    assert.throws(() => JSON.parse(content(plain.json).text), "unconstrained, the model writes a story");

    const obj = await chat(g, { response_format: { type: "json_object" } });
    assert.equal(obj.status, 200, JSON.stringify(obj.json));
    assert.equal(content(obj.json).finish, "stop");
    assertJsonObject(content(obj.json).text, "json_object (greedy)");

    const greedy = await chat(g, { response_format: petFormat, temperature: 0 });
    assert.equal(greedy.status, 200, JSON.stringify(greedy.json));
    assert.equal(content(greedy.json).finish, "stop");
    assertValid(content(greedy.json).text, PET_SCHEMA, "json_schema (greedy)");

    const seen = new Set<string>();
    for (const seed of [1, 2, 3, 4]) {
      const r = await chat(g, { response_format: petFormat, temperature: 1, seed });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const { text, finish } = content(r.json);
      assert.equal(finish, "stop", `seed ${seed}: ${text}`);
      assertValid(text, PET_SCHEMA, `json_schema (temperature 1, seed ${seed})`);
      seen.add(text);
      const again = await chat(g, { response_format: petFormat, temperature: 1, seed });
      assert.equal(content(again.json).text, text, "the same seed gives the same output");
    }
    assert.ok(seen.size >= 3, `sampling varies the outputs (${seen.size} distinct of 4)`);
    for (const seed of [5, 6]) {
      const r = await chat(g, { response_format: { type: "json_object" }, temperature: 1, seed });
      assertJsonObject(content(r.json).text, `json_object (temperature 1, seed ${seed})`);
    }
  } finally {
    await g.close();
  }
});

Deno.test("chat completions: a streamed json_schema output is the same JSON, chunk by chunk", async () => {
  const g = await startGateway();
  try {
    const whole = await chat(g, { response_format: petFormat, temperature: 1, seed: 7 });
    const streamed = await chatStream(g, { response_format: petFormat, temperature: 1, seed: 7 });
    assert.equal(streamed.finish, "stop");
    assertValid(streamed.text, PET_SCHEMA, "streamed json_schema");
    assert.equal(streamed.text, content(whole.json).text);
    const obj = await chatStream(g, { response_format: { type: "json_object" } });
    assert.equal(obj.finish, "stop");
    assertJsonObject(obj.text, "streamed json_object");
  } finally {
    await g.close();
  }
});

Deno.test("responses API: text.format json_schema / json_object validate and are echoed", async () => {
  const g = await startGateway();
  const post = async (body: Json) => {
    const r = await fetch(`${g.http}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input: "Tell me about Tom's dog.", max_output_tokens: 400, ...body }),
    });
    return { status: r.status, json: await r.json() };
  };
  const outputText = (json: Json) =>
    (json.output as { content: { text: string }[] }[])[0].content.map((c) => c.text).join("");
  try {
    const format = { type: "json_schema", name: "pet", schema: PET_SCHEMA, strict: true };
    const r = await post({ text: { format } });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.status, "completed");
    assertValid(outputText(r.json), PET_SCHEMA, "responses json_schema");
    assert.deepEqual((r.json.text as Json).format, format);
    // A continuation with its own format on the same live chain.
    const next = await post({ previous_response_id: r.json.id, text: { format: { type: "json_object" } } });
    assert.equal(next.status, 200, JSON.stringify(next.json));
    assertJsonObject(outputText(next.json), "responses json_object (continued chain)");
    assert.deepEqual((next.json.text as Json).format, { type: "json_object" });
    const sampled = await post({ text: { format }, temperature: 1 });
    assertValid(outputText(sampled.json), PET_SCHEMA, "responses json_schema at temperature 1");
  } finally {
    await g.close();
  }
});

Deno.test("structured outputs: bad formats and schemas get typed 400s naming the parameter", async () => {
  const g = await startGateway();
  try {
    const big = { type: "object", description: "x".repeat(MAX_SCHEMA_BYTES) };
    const cases: [Json, string][] = [
      [
        { response_format: { type: "json_schema", json_schema: { name: "has space", schema: {} } } },
        "response_format.json_schema.name",
      ],
      [
        { response_format: { type: "json_schema", json_schema: { name: "big", schema: big } } },
        "response_format.json_schema.schema",
      ],
      [{ response_format: { type: "yaml" } }, "response_format.type"],
      // Well-formed JSON, but no schema xgrammar can compile.
      [{
        response_format: {
          type: "json_schema",
          json_schema: { name: "bad", schema: { type: "object", properties: { a: { type: "frog" } } } },
        },
      }, "response_format"],
    ];
    for (const [body, param] of cases) {
      const r = await chat(g, body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 200));
      const error = r.json.error as Json;
      assert.equal(error.type, "invalid_request_error");
      assert.equal(error.code, "invalid_value");
      assert.equal(error.param, param, String(error.message));
    }
    const r = await fetch(`${g.http}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        input: "x",
        text: {
          format: {
            type: "json_schema",
            name: "bad",
            schema: { type: "object", properties: { a: { type: "frog" } } },
          },
        },
      }),
    });
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.param, "text.format");
    assert.equal(g.gw.metrics.generationTokens.value, 0, "nothing generated for refused requests");
  } finally {
    await g.close();
  }
});

Deno.test("openai SDK: response_format json_schema and chat.completions.parse against the gateway", async () => {
  const g = await startGateway();
  try {
    const client = new OpenAI({ apiKey: "none", baseURL: `${g.http}/v1`, maxRetries: 0 });
    const created = await client.chat.completions.create({
      model: "stories260K",
      messages: [{ role: "user", content: "Tell me about Lily's cat." }],
      max_tokens: 400,
      response_format: {
        type: "json_schema",
        json_schema: { name: "pet", schema: PET_SCHEMA, strict: true },
      },
    });
    assert.equal(created.choices[0].finish_reason, "stop");
    assertValid(created.choices[0].message.content ?? "", PET_SCHEMA, "SDK create");
    const parsed = await client.chat.completions.parse({
      model: "stories260K",
      messages: [{ role: "user", content: "Tell me about Lily's cat." }],
      max_tokens: 400,
      temperature: 1,
      seed: 11,
      response_format: {
        type: "json_schema",
        json_schema: { name: "pet", schema: PET_SCHEMA, strict: true },
      },
    });
    const message = parsed.choices[0].message;
    assertValid(message.content ?? "", PET_SCHEMA, "SDK parse");
    assert.deepEqual(message.parsed, JSON.parse(message.content ?? ""));
  } finally {
    await g.close();
  }
});
