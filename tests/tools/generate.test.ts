import assert from "node:assert/strict";
import { generate } from "../../tools/lib/generate.ts";
import { repo, shared, STORY_PREFIX } from "../runtime/_shared.ts";

const BIN = shared("models/stories260K/stories260K.bin");
const HF = shared("models/stories260K-hf");

async function runTask(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--config", repo("deno.json"), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("deno task generate: greedy from an empty prompt prints the story (both formats)", async () => {
  for (const model of [BIN, HF]) {
    const r = await runTask([
      "generate",
      "--model",
      model,
      "--prompt",
      "",
      "--max-tokens",
      "40",
      "--threads",
      "1",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith(STORY_PREFIX), JSON.stringify(r.stdout));
    assert.match(r.stderr, /40 generated/);
  }
});

Deno.test("deno task generate: bad flags give clear errors", async () => {
  let r = await runTask(["generate", "--model", BIN, "--prompt", "x", "--temperature", "hot"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--temperature: "hot" is not a number/);
  r = await runTask(["generate", "--model", BIN, "--prompt", "x", "--policy", "lru"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--policy must be one of streaming, window, dense/);
  r = await runTask(["generate", "--model", BIN, "--prompt", "x", "--frobnicate"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /frobnicate/);
  r = await runTask(["generate", "--prompt", "x"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--model is required/);
  r = await runTask(["generate", "--model", "/nonexistent/model.bin", "--prompt", "x"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /nonexistent/);
});

Deno.test("generate(): prompt continuation streams text; streaming window evicts", async () => {
  const pieces: string[] = [];
  const r = await generate({
    model: HF,
    prompt: "Once upon a time, there was a little girl named Lily.",
    maxTokens: 120,
    capacity: 32,
    sinks: 4,
    threads: 1,
    onText: (s) => {
      pieces.push(s);
    },
  });
  assert.equal(pieces.join(""), r.text);
  assert.ok(r.text.startsWith(" She loved to play outside in the park."), JSON.stringify(r.text));
  assert.equal(r.stats.capacity, 32);
  assert.equal(r.stats.cached, 32);
  assert.ok(r.stats.evicted > 0);
  // Seeded sampling is reproducible.
  const a = await generate({
    model: BIN,
    prompt: "Lily",
    maxTokens: 20,
    temperature: 1,
    seed: 5,
    threads: 1,
  });
  const b = await generate({
    model: BIN,
    prompt: "Lily",
    maxTokens: 20,
    temperature: 1,
    seed: 5,
    threads: 1,
  });
  assert.deepEqual(a.tokens, b.tokens);
});
