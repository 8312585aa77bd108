/**
 * A model WITH a chat template, end to end on the real engine: the stories260K HF folder copied to a
 * temp dir with a Llama-2-style `chat_template` added to tokenizer_config.json. Each turn is rendered
 * by @huggingface/jinja, special tokens in the rendered text become their ids (EOS closing the
 * previous answer, BOS opening the next [INST]), and only the new turn is prefilled.
 */
import assert from "node:assert/strict";
import { createEngine, ensureNativeLibrary, loadModel, loadTokenizer } from "../../../mod.ts";
import { createApp } from "../../../gateway/app.ts";
import { ChatRenderer } from "../../../gateway/chat/template.ts";
import { ConfigSchema } from "../../../gateway/config/config.ts";
import { WsClient } from "../_gateway.ts";
import { templatedModelDir } from "./_templated_model.ts";

Deno.test("chat template on the real engine: special tokens become ids, only the new turn is prefilled", async () => {
  await ensureNativeLibrary();
  const dir = await templatedModelDir();
  const model = await loadModel(dir);
  const engine = await createEngine(model, { threads: 1 });
  const tokenizer = await loadTokenizer(dir);
  const gw = createApp({ engine, tokenizer, config: ConfigSchema.parse({ port: 0 }), web: false });
  const server = gw.serve({ hostname: "127.0.0.1", port: 0 });
  const renderer = new ChatRenderer(tokenizer);
  try {
    assert.ok(renderer.usesTemplate, "the template was picked up from tokenizer_config.json");
    const first = renderer.encodeTurn([{ role: "system", content: "Be brief." }, {
      role: "user",
      content: "Hi",
    }], true);
    const later = renderer.encodeTurn([{ role: "user", content: "More" }], false);
    assert.equal(first[0], tokenizer.bosId);
    assert.equal(first.filter((t) => t === tokenizer.bosId).length, 1, "one BOS on the first turn");
    // The later turn closes the previous answer with EOS, then opens [INST] with BOS.
    const eosAt = later.indexOf(tokenizer.eosId);
    assert.ok(eosAt >= 0 && later[eosAt + 1] === tokenizer.bosId, `EOS then BOS in ${later}`);

    const c = await WsClient.open(`ws://127.0.0.1:${server.addr.port}/v1/realtime`);
    await c.next("session.created");
    c.send({ type: "session.update", session: { instructions: "Be brief.", max_output_tokens: 8 } });
    await c.next("session.updated");
    const d1 = await c.turn("Hi");
    const d2 = await c.turn("More");
    const u1 = d1.response.usage, u2 = d2.response.usage;
    assert.equal(u1.input_tokens, first.length);
    // A response cut by max_output_tokens leaves its last token to be fed first in the next turn.
    const pending1 = d1.response.status === "incomplete" ? 1 : 0;
    assert.equal(u2.input_tokens, later.length + pending1);
    const pending2 = d2.response.status === "incomplete" ? 1 : 0;
    assert.equal(
      u2.sinkstream.seen_tokens,
      u1.input_tokens + u1.output_tokens + u2.input_tokens + u2.output_tokens - pending1 - pending2,
      "the cache saw each turn once: the history was never re-read",
    );
    await c.close();
  } finally {
    await gw.shutdown();
    engine.close();
    model.close();
    await Deno.remove(dir, { recursive: true });
  }
});
