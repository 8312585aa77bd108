/** Server frames as bytes: text frames are exactly their size for any text, headers for every length form. */
import assert from "node:assert/strict";
import { closePayload, OP_TEXT, parseFrameHeader, textFrame } from "../../../gateway/server/ws_frame.ts";

Deno.test("ws frame: text frames hold exactly the UTF-8 of any text, with the right length form", () => {
  const texts = ["", "a", "héllo", "€uro", "🙂 emoji", "lone \ud800 high", "lone \udc00 low", "end \ud83d"];
  for (const n of [125, 126, 65535, 65536, 100_000]) texts.push("z".repeat(n - 2) + "é");
  for (const text of texts) {
    const f = textFrame(text);
    const h = parseFrameHeader(f)!;
    const want = new TextEncoder().encode(text);
    assert.equal(h.opcode, OP_TEXT);
    assert.ok(h.fin && !h.masked && h.rsv === 0);
    assert.equal(h.length, want.length, JSON.stringify(text.slice(0, 20)));
    assert.equal(f.length, h.size + want.length, "no spare bytes");
    assert.deepEqual(f.subarray(h.size), want);
  }
});

Deno.test("ws frame: a close reason is cut to 123 bytes without splitting a UTF-8 sequence", () => {
  const p = closePayload(1008, "é".repeat(100));
  assert.equal((p[0] << 8) | p[1], 1008);
  assert.equal(p.length, 2 + 122);
  assert.equal(new TextDecoder("utf-8", { fatal: true }).decode(p.subarray(2)), "é".repeat(61));
});
