/**
 * HTTP/1.1 at the byte level against a real gateway on loopback: malformed heads get a typed 4xx / 505
 * (never a 500) and the connection closes; chunked bodies, Expect: 100-continue, pipelining, HEAD and
 * HTTP/1.0 work; a body that stops arriving gets 408 within --body-timeout.
 */
import assert from "node:assert/strict";
import { startGateway } from "../_gateway.ts";
import { mustSettle, Wire } from "./_wire.ts";

const CHAT = JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 3, temperature: 0 });

Deno.test("http wire: malformed request heads get 400 / 431 / 505 in OpenAI's shape, never a 500", async () => {
  const g = await startGateway();
  const port = g.server.addr.port;
  const post = (fields: string, body = "") =>
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${fields}\r\n${body}`;
  const cases: [string, number][] = [
    ["GARBAGE\r\n\r\n", 400],
    ["GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505],
    ["GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET /healthz HTTP/1.1\r\n\r\n", 400], // no Host
    ["GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["GET /healthz HTTP/1.1\r\nHost: exa mple\r\n\r\n", 400],
    ["GET /healthz HTTP/1.1\r\nHost: x\r\n folded: line\r\n\r\n", 400],
    ["GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400],
    ["GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400],
    ["GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400],
    ["GET http://[bad/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400],
    [post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400],
    [post("Content-Length: abc\r\n"), 400],
    [post("Content-Length: 5, 6\r\n"), 400],
    [post("Transfer-Encoding: gzip\r\n"), 400],
    [post("Transfer-Encoding: chunked\r\ncontent-type: application/json\r\n", "zz\r\n"), 400],
    [post("Transfer-Encoding: chunked\r\ncontent-type: application/json\r\n", "2\r\n{}XX"), 400],
    [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(40_000)}\r\n\r\n`, 431],
    [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(40_000)}`, 431], // never ends
    [`GET /healthz HTTP/1.1\r\nHost: x\r\n${"X-A: 1\r\n".repeat(101)}\r\n`, 431],
  ];
  try {
    for (const [request, status] of cases) {
      const wire = await Wire.connect(port);
      try {
        await wire.write(request);
        const res = await wire.response();
        const what = JSON.stringify(request.slice(0, 70));
        assert.equal(res.status, status, what);
        const err = JSON.parse(res.body).error;
        assert.equal(typeof err.code, "string", what);
        assert.equal(typeof err.message, "string", what);
        assert.equal(res.headers.connection, "close", what);
        await wire.closedByServer();
      } finally {
        wire.close();
      }
    }
  } finally {
    await g.close();
  }
});

Deno.test("http wire: chunked body, 100-continue, pipelining, HEAD and HTTP/1.0 are served", async () => {
  const g = await startGateway();
  const port = g.server.addr.port;
  const wire = await Wire.connect(port);
  try {
    // A chunked body in three chunks, with an extension and a trailer.
    const [a, b, c] = [CHAT.slice(0, 10), CHAT.slice(10, 30), CHAT.slice(30)];
    await wire.write(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n" +
        `${a.length.toString(16)};ext=1\r\n${a}\r\n${b.length.toString(16)}\r\n${b}\r\n` +
        `${c.length.toString(16)}\r\n${c}\r\n0\r\nX-Trailer: t\r\n\r\n`,
    );
    const chat = await wire.response();
    assert.equal(chat.status, 200, chat.body);
    assert.equal(JSON.parse(chat.body).usage.completion_tokens, 3);
    // Expect: 100-continue: the server invites the body, then answers (same connection: keep-alive).
    await wire.write(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n" +
        `Content-Length: ${CHAT.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    assert.equal((await wire.response()).status, 100);
    await wire.write(CHAT);
    assert.equal((await wire.response()).status, 200);
    // Two pipelined requests in one write: two answers, in order.
    await wire.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.deepEqual(JSON.parse((await wire.response()).body), { status: "ok" });
    assert.equal(JSON.parse((await wire.response()).body).object, "list");
    // A head that arrives one byte at a time (the terminator split across reads).
    for (const ch of "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") {
      await wire.write(ch);
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.deepEqual(JSON.parse((await wire.response()).body), { status: "ok" });
    // HEAD: the head only, and the connection goes on.
    await wire.write("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const head = await wire.response({ toHead: true });
    assert.equal(head.status, 200);
    await wire.write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const last = await wire.response();
    assert.equal(last.status, 200);
    assert.equal(head.body + JSON.parse(last.body).status, "ok");
    assert.equal(last.headers.connection, "close");
    await wire.closedByServer();
  } finally {
    wire.close();
  }
  const old = await Wire.connect(port);
  try {
    await old.write("GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n");
    const res = await old.response();
    assert.equal(res.status, 200);
    assert.equal(res.headers.connection, "close");
    await old.closedByServer();
  } finally {
    old.close();
    await g.close();
  }
});

Deno.test("http wire: a body that stops arriving gets 408 within --body-timeout, nothing else waits", async () => {
  const g = await startGateway({ bodyTimeout: 0.5 });
  const port = g.server.addr.port;
  const wire = await Wire.connect(port);
  try {
    await wire.write(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n" +
        `Content-Length: ${CHAT.length}\r\n\r\n${CHAT.slice(0, 10)}`,
    );
    // Meanwhile another client is served.
    assert.equal((await fetch(`${g.http}/healthz`)).status, 200);
    const res = await mustSettle(wire.response(), 20_000, "the 408");
    assert.equal(res.status, 408);
    assert.equal(JSON.parse(res.body).error.code, "body_timeout");
    await wire.closedByServer();
    assert.equal(g.gw.ctx.admission.completions, 0, "nothing was generated");
  } finally {
    wire.close();
    await g.close();
  }
});
