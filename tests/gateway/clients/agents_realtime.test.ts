/**
 * `@openai/agents-realtime` (pinned in deno.json) as a user's program calls it: a RealtimeAgent with
 * instructions, a RealtimeSession with the SDK's default configuration (audio output, audio formats, a
 * transcription model, semantic VAD turn detection, its default model name, tracing), connected with a
 * ws:// URL. The server answers each field it cannot honour with a non-fatal error naming it and applies
 * the rest: the instructions reach the model, two turns answer, the SDK's history has the four items.
 */
import assert from "node:assert/strict";
import { RealtimeAgent, RealtimeSession } from "@openai/agents-realtime";
import { API_KEY, turnTokens, withGatewayProcess } from "./_process.ts";

const INSTRUCTIONS = "You tell short stories about animals.";

// deno-lint-ignore no-explicit-any
type Ev = Record<string, any>;

Deno.test("agents-realtime: default config, instructions applied, two turns, history, unsupported fields named", async () => {
  await withGatewayProcess(async (g) => {
    const agent = new RealtimeAgent({ name: "Storyteller", instructions: INSTRUCTIONS });
    const session = new RealtimeSession(agent);
    const errors: Ev[] = [];
    session.on("error", (e) => errors.push((e as { error: Ev }).error));
    const events: Ev[] = [];
    const waiters: { type: string; resolve: (e: Ev) => void }[] = [];
    session.on("transport_event", (e) => {
      const ev = e as Ev;
      events.push(ev);
      const i = waiters.findIndex((w) => w.type === ev.type);
      if (i >= 0) waiters.splice(i, 1)[0].resolve(ev);
    });
    const next = (type: string) => new Promise<Ev>((resolve) => waiters.push({ type, resolve }));
    try {
      await session.connect({ apiKey: API_KEY, url: `ws://127.0.0.1:${g.port}/v1/realtime` });
      const done1 = next("response.done");
      session.sendMessage("Tell me about Lily.");
      const r1 = (await done1).response;
      assert.equal(r1.status, "incomplete", JSON.stringify(r1.status_details));
      assert.equal(r1.usage.output_tokens, 256);
      // The instructions are in the model's context: the first turn rendered the system message.
      const first = await turnTokens([
        { role: "system", content: INSTRUCTIONS },
        { role: "user", content: "Tell me about Lily." },
      ], true);
      assert.equal(r1.usage.input_tokens, first);
      // (The SDK sends its tracing update separately; the order of the two updates is its own.)
      const updated = events.filter((e) => e.type === "session.updated");
      assert.ok(updated.some((u) => u.session.instructions === INSTRUCTIONS), JSON.stringify(updated));

      const done2 = next("response.done");
      session.sendMessage("And what did Tom do?");
      const r2 = (await done2).response;
      assert.notEqual(r2.status, "failed");
      // Only the new turn was prefilled (and the last token of turn 1): the history stays in the cache.
      const second = await turnTokens([{ role: "user", content: "And what did Tom do?" }], false);
      assert.equal(r2.usage.input_tokens, second + 1);

      const history = session.history as Ev[];
      assert.deepEqual(history.map((h) => h.role), ["user", "assistant", "user", "assistant"]);
      assert.equal(history[0].content[0].text, "Tell me about Lily.");
      assert.equal(history[2].content[0].text, "And what did Tom do?");
      const text1 = events.find((e) => e.type === "response.output_text.done")!.text as string;
      assert.ok(text1.length > 0);
      assert.equal(history[1].content[0].text ?? history[1].content[0].transcript, text1);

      // Every field of the default config the server cannot honour was named, none fatal.
      const named = new Set(errors.map((e) => e.error?.param));
      for (
        const p of [
          "session.output_modalities",
          "session.audio.input.format",
          "session.audio.input.transcription",
          "session.audio.input.turn_detection",
          "session.audio.output.format",
          "session.model",
        ]
      ) assert.ok(named.has(p), `${p} in ${[...named].join(", ")}`);
      for (const e of errors) {
        assert.ok(["unsupported_parameter", "model_not_found"].includes(e.error?.code), JSON.stringify(e));
      }
    } finally {
      session.close();
    }
  });
});
