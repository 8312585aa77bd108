/**
 * The WebSocket opening handshake against a real gateway on loopback, raw over TCP (issue #12 failure 5):
 * every valid Sec-WebSocket-Protocol form opens a working, authenticated socket; the server selects
 * `realtime` when offered and never a protocol that was not offered; bad upgrade requests get 400 / 426
 * in OpenAI's error shape, never a 500. Plus Node's `ws` client, which joins protocols with "," alone and
 * refuses a server that selects none.
 */
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startGateway } from "../_gateway.ts";
import { eventFrame, openWs, Wire, wsKey } from "./_wire.ts";

const KEY = "sk-test";

async function assertWorkingSocket(
  port: number,
  fields: string[],
  protocol: string | undefined,
): Promise<void> {
  const { res, wire, accept } = await openWs(port, fields);
  try {
    assert.equal(res.status, 101, `${fields.join(" | ")}: ${res.status} ${res.body}`);
    assert.equal(res.headers["sec-websocket-accept"], accept);
    assert.equal(res.headers["sec-websocket-protocol"], protocol, fields.join(" | "));
    const created = await wire.event();
    assert.equal(created.type, "session.created");
    await wire.write(eventFrame({ type: "session.update", session: { instructions: "Be brief." } }));
    const updated = await wire.event();
    assert.equal(updated.type, "session.updated");
    assert.equal(updated.session.instructions, "Be brief.");
  } finally {
    wire.close();
  }
}

Deno.test("handshake: every valid Sec-WebSocket-Protocol form opens a working socket", async () => {
  const g = await startGateway({ apiKeys: [KEY] });
  const port = g.server.addr.port;
  const key = `openai-insecure-api-key.${KEY}`;
  try {
    const forms: [string[], string][] = [
      [[`Sec-WebSocket-Protocol: realtime, ${key}`], "realtime"], // browsers, Deno, the openai SDK
      [[`Sec-WebSocket-Protocol: realtime,${key}`], "realtime"], // Node's ws: a 500 from Deno.serve
      [[`Sec-WebSocket-Protocol: ${key},realtime`], "realtime"],
      [[`sec-websocket-protocol:   realtime ,   ${key}   `], "realtime"],
      [[`Sec-WebSocket-Protocol: realtime,,${key},`], "realtime"], // empty list elements are ignored
      [["Sec-WebSocket-Protocol: realtime", `Sec-WebSocket-Protocol: ${key}`], "realtime"], // two fields
      // Only the key offered: echo it (ws and browsers accept a selected protocol that was offered).
      [[`Sec-WebSocket-Protocol: ${key}`], key],
    ];
    for (const [fields, selected] of forms) await assertWorkingSocket(port, fields, selected);
  } finally {
    await g.close();
  }
  const open = await startGateway();
  try {
    // No key configured: no protocol offered, none selected; an unknown one offered, none selected.
    await assertWorkingSocket(open.server.addr.port, [], undefined);
    await assertWorkingSocket(open.server.addr.port, ["Sec-WebSocket-Protocol: chat"], undefined);
  } finally {
    await open.close();
  }
});

/** A raw upgrade request: the standard fields, each replaceable or removable (null). */
function upgrade(port: number, over: Record<string, string | null> = {}, line = "GET /v1/realtime HTTP/1.1") {
  const fields: Record<string, string | null> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": wsKey().key,
    "Sec-WebSocket-Version": "13",
    ...over,
  };
  const lines = Object.entries(fields).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}\r\n`);
  return `${line}\r\n${lines.join("")}\r\n`;
}

Deno.test("handshake: bad upgrade requests get 400 / 426 with an OpenAI-shaped error, never a 500", async () => {
  const g = await startGateway();
  const port = g.server.addr.port;
  try {
    const cases: [string, number, string][] = [
      [upgrade(port, { "Sec-WebSocket-Key": null }), 400, "bad_upgrade"],
      [upgrade(port, { "Sec-WebSocket-Key": "c2hvcnQ=" }), 400, "bad_upgrade"],
      [upgrade(port, { "Sec-WebSocket-Version": "8" }), 426, "unsupported_websocket_version"],
      [upgrade(port, { Connection: "keep-alive" }), 400, "bad_upgrade"],
      [upgrade(port, { "Sec-WebSocket-Protocol": "realtime, not a token" }), 400, "bad_upgrade"],
      [upgrade(port, { "Sec-WebSocket-Protocol": "realtime, a/b" }), 400, "bad_upgrade"],
      [upgrade(port, {}, "GET /v1/realtime HTTP/1.0"), 400, "bad_upgrade"],
      [upgrade(port, { Upgrade: "h2c" }), 426, "upgrade_required"],
    ];
    for (const [request, status, code] of cases) {
      const wire = await Wire.connect(port);
      try {
        await wire.write(request);
        const res = await wire.response();
        assert.equal(res.status, status, request);
        assert.equal(JSON.parse(res.body).error.code, code, request);
        if (status === 426 && code !== "upgrade_required") {
          assert.equal(res.headers["sec-websocket-version"], "13");
        }
      } finally {
        wire.close();
      }
    }
  } finally {
    await g.close();
  }
});

function wsOpen(url: string, protocols: string[]): Promise<{ protocol: string; first: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    ws.on("error", reject);
    ws.on("message", (m: unknown) => {
      resolve({ protocol: ws.protocol, first: String(m) });
      ws.close();
    });
  });
}

Deno.test({
  name: "handshake: Node's ws client connects offering realtime + key and the key alone",
  sanitizeOps: false, // node:http inside ws keeps its own timers past the close
  sanitizeResources: false,
}, async () => {
  const g = await startGateway({ apiKeys: [KEY] });
  try {
    const both = await wsOpen(g.ws, ["realtime", `openai-insecure-api-key.${KEY}`]);
    assert.equal(both.protocol, "realtime");
    assert.equal(JSON.parse(both.first).type, "session.created");
    const keyOnly = await wsOpen(g.ws, [`openai-insecure-api-key.${KEY}`]);
    assert.equal(keyOnly.protocol, `openai-insecure-api-key.${KEY}`);
    assert.equal(JSON.parse(keyOnly.first).type, "session.created");
  } finally {
    await g.close();
  }
});
