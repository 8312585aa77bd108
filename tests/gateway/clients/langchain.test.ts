/**
 * LangChain's ChatOpenAI (`@langchain/openai`, pinned in deno.json) as a user's program calls it against a
 * gateway process: chat completions and `useResponsesApi: true`, invoke and stream, token usage, and a
 * parameter the server does not implement refused by name.
 */
import assert from "node:assert/strict";
import { ChatOpenAI } from "@langchain/openai";
import { API_KEY, MODEL_NAME, withGatewayProcess } from "./_process.ts";

Deno.test("LangChain ChatOpenAI: chat completions and useResponsesApi, invoke and stream, usage, typed error", async () => {
  await withGatewayProcess(async (g) => {
    const common = {
      model: MODEL_NAME,
      apiKey: API_KEY,
      configuration: { baseURL: `http://127.0.0.1:${g.port}/v1` },
      temperature: 0,
      maxTokens: 12,
      maxRetries: 0,
    };
    for (const useResponsesApi of [false, true]) {
      const llm = new ChatOpenAI({ ...common, useResponsesApi });
      const msg = await llm.invoke("Lily had a red ball.");
      const text = msg.text;
      assert.ok(text.length > 0, `useResponsesApi ${useResponsesApi}`);
      assert.equal(msg.usage_metadata?.output_tokens, 12);
      let streamed = "";
      for await (const chunk of await llm.stream("Lily had a red ball.")) streamed += chunk.text;
      assert.equal(streamed, text, `useResponsesApi ${useResponsesApi}: greedy, streamed = invoked`);
    }
    const penalised = new ChatOpenAI({ ...common, frequencyPenalty: 0.5 });
    await assert.rejects(
      () => penalised.invoke("Hi"),
      (e: unknown) => /frequency_penalty/.test(String((e as Error).message)),
    );
  });
});
