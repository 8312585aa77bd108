/**
 * Chat completion logprobs against the engine itself: each returned entry's logprob and its top
 * alternatives equal log-softmax of the raw logits the engine gives for the same conversation at that
 * position (replayed on a fresh sequence of the same engine), at temperature 0 and when sampling at 1.5: the
 * values are the model's distribution, not the sampling one. Streaming gives the same entries.
 */
import assert from "node:assert/strict";
import { startGateway, type TestGateway } from "../_gateway.ts";
import { sequenceOptions } from "../../../gateway/response/options.ts";

const messages = [{ role: "user" as const, content: "Once upon a time" }];
const TOL = 1e-4;

interface Entry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

function logSoftmax(l: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of l) max = Math.max(max, v);
  let sum = 0;
  for (const v of l) sum += Math.exp(v - max);
  const z = max + Math.log(sum);
  return Float64Array.from(l, (v) => v - z);
}

/** Replays prompt + the entries' tokens on a new sequence and checks every entry against log-softmax. */
async function checkAgainstEngine(g: TestGateway, entries: Entry[], top: number): Promise<void> {
  const { engine } = g.gw.scheduler;
  const tokenizer = g.gw.ctx.tokenizer;
  // Ids by bytes (a byte-fallback token and a piece may share bytes: the one with the entry's value is it).
  const byBytes = new Map<string, number[]>();
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const key = Array.from(tokenizer.tokenBytes(id)).join(",");
    byBytes.set(key, [...(byBytes.get(key) ?? []), id]);
  }
  const prompt = g.gw.ctx.renderer.encodeTurn(messages, true);
  const seq = engine.createSequence(sequenceOptions(g.gw.ctx.config));
  try {
    let feed = prompt;
    for (const e of entries) {
      const [r] = await engine.step([{ seq, tokens: feed, sample: false, logits: true }]);
      const lsm = logSoftmax(r.logits!);
      const ids = byBytes.get(e.bytes.join(",")) ?? [];
      const id = ids.find((i) => Math.abs(e.logprob - lsm[i]) < TOL);
      assert.ok(id !== undefined, `${JSON.stringify(e.token)}: ${e.logprob} vs ${ids.map((i) => lsm[i])}`);
      const order = Array.from(lsm.keys()).sort((a, b) => lsm[b] - lsm[a] || a - b).slice(0, top);
      assert.equal(e.top_logprobs.length, top);
      for (let k = 0; k < top; k++) {
        assert.ok(Math.abs(e.top_logprobs[k].logprob - lsm[order[k]]) < TOL, `top ${k} of ${e.token}`);
        assert.deepEqual(e.top_logprobs[k].bytes, Array.from(tokenizer.tokenBytes(order[k])));
      }
      feed = [id];
    }
  } finally {
    engine.freeSequence(seq);
  }
}

async function complete(g: TestGateway, body: Record<string, unknown>) {
  const r = await fetch(`${g.http}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: 12, ...body }),
  });
  return { status: r.status, json: await r.json() };
}

Deno.test("logprobs: entries equal log-softmax of the engine's logits, greedy and sampled; streaming agrees", async () => {
  const g = await startGateway();
  try {
    const greedy = await complete(g, { temperature: 0, logprobs: true, top_logprobs: 5 });
    assert.equal(greedy.status, 200, JSON.stringify(greedy.json));
    const choice = greedy.json.choices[0];
    const entries: Entry[] = choice.logprobs.content;
    assert.equal(entries.length, 12);
    assert.equal(choice.logprobs.refusal, null);
    // Greedy: every token is its position's most likely one.
    for (const e of entries) assert.equal(e.top_logprobs[0].token, e.token);
    await checkAgainstEngine(g, entries, 5);

    const sampled = await complete(g, { temperature: 1.5, seed: 7, logprobs: true, top_logprobs: 3 });
    const sEntries: Entry[] = sampled.json.choices[0].logprobs.content;
    assert.ok(
      sEntries.some((e) => e.top_logprobs[0].token !== e.token),
      "sampling picked a less likely token",
    );
    await checkAgainstEngine(g, sEntries, 3);

    // logprobs without top_logprobs: entries with no alternatives; without logprobs: null.
    const bare = await complete(g, { logprobs: true });
    assert.deepEqual(
      bare.json.choices[0].logprobs.content.map((e: Entry) => e.top_logprobs.length),
      Array(12).fill(0),
    );
    assert.equal((await complete(g, {})).json.choices[0].logprobs, null);

    const r = await fetch(`${g.http}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages,
        max_tokens: 12,
        temperature: 0,
        logprobs: true,
        top_logprobs: 5,
        stream: true,
      }),
    });
    const streamed: Entry[] = [];
    let text = "";
    for (const line of (await r.text()).split("\n")) {
      if (!line.startsWith("data: {")) continue;
      const c = JSON.parse(line.slice(6));
      text += c.choices[0]?.delta?.content ?? "";
      streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
    }
    assert.deepEqual(streamed, entries);
    assert.equal(text, choice.message.content);
  } finally {
    await g.close();
  }
});

Deno.test("logprobs: bad values get 400 invalid_value naming top_logprobs", async () => {
  const g = await startGateway();
  try {
    for (
      const body of [{ logprobs: true, top_logprobs: 21 }, { top_logprobs: 2 }, {
        logprobs: false,
        top_logprobs: 1,
      }]
    ) {
      const r = await complete(g, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.error.code, "invalid_value");
      assert.equal(r.json.error.param, "top_logprobs");
    }
  } finally {
    await g.close();
  }
});
