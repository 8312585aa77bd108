/**
 * The tokenizer worker (started by off_thread.ts): loads the tokenizer from its source — the module and
 * files the gateway's own tokenizer came from — checks that it is the same one, and answers each
 * "encode" with ChatRenderer.encodeTurn's ids, in the order the requests came.
 */
/// <reference lib="deno.worker" />
import type { Tokenizer, TokenizerSource } from "../../runtime/types.ts";
import { ChatRenderer } from "./template.ts";
import type { TokenizerIdentity } from "./off_thread.ts";
import type { ChatMessage } from "./turn_segments.ts";

export type WorkerRequest =
  | { type: "init"; source: TokenizerSource; identity: TokenizerIdentity }
  | { type: "encode"; id: number; messages: ChatMessage[]; first: boolean };

export type WorkerReply =
  | { type: "ids"; id: number; ids: Int32Array }
  | { type: "error"; id: number; message: string }
  | { type: "fatal"; message: string };

async function load(source: TokenizerSource, want: TokenizerIdentity): Promise<ChatRenderer> {
  const loader = await import(source.module) as {
    loadTokenizerFromSource(s: TokenizerSource): Promise<Tokenizer>;
  };
  const tokenizer = await loader.loadTokenizerFromSource(source);
  const got: TokenizerIdentity = {
    vocabSize: tokenizer.vocabSize,
    bosId: tokenizer.bosId,
    eosId: tokenizer.eosId,
    chatTemplate: tokenizer.chatTemplate,
  };
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`the tokenizer files changed since the gateway loaded them (${JSON.stringify(got)})`);
  }
  return new ChatRenderer(tokenizer);
}

let renderer: Promise<ChatRenderer> | null = null;

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  const req = e.data;
  if (req.type === "init") {
    renderer = load(req.source, req.identity);
    renderer.catch((err) => {
      const reply: WorkerReply = { type: "fatal", message: (err as Error).message };
      self.postMessage(reply);
    });
    return;
  }
  let r: ChatRenderer;
  try {
    r = await renderer!;
  } catch {
    return; // reported once, as "fatal"
  }
  let reply: WorkerReply;
  try {
    const ids = new Int32Array(r.encodeTurn(req.messages, req.first));
    reply = { type: "ids", id: req.id, ids };
    self.postMessage(reply, [ids.buffer]);
  } catch (err) {
    reply = { type: "error", id: req.id, message: (err as Error).message };
    self.postMessage(reply);
  }
};
