/**
 * WebSocket framing limits against a real gateway on loopback, with hand-made frames (issue #12 "frames"):
 * an oversized message is refused from its frame header, before any payload is sent (error event, close
 * 1009), also when only the reassembled fragments are too large; invalid UTF-8: error event, close 1007;
 * protocol violations: close 1002; ping / pong, fragments with a control frame between them, the close
 * handshake; silence: a ping, then close 1001.
 */
import assert from "node:assert/strict";
import { startGateway, type TestGateway } from "../_gateway.ts";
import { clientFrame, eventFrame, openWs, type Wire } from "./_wire.ts";

const LIMIT = 4096;
const TEXT = 0x1, BINARY = 0x2, CONT = 0x0, CLOSE = 0x8, PING = 0x9, PONG = 0xa;

async function session(g: TestGateway): Promise<Wire> {
  const { res, wire } = await openWs(g.server.addr.port, ["Sec-WebSocket-Protocol: realtime"]);
  assert.equal(res.status, 101);
  assert.equal((await wire.event()).type, "session.created");
  return wire;
}

/** Send `frames`; the server must answer with close `code`, after one error event `errorCode` if given. */
async function expectClose(g: TestGateway, frames: Uint8Array[], code: number, errorCode?: string) {
  const wire = await session(g);
  try {
    for (const f of frames) await wire.write(f);
    const end = await wire.untilClose();
    assert.equal(end.code, code, `close code (reason: ${end.reason})`);
    const errors = end.texts.map((t) => JSON.parse(t)).filter((e) => e.type === "error");
    if (errorCode === undefined) assert.equal(errors.length, 0);
    else {
      assert.equal(errors.length, 1);
      assert.equal(errors[0].error.code, errorCode);
      assert.equal(errors[0].error.type, "invalid_request_error");
    }
    await wire.write(clientFrame({ opcode: CLOSE, payload: new Uint8Array([code >> 8, code & 0xff]) }))
      .catch(() => {});
    await wire.closedByServer();
  } finally {
    wire.close();
  }
}

Deno.test("ws frames: an oversized message is refused from its header, before its payload is sent", async () => {
  const g = await startGateway({ maxFrameBytes: LIMIT });
  try {
    // A header announcing 100 MB and no payload at all: the answer cannot have waited for the bytes.
    await expectClose(g, [clientFrame({ opcode: TEXT, length: 100_000_000 })], 1009, "frame_too_large");
    await expectClose(g, [clientFrame({ opcode: BINARY, length: 2 ** 40 })], 1009, "frame_too_large");
    // Fragments each under the limit whose sum is over it.
    const half = "x".repeat(LIMIT / 2 + 100);
    await expectClose(
      g,
      [
        clientFrame({ opcode: TEXT, payload: half, fin: false }),
        clientFrame({ opcode: CONT, payload: half, fin: true }),
      ],
      1009,
      "frame_too_large",
    );
    // One byte under the limit is delivered (the session answers invalid_json, the socket stays).
    const wire = await session(g);
    await wire.write(clientFrame({ opcode: TEXT, payload: "y".repeat(LIMIT) }));
    assert.equal((await wire.event()).error.code, "invalid_json");
    wire.close();
  } finally {
    await g.close();
  }
});

Deno.test("ws frames: invalid UTF-8 gets an error event and close 1007", async () => {
  const g = await startGateway({ maxFrameBytes: LIMIT });
  try {
    await expectClose(
      g,
      [clientFrame({ opcode: TEXT, payload: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) })],
      1007,
      "invalid_utf8",
    );
    // A sequence split across fragments is fine; a truncated one at the end is not.
    const euro = new Uint8Array([0xe2, 0x82, 0xac]);
    await expectClose(
      g,
      [
        clientFrame({ opcode: TEXT, payload: euro.subarray(0, 2), fin: false }),
        clientFrame({ opcode: CONT, payload: euro.subarray(0, 1), fin: true }),
      ],
      1007,
      "invalid_utf8",
    );
  } finally {
    await g.close();
  }
});

Deno.test("ws frames: protocol violations close with 1002", async () => {
  const g = await startGateway({ maxFrameBytes: LIMIT });
  const ev = JSON.stringify({ type: "session.update", session: {} });
  try {
    const violations: [string, Uint8Array[]][] = [
      ["unmasked", [clientFrame({ opcode: TEXT, payload: ev, masked: false })]],
      ["reserved bit", [clientFrame({ opcode: TEXT, payload: ev, rsv: 4 })]],
      ["opcode 3", [clientFrame({ opcode: 0x3, payload: "x" })]],
      ["opcode 0xb", [clientFrame({ opcode: 0xb })]],
      ["long ping", [clientFrame({ opcode: PING, payload: new Uint8Array(126) })]],
      ["fragmented ping", [clientFrame({ opcode: PING, fin: false })]],
      ["lone continuation", [clientFrame({ opcode: CONT, payload: ev })]],
      ["text inside a fragmented message", [
        clientFrame({ opcode: TEXT, payload: "{", fin: false }),
        clientFrame({ opcode: TEXT, payload: "}" }),
      ]],
      ["1-byte close payload", [clientFrame({ opcode: CLOSE, payload: new Uint8Array([3]) })]],
      ["close code 1005 on the wire", [
        clientFrame({ opcode: CLOSE, payload: new Uint8Array([0x03, 0xed]) }),
      ]],
    ];
    for (const [what, frames] of violations) {
      await expectClose(g, frames, 1002).catch((e) => {
        throw new Error(`${what}: ${e.message}`);
      });
    }
  } finally {
    await g.close();
  }
});

Deno.test("ws frames: ping / pong, fragments around a ping, and the close handshake", async () => {
  const g = await startGateway({ maxFrameBytes: LIMIT });
  const wire = await session(g);
  try {
    await wire.write(clientFrame({ opcode: PING, payload: "are you there" }));
    const pong = await wire.frame();
    assert.equal(pong?.opcode, PONG);
    assert.equal(new TextDecoder().decode(pong!.payload), "are you there");
    await wire.write(clientFrame({ opcode: PONG, payload: "unsolicited" })); // ignored, per RFC
    const ev = JSON.stringify({ type: "session.update", session: { instructions: "In three parts." } });
    await wire.write(clientFrame({ opcode: TEXT, payload: ev.slice(0, 20), fin: false }));
    await wire.write(clientFrame({ opcode: PING, payload: "mid" }));
    await wire.write(clientFrame({ opcode: CONT, payload: ev.slice(20, 40), fin: false }));
    await wire.write(clientFrame({ opcode: CONT, payload: ev.slice(40), fin: true }));
    assert.equal((await wire.frame())?.opcode, PONG);
    const updated = await wire.event();
    assert.equal(updated.type, "session.updated");
    assert.equal(updated.session.instructions, "In three parts.");
    // Our close: the server answers with the same code and closes the TCP connection.
    const id = updated.session.id;
    await wire.write(clientFrame({ opcode: CLOSE, payload: new Uint8Array([0x03, 0xe8, 0x62, 0x79, 0x65]) }));
    const end = await wire.untilClose();
    assert.equal(end.code, 1000);
    await wire.closedByServer();
    const s = g.gw.sessions.sessions.get(id);
    assert.ok(s === undefined || s.socket === null, "the session was detached");
  } finally {
    wire.close();
    await g.close();
  }
});

Deno.test("ws frames: a silent client gets a ping, then close 1001; one that answers stays", async () => {
  const g = await startGateway({ wsIdleTimeout: 0.2 });
  try {
    const silent = await session(g);
    const ping = await silent.frame();
    assert.equal(ping?.opcode, PING);
    const end = await silent.untilClose();
    assert.equal(end.code, 1001);
    assert.equal(end.reason, "idle timeout");
    silent.close();

    const alive = await session(g);
    for (let i = 0; i < 4; i++) {
      const f = await alive.frame();
      assert.equal(f?.opcode, PING, `ping ${i}`);
      await alive.write(clientFrame({ opcode: PONG, payload: f!.payload }));
    }
    await alive.write(eventFrame({ type: "session.update", session: {} }));
    assert.equal((await alive.event()).type, "session.updated");
    alive.close();
  } finally {
    await g.close();
  }
});
