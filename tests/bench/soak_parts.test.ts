/** The soak's small deterministic pieces: the hostile clients' tally, the normal sessions' turns and pauses. */
import assert from "node:assert/strict";
import { describeCounts, Tally } from "../../bench/hostile/tally.ts";
import { mtBenchTurn, type Prompt } from "../../bench/lib.ts";
import { roundOk, thinkMs } from "../../bench/soak_normal.ts";

Deno.test("Tally: counts and maxima, sorted by name in JSON; describeCounts: most frequent first", () => {
  const t = new Tally();
  t.add("close 1008");
  t.add("cycles", 2);
  t.add("close 1008");
  t.add("close 1001");
  t.max("bytes", 10);
  t.max("bytes", 7);
  t.max("bytes", NaN);
  assert.deepEqual(t.toJSON(), {
    counts: { "close 1001": 1, "close 1008": 2, cycles: 2 },
    maxima: { bytes: 10 },
  });
  assert.equal(describeCounts(t.toJSON().counts), "close 1008 x 2, cycles x 2, close 1001");
  assert.equal(describeCounts({}), "nothing");
});

Deno.test("mtBenchTurn: each session starts at its own question and takes its turns in order", () => {
  const prompts: Prompt[] = [0, 1, 2].map((q) => ({
    question_id: q,
    category: "c",
    turns: [`q${q}a`, `q${q}b`],
  }));
  const walk = (session: number) => Array.from({ length: 5 }, (_, r) => mtBenchTurn(prompts, session, r));
  assert.deepEqual(walk(0), ["q0a", "q0b", "q1a", "q1b", "q2a"]);
  assert.deepEqual(walk(2), ["q2a", "q2b", "q0a", "q0b", "q1a"]);
});

Deno.test("thinkMs is the same for the same (session, round), within 100..499 ms; roundOk", () => {
  const all = Array.from({ length: 500 }, (_, i) => thinkMs(i % 37, i));
  assert.ok(all.every((ms) => ms >= 100 && ms < 500));
  assert.ok(new Set(all).size > 50, "the pauses vary");
  assert.equal(thinkMs(3, 4), thinkMs(3, 4));
  assert.ok(roundOk({ session: 0, round: 0, text: "", ttftMs: 1, status: "completed" }));
  assert.ok(!roundOk({ session: 0, round: 0, text: "", ttftMs: 1, status: "error server_busy" }));
});
