/**
 * Slow and greedy clients against a real gateway on loopback (issue #12 "slow clients"): 150 connections
 * that send half a request head and stop (slowloris) are all answered 408 and closed by the server once
 * --header-timeout passes, while a normal request is served meanwhile; an idle keep-alive connection is
 * closed silently; over --max-connections a connection gets 503 at once.
 */
import assert from "node:assert/strict";
import { startGateway } from "../_gateway.ts";
import { mustSettle, Wire } from "./_wire.ts";

async function drained(server: { connections: number }): Promise<void> {
  while (server.connections > 0) await new Promise((r) => setTimeout(r, 10));
}

async function partialHeads(port: number, n: number): Promise<Wire[]> {
  const wires: Wire[] = [];
  for (let i = 0; i < n; i++) {
    const w = await Wire.connect(port);
    await w.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-${i}: `);
    wires.push(w);
  }
  return wires;
}

Deno.test("slow clients: 150 partial heads all get 408 and are closed; a normal request is served meanwhile", async () => {
  const g = await startGateway({ headerTimeout: 1 });
  const wires = await partialHeads(g.server.addr.port, 150);
  try {
    const ok = await fetch(`${g.http}/healthz`);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { status: "ok" });
    assert.ok(g.server.connections >= 150, `${g.server.connections} connections open`);
    const answers = await mustSettle(Promise.all(wires.map((w) => w.response())), 20_000, "408 answers");
    assert.deepEqual(new Set(answers.map((r) => r.status)), new Set([408]));
    assert.equal(JSON.parse(answers[0].body).error.code, "header_timeout");
    await mustSettle(Promise.all(wires.map((w) => w.closedByServer())), 20_000, "server-side closes");
  } finally {
    for (const w of wires) w.close();
    await g.close();
  }
});

Deno.test("slow clients: an idle keep-alive connection is closed silently after --header-timeout", async () => {
  const g = await startGateway({ headerTimeout: 0.5 });
  const w = await Wire.connect(g.server.addr.port);
  try {
    await w.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal((await w.response()).status, 200);
    assert.equal(await mustSettle(w.fill(), 20_000, "close"), false, "closed with no 408 (nothing was sent)");
  } finally {
    w.close();
    await g.close();
  }
});

Deno.test("slow clients: over --max-connections a new connection gets 503 at once", async () => {
  const g = await startGateway({ maxConnections: 10, headerTimeout: 1 });
  const wires = await partialHeads(g.server.addr.port, 10);
  const extra = await Wire.connect(g.server.addr.port);
  try {
    const res = await mustSettle(extra.response(), 5_000, "503");
    assert.equal(res.status, 503);
    assert.equal(JSON.parse(res.body).error.code, "too_many_connections");
    await extra.closedByServer();
    // Once the slow ones are gone, the server takes connections again.
    await mustSettle(
      Promise.all(wires.map((w) => w.closedByServer().then(() => w.close()))),
      20_000,
      "closes",
    );
    await mustSettle(drained(g.server), 20_000, "connections released");
    assert.equal((await fetch(`${g.http}/healthz`)).status, 200);
  } finally {
    extra.close();
    for (const w of wires) w.close();
    await g.close();
  }
});
