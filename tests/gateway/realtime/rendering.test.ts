/**
 * A Realtime response is active from `response.create` on, also while its turn is still being
 * rendered (rendering is asynchronous: large turns are tokenised off the event loop): a second
 * response.create is refused, a cancel cancels it, cache settings are locked, and items added
 * meanwhile belong to the next turn. The renderer is the real one; the test only decides when its
 * asynchronous stage completes.
 */
import assert from "node:assert/strict";
import type { ChatMessage } from "../../../gateway/chat/template.ts";
import { RealtimeSession } from "../../../gateway/realtime/session.ts";
import type { TurnRenderer } from "../../../gateway/response/runner.ts";
import { startGateway, type TestGateway } from "../_gateway.ts";
import { Gate } from "../scheduler/_delegating_engine.ts";
import { RecordingSocket } from "./_recording_socket.ts";

class GatedRenderer implements TurnRenderer {
  readonly gates: Gate[] = [];
  constructor(readonly inner: TurnRenderer) {}
  get usesTemplate() {
    return this.inner.usesTemplate;
  }
  encodeTurn(messages: ChatMessage[], first: boolean) {
    return this.inner.encodeTurn(messages, first);
  }
  async encodeTurnAsync(messages: ChatMessage[], first: boolean) {
    const gate = new Gate();
    this.gates.push(gate);
    await gate.wait();
    return this.inner.encodeTurn(messages, first);
  }
  close() {}
}

function open(g: TestGateway) {
  const renderer = new GatedRenderer(g.gw.ctx.renderer);
  const session = new RealtimeSession({ ...g.gw.ctx, renderer });
  const sock = new RecordingSocket();
  session.attach(sock);
  const send = (ev: Record<string, unknown>) => session.handleFrame(JSON.stringify(ev));
  const item = (text: string) =>
    send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
  const tokens = (text: string, first: boolean) =>
    g.gw.ctx.renderer.encodeTurn([{ role: "user", content: text }], first).length;
  return { renderer, session, sock, send, item, tokens };
}

Deno.test("realtime rendering: a second response.create is refused, settings locked, later items wait a turn", async () => {
  const g = await startGateway();
  const { renderer, session, sock, send, item, tokens } = open(g);
  try {
    item("Lily had a red ball.");
    send({ type: "response.create", response: { max_output_tokens: 6 } });
    assert.equal(renderer.gates.length, 1, "the turn is rendering");
    send({ type: "response.create", event_id: "evt_second" });
    const refused = sock.last("error")!;
    assert.equal(refused.error.code, "conversation_already_has_active_response");
    assert.equal(refused.error.event_id, "evt_second");
    send({ type: "session.update", session: { sinkstream: { window: 64 } } });
    assert.equal(sock.last("error")!.error.code, "session_settings_locked");
    item("Tom came to play."); // added while the first turn renders: the next turn's
    renderer.gates[0].open();
    const d1 = await sock.until("response.done");
    assert.equal(d1.response.status, "incomplete");
    assert.equal(d1.response.usage.input_tokens, tokens("Lily had a red ball.", true));
    assert.equal(sock.count("response.created"), 1);

    send({ type: "response.create", response: { max_output_tokens: 4 } });
    renderer.gates[1].open();
    const d2 = await sock.until("response.done", 2);
    // The cut-off answer's last token (pending) + the item added during the first render.
    assert.equal(d2.response.usage.input_tokens, 1 + tokens("Tom came to play.", false));
  } finally {
    session.dispose();
    await g.close();
  }
});

Deno.test("realtime rendering: a cancel while the turn renders cancels the response; the turn stays pending", async () => {
  const g = await startGateway();
  const { renderer, session, sock, send, item, tokens } = open(g);
  try {
    item("Once upon a time");
    send({ type: "response.create", response: { max_output_tokens: 6 } });
    send({ type: "response.cancel", event_id: "evt_cancel" });
    assert.equal(sock.count("error"), 0, "there is an active response to cancel");
    renderer.gates[0].open();
    const d1 = await sock.until("response.done");
    assert.equal(d1.response.status, "cancelled");
    assert.equal(d1.response.status_details.reason, "client_cancelled");
    assert.equal(d1.response.usage.input_tokens, 0);
    assert.equal(d1.response.usage.output_tokens, 0);
    assert.ok(sock.events.findIndex((e) => e.type === "response.created") < sock.events.indexOf(d1));

    // As after a cancel during prefill, the whole turn is fed first next time.
    item("The end.");
    send({ type: "response.create", response: { max_output_tokens: 3 } });
    renderer.gates[1].open();
    const d2 = await sock.until("response.done", 2);
    assert.equal(d2.response.status, "incomplete");
    assert.equal(
      d2.response.usage.input_tokens,
      tokens("Once upon a time", true) + tokens("The end.", false),
    );
  } finally {
    session.dispose();
    await g.close();
  }
});
