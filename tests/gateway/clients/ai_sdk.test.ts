/**
 * The Vercel AI SDK (`ai` + `@ai-sdk/openai`, pinned in deno.json) as a user's program calls it against a
 * gateway process: `openai(model)` (the Responses API, the provider's default) and `openai.chat(model)` (chat
 * completions), generateText and streamText, a Responses API continuation with `previousResponseId`, and an
 * unsupported parameter surfacing as a typed API error.
 */
import assert from "node:assert/strict";
import { APICallError, generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { API_KEY, MODEL_NAME, withGatewayProcess } from "./_process.ts";

Deno.test("ai SDK: Responses API and chat completions, generate and stream, continuation, typed errors", async () => {
  await withGatewayProcess(async (g) => {
    const openai = createOpenAI({ apiKey: API_KEY, baseURL: `http://127.0.0.1:${g.port}/v1` });
    const prompt = "Lily had a red ball.";
    for (const model of [openai(MODEL_NAME), openai.chat(MODEL_NAME)]) {
      const r = await generateText({ model, prompt, maxOutputTokens: 12, temperature: 0, maxRetries: 0 });
      assert.ok(r.text.length > 0, model.provider);
      assert.equal(r.finishReason, "length", model.provider);
      assert.equal(r.usage.outputTokens, 12);
      const s = streamText({ model, prompt, maxOutputTokens: 12, temperature: 0, maxRetries: 0 });
      let streamed = "";
      for await (const piece of s.textStream) streamed += piece;
      assert.equal(streamed, r.text, `${model.provider}: greedy, streamed = generated`);
      assert.equal(await s.finishReason, "length");
    }

    // A Responses API chain: the second turn continues the first one's live cache.
    const first = await generateText({
      model: openai(MODEL_NAME),
      prompt,
      maxOutputTokens: 8,
      temperature: 0,
    });
    const id = first.response.id;
    assert.match(id, /^resp_/);
    const next = await generateText({
      model: openai(MODEL_NAME),
      prompt: "Tom came to play.",
      maxOutputTokens: 8,
      temperature: 0,
      providerOptions: { openai: { previousResponseId: id } },
    });
    assert.ok((next.usage.inputTokenDetails?.cacheReadTokens ?? 0) > 0, JSON.stringify(next.usage));

    await assert.rejects(
      () =>
        generateText({
          model: openai.chat(MODEL_NAME),
          prompt,
          maxRetries: 0,
          providerOptions: { openai: { logitBias: { 5: 10 } } },
        }),
      (e: unknown) =>
        APICallError.isInstance(e) && e.statusCode === 400 && /logit_bias/.test(e.responseBody ?? ""),
    );
  });
});
