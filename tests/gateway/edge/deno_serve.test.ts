/**
 * The edge as Deno Deploy runs it: served by Deno.serve (DENO_DEPLOYMENT_ID set, gateway/edge/serve_deploy.ts)
 * instead of our own server, in front of a real backend gateway process (issue #8). The relay, the HTTP
 * forward and a reconnect with the resume token behave as under our server: a greedy 2-round conversation
 * gives the backend's own text and usage, a chat completion through the edge equals one straight against
 * the backend, a client that reconnects gets the same backend session back without re-prefill.
 */
import assert from "node:assert/strict";
import { type Ev, WsClient } from "../_gateway.ts";
import { startBackend, startEdge } from "./_cluster.ts";

const text = (done: Ev) => done.response.output[0]?.content?.[0]?.text ?? "";
const usage = (done: Ev) => done.response.usage;

async function completion(base: string, content: string): Promise<Ev> {
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens: 12, temperature: 0 }),
  });
  assert.equal(r.status, 200);
  return await r.json();
}

Deno.test("edge under Deno.serve (as on Deno Deploy): relay, HTTP forward and resume", async () => {
  const backend = await startBackend();
  const edge = await startEdge([backend.http], ":memory:", [], { DENO_DEPLOYMENT_ID: "test" });
  try {
    const via = await WsClient.open(edge.ws);
    const created = await via.next("session.created");
    const { session_id: id, resume_token: token } = created.session.sinkstream;
    const direct = await WsClient.open(backend.ws);
    await direct.next("session.created");
    for (const turn of ["Tell me about Lily.", "What did she find?"]) {
      const [a, b] = [
        await via.turn(turn, { max_output_tokens: 12 }),
        await direct.turn(turn, { max_output_tokens: 12 }),
      ];
      assert.ok(text(b).length > 0);
      assert.equal(text(a), text(b));
      assert.equal(usage(a).input_tokens, usage(b).input_tokens);
    }
    await via.close();

    // Reconnect to the same edge with the resume token: the same backend session, its cache intact.
    const again = await WsClient.open(`${edge.ws}?session_id=${id}&resume_token=${token}`);
    assert.equal((await again.next("session.created")).session.id, id);
    const [next, ref] = [await again.turn("And then?"), await direct.turn("And then?")];
    assert.equal(usage(next).input_tokens, usage(ref).input_tokens, "no re-prefill after the reconnect");
    assert.equal(text(next), text(ref));
    await again.close();
    await direct.close();

    const [a, b] = [
      await completion(edge.http, "Once upon a time"),
      await completion(backend.http, "Once upon a time"),
    ];
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    assert.ok(String(b.choices[0].message.content).length > 0);
  } finally {
    await edge.kill("SIGTERM");
    await backend.kill("SIGTERM");
  }
});
