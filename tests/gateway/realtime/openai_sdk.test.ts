/**
 * The official `openai` package's Realtime WebSocket client against the gateway.
 *
 * The SDK insists on wss:// URLs (it throws after `onURL` for anything else) and Deno's
 * WebSocket cannot be told to trust a test certificate at run time, so the test swaps in
 * a WebSocket subclass that dials ws:// for the loopback gateway. Everything else — the
 * SDK's subprotocols (realtime + openai-insecure-api-key.<key>), framing, event parsing
 * and typed listeners — is the SDK's own code, unmodified.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/realtime/websocket";
import { startGateway } from "../_gateway.ts";

const NativeWebSocket = globalThis.WebSocket;
class LoopbackWebSocket extends NativeWebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(String(url).replace(/^wss:\/\/127\.0\.0\.1:/, "ws://127.0.0.1:"), protocols);
  }
}

Deno.test("openai SDK Realtime client: session, item, streamed text response, usage, auth via subprotocol", async () => {
  const g = await startGateway({ apiKeys: ["sk-test-123"] });
  globalThis.WebSocket = LoopbackWebSocket as typeof WebSocket;
  try {
    const client = new OpenAI({ apiKey: "sk-test-123", baseURL: `${g.http}/v1` });
    const rt = new OpenAIRealtimeWebSocket({ model: "stories260K" }, client);
    const errors: unknown[] = [];
    rt.on("error", (e) => errors.push(e));
    const created = await new Promise<{ type?: string }>((resolve) =>
      rt.on("session.created", (e) => resolve(e.session))
    );
    assert.equal(created.type, "realtime");
    rt.send({
      type: "session.update",
      session: { type: "realtime", instructions: "Tell a story.", output_modalities: ["text"] },
    });
    await new Promise((resolve) => rt.on("session.updated", resolve));
    rt.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Once upon a time" }] },
    });
    const added = await new Promise<{ role?: string }>((resolve) =>
      rt.on("conversation.item.added", (e) => resolve(e.item as { role?: string }))
    );
    assert.equal(added.role, "user");
    let text = "";
    rt.on("response.output_text.delta", (e) => (text += e.delta));
    const done = new Promise<
      { response: { status?: string; usage?: { output_tokens?: number; input_tokens?: number } } }
    >(
      (resolve) => rt.on("response.done", resolve),
    );
    rt.send({ type: "response.create", response: { max_output_tokens: 16 } });
    const d = await done;
    assert.equal(d.response.status, "incomplete");
    assert.equal(d.response.usage?.output_tokens, 16);
    assert.ok((d.response.usage?.input_tokens ?? 0) > 0);
    assert.ok(text.length > 0);
    // An unsupported event comes back as an SDK error with the server's code.
    rt.send({ type: "input_audio_buffer.clear", event_id: "evt_a" });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(errors.length, 1);
    // deno-lint-ignore no-explicit-any
    assert.equal((errors[0] as any).error?.code, "unsupported_event");
    const closed = new Promise((resolve) => rt.socket.addEventListener("close", resolve));
    rt.close();
    await closed;
  } finally {
    globalThis.WebSocket = NativeWebSocket;
    await g.close();
  }
});

Deno.test("openai SDK chat.completions: non-streaming and streaming, usage, stop, models", async () => {
  const g = await startGateway({ apiKeys: ["sk-test-123"] });
  try {
    const client = new OpenAI({ apiKey: "sk-test-123", baseURL: `${g.http}/v1` });
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["stories260K"]);

    const r = await client.chat.completions.create({
      model: "stories260K",
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 20,
      temperature: 0,
      seed: 3,
    });
    assert.equal(r.object, "chat.completion");
    assert.equal(r.choices[0].finish_reason, "length");
    assert.equal(r.usage?.completion_tokens, 20);
    const text = r.choices[0].message.content ?? "";
    assert.ok(text.length > 0);

    // Greedy is deterministic: streaming gives the same text.
    const stream = await client.chat.completions.create({
      model: "stories260K",
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 20,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        streamed += ch.delta.content ?? "";
        finish = ch.finish_reason ?? finish;
      }
    }
    assert.equal(streamed, text);
    assert.equal(finish, "length");
    assert.equal(usage?.completion_tokens, 20);

    // stop: cut at the first occurrence, finish_reason stop.
    const word = text.trim().split(/\s+/)[1];
    const s = await client.chat.completions.create({
      model: "stories260K",
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 20,
      temperature: 0,
      stop: [word],
    });
    assert.equal(s.choices[0].finish_reason, "stop");
    assert.equal(s.choices[0].message.content, text.slice(0, text.indexOf(word)));

    // Wrong key: 401 in OpenAI's error shape.
    const bad = new OpenAI({ apiKey: "sk-wrong", baseURL: `${g.http}/v1`, maxRetries: 0 });
    await assert.rejects(() => bad.models.list(), (e: unknown) => (e as { status?: number }).status === 401);
    assert.equal(g.gw.scheduler.liveConversations, 0, "completion sequences are freed");
  } finally {
    await g.close();
  }
});
