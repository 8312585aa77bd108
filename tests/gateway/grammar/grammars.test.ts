/**
 * gateway/grammar/ against xgrammar itself and our tokenizer: the WebAssembly module loads under Deno and
 * leaves no globals behind; the byte-level vocabulary gives every token its exact bytes; a matcher's masks
 * drive the real tokens of a JSON text to completion; compiled grammars are cached and the cache is bounded;
 * a schema xgrammar refuses is a GrammarError.
 */
import assert from "node:assert/strict";
import {
  byteLevelVocab,
  GRAMMAR_CACHE_ENTRIES,
  GrammarError,
  Grammars,
} from "../../../gateway/grammar/grammars.ts";
import { loadXgrammar } from "../../../gateway/grammar/xgrammar.ts";
import { sharedEngine } from "../_gateway.ts";

const allows = (mask: Uint32Array, id: number) => ((mask[id >> 5] >>> (id & 31)) & 1) === 1;

Deno.test("xgrammar loads under Deno and leaves no globals behind", async () => {
  const xg = await loadXgrammar();
  assert.equal(typeof xg.GrammarCompiler.createGrammarCompiler, "function");
  const g = globalThis as Record<string, unknown>;
  assert.equal(g.xgrammar, undefined);
  assert.equal(g.location, undefined);
  assert.equal(await loadXgrammar(), xg, "loaded once");
});

Deno.test("byte-level vocabulary: each token's bytes, decodable back; control tokens empty", async () => {
  const { tokenizer } = await sharedEngine();
  const vocab = byteLevelVocab(tokenizer);
  assert.equal(vocab.length, tokenizer.vocabSize);
  // GPT-2's alphabet, inverted independently: printable bytes are themselves, the rest 256 + rank.
  const back = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    back.set(String.fromCodePoint(keep ? b : next++), b);
  }
  let controls = 0;
  for (let id = 0; id < vocab.length; id++) {
    const bytes = Array.from(vocab[id], (ch) => back.get(ch)!);
    assert.deepEqual(bytes, Array.from(tokenizer.tokenBytes(id)), `token ${id}`);
    if (vocab[id] === "") controls++;
  }
  assert.ok(controls >= 2 && vocab[tokenizer.eosId] === "", "BOS / EOS have no bytes");
});

Deno.test("a matcher's masks lead a JSON text through real tokens to completion", async () => {
  const { engine, tokenizer } = await sharedEngine();
  const grammars = await Grammars.create(tokenizer, engine.info.vocabSize);
  const schema = {
    type: "object",
    properties: { n: { type: "integer" }, s: { enum: ["a", "b"] } },
    required: ["n", "s"],
  };
  const c = await grammars.constraint({ type: "json_schema", name: "t", schema, strict: true });
  try {
    // Feed the text one single-byte token at a time, checking each is allowed first.
    const byteId = new Map<number, number>();
    for (let id = tokenizer.vocabSize - 1; id >= 0; id--) {
      const b = tokenizer.tokenBytes(id);
      if (b.length === 1) byteId.set(b[0], id);
    }
    const text = '{"n": 12, "s": "b"}';
    let fed = "";
    let complete = false;
    for (const byte of new TextEncoder().encode(text)) {
      const id = byteId.get(byte)!;
      const mask = await c.nextMask(Infinity);
      assert.equal(mask.length, Math.ceil(engine.info.vocabSize / 32));
      assert.ok(allows(mask, id), `byte ${String.fromCharCode(byte)} after ${JSON.stringify(fed)}`);
      assert.ok(!allows(mask, tokenizer.eosId), "EOS is not allowed before the object is complete");
      assert.equal(complete, false, `complete already after ${JSON.stringify(fed)}`);
      complete = c.accept(id);
      fed += String.fromCharCode(byte);
    }
    assert.equal(complete, true, "complete after the closing brace");
    // At the start only '{'-led tokens are allowed.
    const fresh = await grammars.constraint({ type: "json_object" });
    const first = await fresh.nextMask(Infinity);
    let n = 0;
    for (let id = 0; id < tokenizer.vocabSize; id++) {
      if (!allows(first, id)) continue;
      n++;
      assert.equal(new TextDecoder().decode(tokenizer.tokenBytes(id))[0], "{", `token ${id}`);
    }
    assert.ok(n >= 1);
    fresh.dispose();
  } finally {
    c.dispose();
    grammars.close();
  }
});

Deno.test("compiled grammars: cached by schema, at most GRAMMAR_CACHE_ENTRIES; a refused schema is a GrammarError", async () => {
  const { engine, tokenizer } = await sharedEngine();
  const grammars = await Grammars.create(tokenizer, engine.info.vocabSize);
  const schema = (i: number) => ({ type: "object", properties: { [`k${i}`]: { type: "integer" } } });
  const f = (i: number) => ({ type: "json_schema" as const, name: "c", schema: schema(i), strict: true });
  const a = await grammars.compile(f(0));
  assert.equal(await grammars.compile(f(0)), a, "the same schema compiles once");
  for (let i = 1; i < GRAMMAR_CACHE_ENTRIES + 5; i++) await grammars.compile(f(i));
  assert.equal(grammars.cached, GRAMMAR_CACHE_ENTRIES);
  assert.notEqual(await grammars.compile(f(0)), a, "the oldest entry was dropped");
  await assert.rejects(
    grammars.constraint({
      type: "json_schema",
      name: "bad",
      schema: { type: "object", required: 5 },
      strict: true,
    }),
    GrammarError,
  );
});
