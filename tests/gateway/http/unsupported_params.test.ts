/**
 * Chat completion parameters this server does not implement are refused with 400 `unsupported_parameter`
 * (OpenAI's error shape, `param` naming the parameter), parameters OpenAI does not have with
 * `unknown_parameter`; values that ask for nothing pass, and nothing is generated for a refused request.
 */
import assert from "node:assert/strict";
import { startGateway } from "../_gateway.ts";

const messages = [{ role: "user", content: "Hi" }];

Deno.test("chat completions: unsupported and unknown parameters get a 400 naming them", async () => {
  const g = await startGateway();
  try {
    const post = (extra: Record<string, unknown>) =>
      fetch(`${g.http}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages, max_tokens: 2, ...extra }),
      });
    const tool = { type: "function", function: { name: "f", parameters: { type: "object" } } };
    const refused: [Record<string, unknown>, string, string][] = [
      [{ tools: [tool] }, "unsupported_parameter", "tools"],
      [{ tool_choice: "required" }, "unsupported_parameter", "tool_choice"],
      [{ functions: [{ name: "f" }] }, "unsupported_parameter", "functions"],
      [{ response_format: { type: "json_object", schema: {} } }, "invalid_value", "response_format"],
      [{ n: 2 }, "unsupported_parameter", "n"],
      [{ frequency_penalty: 0.5 }, "unsupported_parameter", "frequency_penalty"],
      [{ logit_bias: { "5": 10 } }, "unsupported_parameter", "logit_bias"],
      [{ modalities: ["text", "audio"] }, "unsupported_parameter", "modalities"],
      [{ store: true }, "unsupported_parameter", "store"],
      [{ reasoning_effort: "high" }, "unsupported_parameter", "reasoning_effort"],
      [{ service_tier: "priority" }, "unsupported_parameter", "service_tier"],
      [
        {
          messages: [...messages, { role: "assistant", content: null, tool_calls: [{ id: "c" }] }],
        },
        "unsupported_parameter",
        "messages.1.tool_calls",
      ],
      [
        {
          messages: [...messages, { role: "tool", content: "1", tool_call_id: "c" }],
        },
        "unsupported_parameter",
        "messages.1.role",
      ],
      [{ sparkle: true }, "unknown_parameter", "sparkle"],
    ];
    for (const [extra, code, param] of refused) {
      const r = await post(extra);
      assert.equal(r.status, 400, JSON.stringify(extra));
      const { error } = await r.json();
      assert.equal(error.code, code, JSON.stringify(extra));
      assert.equal(error.param, param);
      assert.equal(error.type, "invalid_request_error");
      assert.match(error.message, new RegExp(param.replace(/\./g, "\\.")));
    }
    assert.equal(g.gw.metrics.generationTokens.value, 0, "nothing generated for refused requests");
    // Values that ask for nothing pass.
    const ok = await post({
      tools: [],
      tool_choice: "none",
      response_format: { type: "text" },
      n: 1,
      frequency_penalty: 0,
      presence_penalty: 0,
      logit_bias: {},
      store: false,
      service_tier: "auto",
      parallel_tool_calls: true,
      user: "u1",
      prompt_cache_key: "k",
      stream_options: null,
    });
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal((await ok.json()).usage.completion_tokens, 2);
  } finally {
    await g.close();
  }
});
