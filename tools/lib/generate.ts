/** Text generation over the native engine (the logic of `deno task generate`). */
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { createEngine, loadModel } from "../../runtime/native_engine.ts";
import { loadTokenizer } from "../../runtime/tokenizer/mod.ts";
import { Detokenizer } from "../../runtime/detokenizer.ts";
import { ContextFullError } from "../../runtime/errors.ts";
import type { CachePolicy, CacheStats, KvDtype, WeightDtype } from "../../runtime/types.ts";

export interface GenerateOptions {
  model: string;
  prompt: string;
  tokenizer?: string;
  /** Tokens to generate (default 256). */
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  policy?: CachePolicy;
  sinks?: number;
  capacity?: number;
  threads?: number;
  /** Convert the weights to this type at load (default: the file's). */
  weights?: WeightDtype;
  /** KV-cache element type (default: the engine's). */
  kvDtype?: KvDtype;
  /** Stop at EOS (default true). */
  stopAtEos?: boolean;
  /** Called with each piece of completed text as it is produced. */
  onText?: (text: string) => void | Promise<void>;
}

export interface GenerateResult {
  text: string;
  promptTokens: number[];
  tokens: number[];
  stopReason: "eos" | "max_tokens" | "context_full";
  stats: CacheStats;
  /** Seconds: prompt prefill, then generation. */
  prefillSeconds: number;
  decodeSeconds: number;
}

export async function generate(opts: GenerateOptions): Promise<GenerateResult> {
  await ensureNativeLibrary();
  using model = await loadModel(opts.model, { weights: opts.weights });
  using engine = await createEngine(model, { threads: opts.threads, kvDtype: opts.kvDtype });
  const tok = await loadTokenizer(opts.model, opts.tokenizer);
  const bos = model.info.bosTokenId >= 0 ? model.info.bosTokenId : tok.bosId;
  const eos = model.info.eosTokenId >= 0 ? model.info.eosTokenId : tok.eosId;
  const promptTokens = opts.prompt.length > 0 ? tok.encode(opts.prompt, { bos: bos >= 0 }) : [];
  if (promptTokens.length === 0) {
    if (bos < 0) throw new Error("empty prompt and the model has no BOS token");
    promptTokens.push(bos);
  }
  const seq = engine.createSequence({
    policy: opts.policy,
    sinks: opts.sinks,
    capacity: opts.capacity,
    temperature: opts.temperature ?? 0,
    topP: opts.topP,
    topK: opts.topK,
    seed: opts.seed,
  });
  const maxTokens = opts.maxTokens ?? 256;
  const detok = new Detokenizer(tok, { stripLeadingSpace: false });
  // Prime the detokenizer with the prompt's last token state: only BOS matters (strips the next space).
  if (promptTokens.length === 1 && promptTokens[0] === bos) detok.push(bos);
  const tokens: number[] = [];
  let stopReason: GenerateResult["stopReason"] = "max_tokens";
  let text = "";
  const emit = async (s: string) => {
    if (!s) return;
    text += s;
    if (opts.onText) await opts.onText(s);
  };

  const t0 = performance.now();
  let next = -1;
  try {
    const chunk = engine.maxBatchTokens;
    for (let off = 0; off < promptTokens.length; off += chunk) {
      const part = promptTokens.slice(off, off + chunk);
      const last = off + chunk >= promptTokens.length;
      const [r] = await engine.step([{ seq, tokens: part, sample: last }]);
      if (r.error) throw r.error;
      if (last) next = r.token;
    }
  } catch (e) {
    if (e instanceof ContextFullError) {
      throw new ContextFullError(
        `prompt (${promptTokens.length} tokens) does not fit the dense cache: ${e.message}`,
      );
    }
    throw e;
  }
  const t1 = performance.now();
  while (tokens.length < maxTokens) {
    if ((opts.stopAtEos ?? true) && (next === eos || next === bos)) {
      stopReason = "eos";
      break;
    }
    tokens.push(next);
    await emit(detok.push(next));
    if (tokens.length >= maxTokens) break;
    try {
      const [r] = await engine.step([{ seq, tokens: [next] }]);
      if (r.error) throw r.error;
      next = r.token;
    } catch (e) {
      if (e instanceof ContextFullError) {
        stopReason = "context_full";
        break;
      }
      throw e;
    }
  }
  await emit(detok.flush());
  const t2 = performance.now();
  return {
    text,
    promptTokens,
    tokens,
    stopReason,
    stats: engine.stats(seq),
    prefillSeconds: (t1 - t0) / 1000,
    decodeSeconds: (t2 - t1) / 1000,
  };
}
