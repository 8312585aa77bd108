/**
 * The schema probe's Worker (probe.ts): compiles each schema it is sent with xgrammar against a 256-token
 * byte vocabulary and answers whether that worked. xgrammar reports a schema it cannot handle by aborting its
 * WebAssembly instance (Emscripten `abort()`, the message on stderr), which leaves that instance unreliable,
 * so after a failure this Worker answers and closes itself; probe.ts starts a new one for the next schema.
 */
/// <reference lib="deno.worker" />
import { byteLevelAlphabet } from "./alphabet.ts";
import { loadXgrammar } from "./xgrammar.ts";

export interface ProbeRequest {
  id: number;
  schema: string;
}
export type ProbeReply = { id: number; ok: true } | { id: number; ok: false; message: string };

// xgrammar's "[FATAL] file:line: message" lines come through console.error: keep the last for the answer.
let lastFatal: string | null = null;
console.error = (...args: unknown[]) => {
  const line = args.map(String).join(" ");
  const m = /\[FATAL\][^:]*:\d+:\s*(.*)$/s.exec(line);
  if (m) lastFatal = m[1].trim();
};

const xg = await loadXgrammar();
const info = await xg.TokenizerInfo.createTokenizerInfo(byteLevelAlphabet(), "byte_level", false, 256, [0]);
const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);

self.onmessage = async (e: MessageEvent<ProbeRequest>) => {
  const { id, schema } = e.data;
  lastFatal = null;
  try {
    const compiled = await compiler.compileJSONSchema(schema, false, -1, undefined, true);
    compiled.dispose();
    self.postMessage({ id, ok: true } satisfies ProbeReply);
  } catch (err) {
    const message = lastFatal ?? (err instanceof Error ? err.message : String(err));
    self.postMessage({ id, ok: false, message } satisfies ProbeReply);
    self.close();
  }
};
self.postMessage({ id: -1, ok: true } satisfies ProbeReply); // ready
