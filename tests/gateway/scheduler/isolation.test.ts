/**
 * One session's engine error never fails another's (issue #12, failure 1). A Realtime session set to
 * `policy: "dense", window: 16` sends a prompt that overflows its cache while two greedy sessions — one
 * over the socket, one over HTTP chat completions (SSE) — are decoding, so its prefill item runs in the
 * same engine steps as their decode items. The faulty session gets a failed response with its own
 * message (its dense cache of 16, one sequence named); the greedy sessions' outputs are identical to a
 * run without the faulty neighbour. Real engine, real gateway on a loopback port.
 */
import assert from "node:assert/strict";
import { type Ev, startGateway, type TestGateway, WsClient } from "../_gateway.ts";

const MAX_TOKENS = 120;
const GREEDY_PROMPT = "Tell me a story about a little dog.";
const LONG_PROMPT =
  "Once upon a time there was a girl named Lily who loved to play in the park with her friends " +
  "every day after school, and one day she found a big red ball under a tree.";

function userItem(text: string): Ev {
  return {
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  };
}

/** An SSE chat completion: resolves `firstDelta` at its first content token, `text` with all of them. */
function sseCompletion(g: TestGateway): { firstDelta: Promise<void>; text: Promise<string> } {
  let first!: () => void;
  const firstDelta = new Promise<void>((r) => (first = r));
  const text = (async () => {
    const res = await fetch(`${g.http}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages: [{ role: "user", content: GREEDY_PROMPT }],
        max_tokens: MAX_TOKENS,
        temperature: 0,
        stream: true,
      }),
    });
    assert.equal(res.status, 200);
    let out = "", buf = "";
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/^data: /, "");
        buf = buf.slice(nl + 2);
        if (line === "[DONE]") continue;
        const chunk = JSON.parse(line);
        assert.equal(chunk.error, undefined, `the HTTP stream failed: ${line}`);
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          out += delta;
          first();
        }
      }
    }
    return out;
  })();
  return { firstDelta, text };
}

interface RunResult {
  socketText: string;
  socketStatus: string;
  httpText: string;
  faulty?: Ev;
}

async function run(withFaultyNeighbour: boolean): Promise<RunResult> {
  const g = await startGateway();
  const clients: WsClient[] = [];
  try {
    let faulty: WsClient | null = null;
    if (withFaultyNeighbour) {
      faulty = await WsClient.open(g.ws);
      clients.push(faulty);
      await faulty.next("session.created");
      faulty.send({ type: "session.update", session: { sinkstream: { policy: "dense", window: 16 } } });
      await faulty.next("session.updated");
    }
    const greedy = await WsClient.open(g.ws);
    clients.push(greedy);
    await greedy.next("session.created");
    greedy.send(userItem(GREEDY_PROMPT));
    greedy.send({ type: "response.create", response: { max_output_tokens: MAX_TOKENS } });
    const http = sseCompletion(g);
    // both greedy sessions are decoding: the faulty prefill joins their steps
    await greedy.next("response.output_text.delta");
    await http.firstDelta;
    let faultyDone: Ev | undefined;
    if (faulty) {
      faulty.send(userItem(LONG_PROMPT));
      faulty.send({ type: "response.create" });
      faultyDone = await faulty.next("response.done", 20_000);
    }
    const done = await greedy.next("response.done", 20_000);
    const textDone = greedy.events.find((e) => e.type === "response.output_text.done");
    if (faultyDone) {
      // the greedy response was still running when the faulty one failed
      assert.ok(greedy.events.indexOf(done) > 0);
      assert.ok(
        greedy.events.filter((e) => e.type === "response.output_text.delta").length > 1,
        "the greedy session was decoding",
      );
    }
    return {
      socketText: textDone?.text,
      socketStatus: done.response.status,
      httpText: await http.text,
      faulty: faultyDone,
    };
  } finally {
    for (const c of clients) await c.close();
    await g.close();
  }
}

Deno.test("isolation: a dense session that overflows fails alone; its neighbours' greedy output is unchanged", async () => {
  const alone = await run(false);
  const next = await run(true);
  assert.ok(alone.socketText.length > 20 && alone.httpText.length > 20, JSON.stringify(alone));
  assert.notEqual(alone.socketStatus, "failed");

  const f = next.faulty!;
  assert.equal(f.response.status, "failed", JSON.stringify(f.response));
  const err = f.response.status_details.error;
  assert.equal(err.code, "engine_error");
  // its own message: its dense cache of 16 tokens, one sequence named (no neighbour's)
  assert.match(err.message, /dense sequence \d+ is full: \d+ cached \+ \d+ new tokens exceed capacity 16/);
  assert.equal(err.message.match(/sequence \d+/g)?.length, 1, err.message);

  assert.notEqual(next.socketStatus, "failed");
  assert.equal(next.socketStatus, alone.socketStatus);
  assert.equal(next.socketText, alone.socketText);
  assert.equal(next.httpText, alone.httpText);
});
