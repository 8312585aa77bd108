/**
 * ChatRenderer.encodeTurnAsync: large turns are encoded in a Worker (its own tokenizer, loaded from the
 * same files, and its own template) with exactly the ids of encodeTurn; the worker's queue is bounded;
 * the event loop stays responsive while a megabyte turn is encoded.
 */
import assert from "node:assert/strict";
import { HfTokenizer, Llama2cTokenizer, loadTokenizer } from "../../../runtime/tokenizer/mod.ts";
import type { Tokenizer } from "../../../runtime/types.ts";
import {
  type ChatMessage,
  ChatRenderer,
  EncoderBusyError,
  INLINE_TURN_CHARS,
} from "../../../gateway/chat/template.ts";
import { MAX_PENDING_CHARS, OffThreadEncoder } from "../../../gateway/chat/off_thread.ts";
import { shared } from "../../runtime/_shared.ts";
import { mixedTexts, proseWords } from "../../runtime/_texts.ts";
import { templatedModelDir } from "./_templated_model.ts";

const TOKENIZERS: Record<string, () => Promise<Tokenizer>> = {
  "llama2.c tok512.bin": () => loadTokenizer(shared("models/stories260K/stories260K.bin")),
  "HF stories260K-hf": () => loadTokenizer(shared("models/stories260K-hf")),
  "llama2.c Llama 2 tokenizer.bin": () => Llama2cTokenizer.load(shared("tokenizers/llama2/tokenizer.bin")),
};

function identity(t: Tokenizer) {
  return { vocabSize: t.vocabSize, bosId: t.bosId, eosId: t.eosId, chatTemplate: t.chatTemplate };
}

/** `n` characters of prose (the texts repeat, so later turns also exercise the memo). */
async function prose(n: number): Promise<string> {
  const words = (await proseWords()).join(" ");
  return words.repeat(Math.ceil(n / words.length)).slice(0, n);
}

async function checkSameIds(t: Tokenizer): Promise<void> {
  const r = new ChatRenderer(t);
  const off = new OffThreadEncoder(t.source!, identity(t));
  try {
    // Many texts through the worker directly (any size), then large turns through encodeTurnAsync.
    const texts = mixedTexts(await proseWords(), 120, 30, 9);
    for (let i = 0; i + 1 < texts.length; i += 2) {
      const turn: ChatMessage[] = [{ role: "system", content: texts[i] }, {
        role: "user",
        content: texts[i + 1],
      }];
      for (const first of [true, false]) {
        const chars = texts[i].length + texts[i + 1].length;
        assert.deepEqual(
          await off.encodeTurn(turn, first, chars),
          r.encodeTurn(turn, first),
          JSON.stringify(turn),
        );
      }
    }
    const big = texts.join(" ");
    assert.ok(big.length >= INLINE_TURN_CHARS);
    for (const first of [true, false]) {
      const turn: ChatMessage[] = [{ role: "user", content: big }, { role: "assistant", content: "Ok." }];
      assert.deepEqual(await r.encodeTurnAsync(turn, first), r.encodeTurn(turn, first));
    }
  } finally {
    off.close();
    r.close();
  }
}

for (const [name, load] of Object.entries(TOKENIZERS)) {
  Deno.test(`encodeTurnAsync = encodeTurn over many texts (${name})`, async () => {
    await checkSameIds(await load());
  });
}

Deno.test("encodeTurnAsync = encodeTurn with a chat template, special-token text in contents included", async () => {
  const dir = await templatedModelDir(undefined, false);
  try {
    const t = await HfTokenizer.load(dir);
    assert.ok(new ChatRenderer(t).usesTemplate);
    await checkSameIds(t);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodeTurnAsync: the worker's queue is bounded; past it EncoderBusyError, nothing lost", async () => {
  const t = await loadTokenizer(shared("models/stories260K/stories260K.bin"));
  const r = new ChatRenderer(t);
  try {
    const half = await prose(MAX_PENDING_CHARS / 2);
    const a = r.encodeTurnAsync([{ role: "user", content: half }], true);
    const b = r.encodeTurnAsync([{ role: "user", content: half }], false);
    const c = r.encodeTurnAsync([{ role: "user", content: await prose(INLINE_TURN_CHARS) }], false);
    await assert.rejects(c, (e) => e instanceof EncoderBusyError && e.code === "tokenizer_busy");
    // Small turns stay inline and are never refused.
    assert.ok((await r.encodeTurnAsync([{ role: "user", content: "Hi" }], true)).length > 0);
    const [ia, ib] = await Promise.all([a, b]);
    assert.ok(ia.length > MAX_PENDING_CHARS / 20 && ib.length > MAX_PENDING_CHARS / 20);
    // Drained: a big turn is taken again.
    const again = [{ role: "user" as const, content: await prose(INLINE_TURN_CHARS * 4) }];
    assert.deepEqual(await r.encodeTurnAsync(again, true), r.encodeTurn(again, true));
  } finally {
    r.close();
  }
});

Deno.test("encodeTurnAsync: the event loop stays responsive while the worker encodes a 4 MB turn", async () => {
  const t = await loadTokenizer(shared("models/stories260K-hf"));
  const r = new ChatRenderer(t);
  try {
    const turn: ChatMessage[] = [{ role: "user", content: await prose(4 << 20) }];
    await r.encodeTurnAsync([{ role: "user", content: await prose(INLINE_TURN_CHARS) }], true); // worker up
    const gaps: number[] = [];
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
    }, 10);
    const started = performance.now();
    const ids = await r.encodeTurnAsync(turn, true);
    const took = performance.now() - started;
    clearInterval(timer);
    assert.ok(ids.length > 1 << 20);
    // Liveness, not a benchmark: inline, this turn blocks the loop for its whole encode (no tick fires).
    const worst = Math.max(...gaps);
    assert.ok(gaps.length >= Math.min(5, took / 40), `${gaps.length} ticks in ${took.toFixed(0)} ms`);
    assert.ok(worst < 500, `the loop stalled ${worst.toFixed(0)} ms (encode took ${took.toFixed(0)} ms)`);
  } finally {
    r.close();
  }
});

Deno.test("encodeTurnAsync: a worker that cannot load the tokenizer fails the turn with a clear error", async () => {
  const t = await loadTokenizer(shared("models/stories260K/stories260K.bin"));
  const off = new OffThreadEncoder(
    { module: t.source!.module, args: { kind: "llama2c", path: "/nonexistent/tok.bin", options: {} } },
    identity(t),
  );
  try {
    await assert.rejects(
      off.encodeTurn([{ role: "user", content: "Hi" }], true, 2),
      /cannot start: .*nonexistent/,
    );
    assert.equal(off.pendingChars, 0);
  } finally {
    off.close();
  }
});

Deno.test("encodeTurnAsync: a tokenizer without a source is encoded inline", async () => {
  const t = await Llama2cTokenizer.load(shared("models/stories260K/tok512.bin"));
  t.source = undefined;
  const r = new ChatRenderer(t);
  const turn: ChatMessage[] = [{ role: "user", content: await prose(INLINE_TURN_CHARS * 2) }];
  assert.deepEqual(await r.encodeTurnAsync(turn, true), r.encodeTurn(turn, true));
  r.close();
});
