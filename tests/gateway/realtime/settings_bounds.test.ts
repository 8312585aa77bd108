/**
 * Session and request settings are checked against the engine's own rules (Engine.limits in the
 * schemas, Engine.checkSequenceOptions for the rules between settings), when they are sent: a setting
 * the engine would refuse never reaches a response (#12 failure 6: top_k >= 2^31 used to be accepted,
 * then every response of the session failed).
 */
import assert from "node:assert/strict";
import { startGateway, WsClient } from "../_gateway.ts";

Deno.test("settings: session.update values the engine refuses are invalid_value at once; the session works on", async () => {
  const g = await startGateway();
  try {
    const { limits } = g.gw.scheduler.engine;
    const c = await WsClient.open(g.ws);
    await c.next("session.created");
    const cases: [Record<string, unknown>, string][] = [
      [{ top_k: 2 ** 31 }, "session.sinkstream.top_k"],
      [{ top_k: limits.maxTopK + 1 }, "session.sinkstream.top_k"],
      [{ window: limits.maxCapacity + 1 }, "session.sinkstream.window"],
      [{ window: limits.minCapacity - 1 }, "session.sinkstream.window"],
      [{ window: 8, sinks: 8 }, "session.sinkstream.sinks"],
      [{ top_p: 0 }, "session.sinkstream.top_p"],
      [{ top_p: 1.5 }, "session.sinkstream.top_p"],
    ];
    for (const [sinkstream, param] of cases) {
      c.send({ type: "session.update", event_id: "ev_bad", session: { sinkstream } });
      const e = await c.next((x) => x.type === "error" || x.type === "session.updated");
      assert.equal(e.type, "error", `${JSON.stringify(sinkstream)} was accepted`);
      assert.equal(e.error.code, "invalid_value");
      assert.equal(e.error.param, param, JSON.stringify(e.error));
      assert.equal(e.error.event_id, "ev_bad");
    }
    // Nothing of the refused updates stuck: the largest legal top_k and a response work.
    c.send({
      type: "session.update",
      session: { sinkstream: { top_k: limits.maxTopK, window: 8, sinks: 7 } },
    });
    const ok = await c.next((x) => x.type === "error" || x.type === "session.updated");
    assert.equal(ok.type, "session.updated", JSON.stringify(ok.error));
    assert.equal(ok.session.sinkstream.top_k, limits.maxTopK);
    const done = await c.turn("Lily saw a cat.", { max_output_tokens: 4 });
    assert.equal(done.response.status, "incomplete", JSON.stringify(done.response.status_details));
    await c.close();
  } finally {
    await g.close();
  }
});

Deno.test("settings: an HTTP top_p the engine refuses is a 400 naming top_p", async () => {
  const g = await startGateway();
  try {
    for (const top_p of [0, 1.5]) {
      const res = await fetch(`${g.http}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], top_p, max_tokens: 2 }),
      });
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.equal(body.error.code, "invalid_value");
      assert.equal(body.error.param, "top_p");
    }
  } finally {
    await g.close();
  }
});
