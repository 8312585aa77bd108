/**
 * Origin and Host checks against a real gateway, with hand-written requests (exact Host and Origin):
 * the Origin must match the server's scheme, host and port (or --allow-origin); without API keys beyond
 * loopback the Host must name this server (IP, localhost, --host or --allow-host) — a DNS-rebinding page
 * (Host: evil.example, Origin: http://evil.example) is refused, on HTTP and on the WebSocket.
 */
import assert from "node:assert/strict";
import type { ConfigInput } from "../../../gateway/config/config.ts";
import { startGateway } from "../_gateway.ts";
import { rawRequest, upgradeHeaders } from "./_raw_http.ts";

async function withGateway(config: ConfigInput, body: (port: number) => Promise<void>): Promise<void> {
  const g = await startGateway(config);
  try {
    await body(g.server.addr.port);
  } finally {
    await g.close();
  }
}

async function status(port: number, headers: Record<string, string>, path = "/v1/models"): Promise<number> {
  const r = await rawRequest(port, path, headers);
  if (r.status === 403) assert.match(r.body, /"code":"(origin|host)_not_allowed"/);
  return r.status;
}

Deno.test("origin: same scheme, host and port only; --allow-origin compared the same way", async () => {
  await withGateway({ allowedOrigins: ["https://app.example"] }, async (port) => {
    const host = `127.0.0.1:${port}`;
    assert.equal(await status(port, { Host: host }), 200, "no Origin: not a browser");
    assert.equal(await status(port, { Host: host, Origin: `http://${host}` }), 200, "same origin");
    assert.equal(await status(port, { Host: host, Origin: `https://${host}` }), 403, "other scheme");
    assert.equal(await status(port, { Host: host, Origin: "http://127.0.0.1:1" }), 403, "other port");
    assert.equal(await status(port, { Host: host, Origin: "http://evil.example" }), 403, "other host");
    assert.equal(await status(port, { Host: host, Origin: "null" }), 403, "opaque origin");
    assert.equal(await status(port, { Host: host, Origin: "https://app.example" }), 200, "allowed");
    assert.equal(await status(port, { Host: host, Origin: "https://APP.example:443" }), 200, "normalised");
    assert.equal(await status(port, { Host: host, Origin: "http://app.example" }), 403, "allowed host, http");
    const ws = await rawRequest(port, "/v1/realtime", upgradeHeaders(host, `https://${host}`));
    assert.equal(ws.status, 403, "the WebSocket handshake is checked too");
    assert.equal(
      (await rawRequest(port, "/v1/realtime", upgradeHeaders(host, `http://${host}`))).status,
      101,
    );
  });
});

Deno.test("host: without API keys beyond loopback, a rebinding page's Host is refused", async () => {
  // Listening on all interfaces as far as the guard knows (the socket itself stays on loopback).
  await withGateway({ host: "0.0.0.0", allowedHosts: ["chat.example"] }, async (port) => {
    const evil = `evil.example:${port}`;
    assert.equal(await status(port, { Host: evil }), 403);
    assert.equal(
      await status(port, { Host: evil, Origin: `http://${evil}` }),
      403,
      "same-origin to the browser",
    );
    assert.equal(
      (await rawRequest(port, "/v1/realtime", upgradeHeaders(evil, `http://${evil}`))).status,
      403,
    );
    assert.equal(await status(port, {}), 400, "no Host at all: the server refuses it (RFC 9112 bad_host)");
    for (const ok of [`127.0.0.1:${port}`, `[::1]:${port}`, `localhost:${port}`, `app.localhost:${port}`]) {
      assert.equal(await status(port, { Host: ok }), 200, ok);
    }
    assert.equal(
      await status(port, { Host: `192.168.1.20:${port}` }),
      200,
      "an IP address cannot be rebound",
    );
    assert.equal(await status(port, { Host: `CHAT.example.:${port}` }), 200, "--allow-host, any case");
    assert.equal(await status(port, { Host: `0.0.0.0:${port}` }), 200, "the listen address");
  });
});

Deno.test("host: not checked with API keys, on loopback, or with --allow-host '*'", async () => {
  const evil = (port: number) => ({ Host: `evil.example:${port}`, Authorization: "Bearer k1" });
  await withGateway({ host: "0.0.0.0", apiKeys: ["k1"] }, async (port) => {
    assert.equal(await status(port, evil(port)), 200);
  });
  await withGateway({}, async (port) => {
    assert.equal(await status(port, evil(port)), 200);
  });
  await withGateway({ host: "0.0.0.0", allowedHosts: ["*"] }, async (port) => {
    assert.equal(await status(port, evil(port)), 200);
  });
});
