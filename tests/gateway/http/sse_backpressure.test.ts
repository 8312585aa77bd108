/**
 * A streaming completion whose client does not read is paused, like a Realtime response: while the
 * connection's send queue (c.env.bufferedAmount, from our server) holds more than --backpressure-bytes
 * the scheduler skips it, and it resumes where it stopped once the queue drains. The transport's state is
 * what the test sets (a loopback socket absorbs megabytes before its queue grows); engine, scheduler and
 * runner are the real ones.
 */
import assert from "node:assert/strict";
import { startGateway } from "../_gateway.ts";

Deno.test("sse: a stream is paused while its connection's send queue is over --backpressure-bytes", async () => {
  const g = await startGateway({ backpressureBytes: 1024 });
  try {
    const env = { bufferedAmount: 0 };
    const res = await g.gw.app.fetch(
      new Request("http://127.0.0.1/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          messages: [{ role: "user", content: "Once upon a time" }],
          stream: true,
          max_tokens: 200,
          temperature: 0,
        }),
      }),
      env,
    );
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const chunks = () => text.split("\n\n").filter((e) => e.startsWith("data: {")).length;
    while (chunks() < 5) text += (await reader.read()).value ?? "";
    env.bufferedAmount = 4096; // the client stopped reading
    const metrics = async () => await (await g.gw.app.fetch(new Request("http://127.0.0.1/metrics"))).text();
    const generated = async () =>
      Number(/^sinkstream:generation_tokens_total (\d+)$/m.exec(await metrics())![1]);
    await new Promise((r) => setTimeout(r, 100)); // a step in flight may still deliver
    const atPause = await generated();
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        text += value;
      }
    })();
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await generated(), atPause, "tokens went on while the connection was over the threshold");
    assert.ok(atPause < 200);
    assert.match(await metrics(), /^sinkstream:num_requests_waiting 1$/m);
    env.bufferedAmount = 0; // drained
    await reading;
    assert.match(text, /"finish_reason":"length"/);
    assert.ok(text.endsWith("data: [DONE]\n\n"));
  } finally {
    await g.close();
  }
});
