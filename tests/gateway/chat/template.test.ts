/**
 * Chat rendering: a model chat template (run by @huggingface/jinja) renders later turns as
 * the end of the previous answer + the new messages + the generation prompt; models without
 * a template use the documented plain fallback. The tokenizer here is a stub (characters as
 * ids) because stories260K has no chat template; only the text matters.
 */
import assert from "node:assert/strict";
import type { Tokenizer } from "../../../runtime/types.ts";
import { ChatRenderer } from "../../../gateway/chat/template.ts";
import { StopMatcher } from "../../../gateway/chat/stop.ts";

const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

function stubTokenizer(chatTemplate?: string): Tokenizer {
  return {
    vocabSize: 256,
    bosId: 1,
    eosId: 2,
    encode: (t: string) => Array.from(new TextEncoder().encode(t)),
    decode: (ids: ArrayLike<number>) => new TextDecoder().decode(Uint8Array.from(ids)),
    tokenBytes: (id: number) => Uint8Array.of(id),
    chatTemplate,
    specialTokens: { bos_token: "<s>", eos_token: "<|im_end|>" },
  };
}

Deno.test("chat template: first turn full, later turns only the new part", () => {
  const r = new ChatRenderer(stubTokenizer(CHATML));
  assert.ok(r.usesTemplate);
  const first = r.renderTurn(
    [{ role: "system", content: "Be kind." }, { role: "user", content: "Hi" }],
    true,
  );
  assert.equal(
    first,
    "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
  );
  const later = r.renderTurn([{ role: "user", content: "More" }], false);
  assert.equal(later, "<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n");
  // Concatenating turns (with the generated answer in between) equals rendering the whole chat.
  const whole = new ChatRenderer(stubTokenizer(CHATML)).renderTurn([
    { role: "system", content: "Be kind." },
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello!" },
    { role: "user", content: "More" },
  ], true);
  assert.equal(first + "Hello!" + later, whole);
});

Deno.test("chat template: plain fallback without a template; BOS on the first turn only", () => {
  const r = new ChatRenderer(stubTokenizer());
  assert.ok(!r.usesTemplate);
  assert.equal(r.renderTurn([{ role: "user", content: "Hi" }], true), "User: Hi\nAssistant:");
  assert.equal(r.renderTurn([{ role: "user", content: "Hi" }], false), "\nUser: Hi\nAssistant:");
  assert.equal(r.encodeTurn([{ role: "user", content: "A" }], true)[0], 1);
  assert.notEqual(r.encodeTurn([{ role: "user", content: "A" }], false)[0], 1);
});

Deno.test("chat template: contents are separate plain-text segments; trimmed where the template trims", () => {
  const r = new ChatRenderer(stubTokenizer(CHATML));
  assert.deepEqual(r.renderSegments([{ role: "user", content: " Hi <|im_end|> " }], true), [
    { text: "<|im_start|>user\n", special: true },
    { text: " Hi <|im_end|> ", special: false },
    { text: "<|im_end|>\n<|im_start|>assistant\n", special: true },
  ]);
  const trimming = CHATML.replace("{{ m.content }}", "{{ m.content | trim }}");
  assert.deepEqual(
    new ChatRenderer(stubTokenizer(trimming)).renderSegments([{ role: "user", content: "  Hi  " }], false),
    [
      { text: "<|im_end|>\n<|im_start|>user\n", special: true },
      { text: "Hi", special: false },
      { text: "<|im_end|>\n<|im_start|>assistant\n", special: true },
    ],
  );
  // A template that rewrites contents in a way we cannot follow: the plain format instead.
  const upper = new ChatRenderer(stubTokenizer(CHATML.replace("{{ m.content }}", "{{ m.content | upper }}")));
  assert.equal(upper.renderTurn([{ role: "user", content: "Hi" }], true), "User: Hi\nAssistant:");
});

Deno.test("stop strings: held back across deltas, cut at the first match", () => {
  const m = new StopMatcher(["END", "xyz"]);
  assert.equal(m.push("hello E"), "hello ");
  assert.equal(m.push("N"), "");
  assert.equal(m.push("D and more"), "");
  assert.ok(m.stopped);
  const n = new StopMatcher(["END"]);
  assert.equal(n.push("E"), "");
  assert.equal(n.push("x"), "Ex");
  assert.equal(n.push("EN"), "");
  assert.equal(n.flush(), "EN");
});
