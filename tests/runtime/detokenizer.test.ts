/**
 * The Detokenizer (per-token text cache + held-back partial UTF-8) produces exactly what a
 * streaming TextDecoder fed token by token produces, for valid and broken UTF-8 split anywhere.
 */
import assert from "node:assert/strict";
import { Detokenizer } from "../../runtime/detokenizer.ts";
import type { Tokenizer } from "../../runtime/types.ts";

function byteTokenizer(pieces: Uint8Array[]): Tokenizer {
  return {
    vocabSize: pieces.length,
    bosId: -1,
    eosId: -2,
    specialTokens: {},
    encode: () => [],
    decode: () => "",
    tokenBytes: (id: number) => pieces[id],
  };
}

Deno.test("detokenizer: same text as a streaming TextDecoder fed token by token", () => {
  const enc = new TextEncoder();
  // Pieces: whole words, multi-byte characters split at every byte, stray continuation bytes, etc.
  const words = ["Once", " upon", " a time", " é", " 😀", "日本", "\n", ""].map((w) => enc.encode(w));
  const split = [..."é😀日€"].flatMap((ch) => [...enc.encode(ch)].map((b) => Uint8Array.of(b)));
  const odd = [
    Uint8Array.of(0x80),
    Uint8Array.of(0xff),
    Uint8Array.of(0xe2, 0x82),
    Uint8Array.of(0xf0, 0x41),
    Uint8Array.of(0xe0), // E0 80 / ED A0: invalid second bytes, found one byte later by a streaming decoder
    Uint8Array.of(0xed),
    Uint8Array.of(0xa0),
  ];
  const pieces = [...words, ...split, ...odd];
  const tok = byteTokenizer(pieces);
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let trial = 0; trial < 300; trial++) {
    const ids = Array.from({ length: 1 + rand(40) }, () => rand(pieces.length));
    const ref = new TextDecoder("utf-8", { fatal: false });
    const d = new Detokenizer(tok);
    let want = "";
    const partial: string[] = [];
    let got = "";
    for (const id of ids) {
      want += ref.decode(pieces[id], { stream: true });
      got += d.push(id);
      partial.push(got);
    }
    want += ref.decode();
    got += d.flush();
    assert.equal(got, want, `ids ${ids}`);
    assert.equal(d.text, want);
    // Text is only ever appended: nothing emitted early has to be taken back.
    for (const p of partial) assert.ok(want.startsWith(p), `ids ${ids}`);
  }
});

Deno.test("detokenizer: stripLeadingSpace drops the first piece's leading space only", () => {
  const enc = new TextEncoder();
  const tok = byteTokenizer([" Hello", " world"].map((w) => enc.encode(w)));
  const d = new Detokenizer(tok, { stripLeadingSpace: true });
  assert.equal(d.push(0) + d.push(1) + d.push(0), "Hello world Hello");
});
