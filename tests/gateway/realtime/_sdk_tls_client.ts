/**
 * Child process of openai_sdk_tls.test.ts: the official openai SDK's Realtime client, unmodified,
 * over wss:// to a TLS gateway whose test CA is trusted with `deno run --cert`.
 * Usage: deno run -A --cert CA.pem _sdk_tls_client.ts https://127.0.0.1:PORT/v1 API_KEY
 * Prints one JSON line: { created, text, status, usage }.
 */
import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/realtime/websocket";

const [baseURL, apiKey] = Deno.args;
const client = new OpenAI({ apiKey, baseURL });
const rt = new OpenAIRealtimeWebSocket({ model: "stories260K" }, client);
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timeout" }));
  Deno.exit(2);
}, 20_000);
rt.on("error", (e) => {
  console.log(JSON.stringify({ error: String(e.message ?? e) }));
  Deno.exit(3);
});
const created = await new Promise<{ type?: string; id?: string }>((resolve) =>
  rt.on("session.created", (e) => resolve(e.session as { type?: string; id?: string }))
);
let text = "";
rt.on("response.output_text.delta", (e) => (text += e.delta));
const done = new Promise<{ response: { status?: string; usage?: unknown } }>((resolve) =>
  rt.on("response.done", resolve)
);
rt.send({
  type: "conversation.item.create",
  item: { type: "message", role: "user", content: [{ type: "input_text", text: "Once upon a time" }] },
});
rt.send({ type: "response.create", response: { max_output_tokens: 12 } });
const d = await done;
clearTimeout(timer);
console.log(JSON.stringify({ created, text, status: d.response.status, usage: d.response.usage }));
rt.close();
