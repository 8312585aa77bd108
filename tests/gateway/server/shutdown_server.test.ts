/**
 * Gateway.shutdown() at the connection level: an idle keep-alive connection is closed, a WebSocket whose
 * client never answers the close frame still gets its 1001 and does not hold shutdown past its grace
 * period, and the listener is gone afterwards.
 */
import assert from "node:assert/strict";
import { startGateway } from "../_gateway.ts";
import { mustSettle, openWs, Wire } from "./_wire.ts";

Deno.test("server shutdown: idle connections closed, a mute WebSocket gets 1001, then the listener closes", async () => {
  const g = await startGateway();
  const port = g.server.addr.port;
  const idle = await Wire.connect(port);
  const { res, wire: mute } = await openWs(port, ["Sec-WebSocket-Protocol: realtime"]);
  try {
    await idle.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal((await idle.response()).status, 200);
    assert.equal(res.status, 101);
    assert.equal((await mute.event()).type, "session.created");
    const done = g.close();
    await mustSettle(idle.closedByServer(), 10_000, "idle connection closed");
    const end = await mustSettle(mute.untilClose(), 10_000, "close frame"); // and never answered
    assert.equal(end.code, 1001);
    await mustSettle(done, 30_000, "shutdown");
    assert.equal(g.server.connections, 0);
    await mute.closedByServer();
    await assert.rejects(() => Deno.connect({ hostname: "127.0.0.1", port }), Deno.errors.ConnectionRefused);
  } finally {
    idle.close();
    mute.close();
  }
});
