/**
 * writeResponse over a real loopback TCP connection: HTTP response bytes go through the connection's
 * bounded SendQueue. A body that keeps coming (an SSE-like push stream) to a client that never reads is
 * cut once more than maxSendBufferBytes wait, and its stream is cancelled (what cancels a generation);
 * a complete body larger than the cap is still sent whole, with Content-Length.
 */
import assert from "node:assert/strict";
import { writeResponse } from "../../../gateway/server/response_writer.ts";
import { SendQueue } from "../../../gateway/server/send_queue.ts";

async function pair(): Promise<{ client: Deno.TcpConn; server: Deno.Conn; close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port });
  const server = await listener.accept();
  listener.close();
  return {
    client,
    server,
    close() {
      for (const c of [client, server]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

const target = (queue: SendQueue, maxSendBufferBytes: number) => ({
  queue,
  headOnly: false,
  http10: false,
  keepAlive: true,
  maxSendBufferBytes,
  signal: new AbortController().signal,
});

Deno.test("response writer: a push stream to a client that never reads is cut at the cap and cancelled", async () => {
  const { server, close } = await pair();
  const cap = 1 << 20;
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  let produced = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start(ctrl) {
      (async () => {
        while (!cancelled) {
          ctrl.enqueue(chunk);
          produced++;
          await new Promise((r) => setTimeout(r, 0));
        }
      })();
    },
    cancel() {
      cancelled = true;
    },
  });
  try {
    const queue = new SendQueue(server);
    const kept = await writeResponse(new Response(body), target(queue, cap));
    assert.equal(kept, false, "the connection is not kept");
    assert.ok(cancelled, "the body stream was cancelled");
    assert.ok(queue.bufferedAmount <= cap + chunk.length, `queued ${queue.bufferedAmount}`);
    // What was produced is what the kernel took plus the cap: nothing piles up unseen.
    console.log(`produced ${produced * 64} KiB before the cut (cap 1024 KiB)`);
    assert.ok(produced * chunk.length < 64 << 20, `produced ${produced} chunks`);
  } finally {
    close();
  }
});

Deno.test("response writer: a complete body larger than the cap is sent whole with Content-Length", async () => {
  const { client, server, close } = await pair();
  const size = 4 << 20;
  try {
    const queue = new SendQueue(server);
    const kept = await writeResponse(new Response(new Uint8Array(size).fill(0x62)), target(queue, 1 << 20));
    assert.equal(kept, true);
    const buf = new Uint8Array(256 * 1024);
    let text = "";
    let bodyBytes = -1;
    let total = 0;
    while (bodyBytes < size) {
      const n = await client.read(buf);
      assert.ok(n !== null, "connection closed early");
      if (bodyBytes < 0) {
        text += new TextDecoder().decode(buf.subarray(0, n));
        const end = text.indexOf("\r\n\r\n");
        if (end >= 0) {
          assert.match(text.slice(0, end), /\r\ncontent-length: 4194304(\r\n|$)/);
          total = new TextEncoder().encode(text.slice(0, end + 4)).length;
          bodyBytes = new TextEncoder().encode(text).length - total;
        }
      } else bodyBytes += n;
    }
    assert.equal(bodyBytes, size);
  } finally {
    close();
  }
});
