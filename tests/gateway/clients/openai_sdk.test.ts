/**
 * The official `openai` SDK, both majors pinned in deno.json (7 as `openai`, 6 as `openai6`), as a user's
 * program calls it against a gateway process: chat completions (JSON, streamed, logprobs), the Responses API
 * (create, stream, continue with previous_response_id, retrieve, delete) and typed errors for what the server
 * does not implement.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import OpenAI6 from "openai6";
import { API_KEY, MODEL_NAME, withGatewayProcess } from "./_process.ts";

type Client = InstanceType<typeof OpenAI>;

async function exercise(client: Client): Promise<void> {
  const messages = [{ role: "user" as const, content: "Once upon a time" }];
  const chat = await client.chat.completions.create({
    model: MODEL_NAME,
    messages,
    max_tokens: 12,
    logprobs: true,
    top_logprobs: 2,
  });
  const text = chat.choices[0].message.content ?? "";
  assert.ok(text.length > 0);
  assert.equal(chat.choices[0].finish_reason, "length");
  assert.equal(chat.choices[0].logprobs?.content?.length, 12);
  assert.equal(chat.choices[0].logprobs?.content?.[0].top_logprobs.length, 2);
  let streamed = "";
  for await (
    const chunk of await client.chat.completions.create({
      model: MODEL_NAME,
      messages,
      max_tokens: 12,
      stream: true,
    })
  ) {
    streamed += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(streamed, text);

  const r1 = await client.responses.create({
    model: MODEL_NAME,
    input: "Lily had a red ball.",
    max_output_tokens: 10,
  });
  assert.equal(r1.status, "incomplete");
  assert.ok(r1.output_text.length > 0);
  assert.equal(r1.usage?.output_tokens, 10);
  const r2 = await client.responses.create({
    model: MODEL_NAME,
    input: [{ role: "user", content: "Tom came to play." }],
    previous_response_id: r1.id,
    max_output_tokens: 10,
  });
  assert.equal(r2.previous_response_id, r1.id);
  assert.ok((r2.usage?.input_tokens_details.cached_tokens ?? 0) > 0, "continued on the live cache");
  const events: string[] = [];
  let deltas = "";
  const stream = await client.responses.create({
    model: MODEL_NAME,
    input: "Lily had a red ball.",
    max_output_tokens: 10,
    stream: true,
  });
  let final: { output_text?: string; id: string } | null = null;
  for await (const ev of stream) {
    events.push(ev.type);
    if (ev.type === "response.output_text.delta") deltas += ev.delta;
    if (ev.type === "response.incomplete") final = ev.response;
  }
  assert.equal(events[0], "response.created");
  assert.equal(events.at(-1), "response.incomplete");
  assert.equal(deltas, r1.output_text, "greedy: the stream says what the first response said");
  const got = await client.responses.retrieve(final!.id);
  assert.equal(got.output_text, deltas);
  await client.responses.delete(final!.id);
  await assert.rejects(
    () => client.responses.retrieve(final!.id),
    (e: unknown) => (e as { status?: number }).status === 404,
  );

  // What the server does not implement is a typed 400 naming the parameter.
  await assert.rejects(
    () =>
      client.chat.completions.create({
        model: MODEL_NAME,
        messages,
        tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
      }),
    (e: unknown) => {
      const err = e as { status?: number; code?: string; param?: string };
      return err.status === 400 && err.code === "unsupported_parameter" && err.param === "tools";
    },
  );
  await assert.rejects(
    () =>
      client.responses.create({
        model: MODEL_NAME,
        input: "x",
        tools: [{ type: "function", name: "f", parameters: { type: "object" }, strict: true }],
      }),
    (e: unknown) => (e as { code?: string }).code === "unsupported_parameter",
  );
  // Structured outputs (text.format) are implemented: the output text is a JSON object.
  const structured = await client.responses.create({
    model: MODEL_NAME,
    input: "x",
    max_output_tokens: 400,
    text: { format: { type: "json_object" } },
  });
  assert.equal(structured.status, "completed");
  const value = JSON.parse(structured.output_text);
  assert.ok(typeof value === "object" && value !== null && !Array.isArray(value), structured.output_text);
}

Deno.test("openai SDK 7 and 6: chat completions, logprobs, Responses API (chains, stream, retrieve, delete), typed errors", async () => {
  await withGatewayProcess(async (g) => {
    const baseURL = `http://127.0.0.1:${g.port}/v1`;
    await exercise(new OpenAI({ apiKey: API_KEY, baseURL, maxRetries: 0 }));
    await exercise(new OpenAI6({ apiKey: API_KEY, baseURL, maxRetries: 0 }) as unknown as Client);
  });
});
