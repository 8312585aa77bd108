/**
 * llama.cpp as a reference, through node-llama-cpp (pinned in deno.json, its prebuilt CPU binary, never
 * built here): greedy decoding from given token ids of a GGUF file, timed, for the cross-check test
 * (tests/tools/llamacpp_crosscheck.test.ts) and the side-by-side benchmark (bench/vs_llamacpp.ts).
 */
import { getLlama, type Llama, LlamaLogLevel, type Token } from "node-llama-cpp";

let llama: Promise<Llama> | null = null;

/** The llama.cpp instance (CPU only, prebuilt; threads = maxThreads exactly). */
function instance(maxThreads: number): Promise<Llama> {
  llama ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads });
  return llama;
}

export interface LlamaCppRun {
  /** Generated tokens (not including the prompt). */
  tokens: number[];
  /** How llama.cpp itself tokenizes `text` (when given), with BOS. */
  tokenized?: number[];
  /** Seconds of the prompt evaluation and of the decode steps. */
  promptSeconds: number;
  decodeSeconds: number;
}

export interface LlamaCppOptions {
  /** Prompt token ids (BOS included, as sinkstream feeds them). */
  prompt: number[];
  /** Tokens to generate greedily. */
  maxTokens: number;
  threads: number;
  /** Context size (default 512: nothing is evicted for short runs). */
  contextSize?: number;
  /** Also tokenize this text with llama.cpp's own tokenizer. */
  text?: string;
}

/** Greedy tokens of a GGUF file in llama.cpp. */
export async function llamaCppGreedy(path: string, opts: LlamaCppOptions): Promise<LlamaCppRun> {
  const l = await instance(opts.threads);
  const model = await l.loadModel({ modelPath: path, gpuLayers: 0 });
  try {
    const ctx = await model.createContext({
      contextSize: opts.contextSize ?? 512,
      batchSize: Math.max(64, opts.prompt.length),
      threads: opts.threads,
    });
    try {
      const seq = ctx.getSequence();
      const tokens: number[] = [];
      const t0 = performance.now();
      let t1 = t0;
      for await (const t of seq.evaluate(opts.prompt as Token[], { temperature: 0 })) {
        if (tokens.length === 0) t1 = performance.now();
        tokens.push(t as number);
        if (tokens.length >= opts.maxTokens) break;
      }
      const t2 = performance.now();
      const tokenized = opts.text === undefined
        ? undefined
        : [model.tokens.bos as number, ...model.tokenize(opts.text)];
      return {
        tokens,
        tokenized: tokenized as number[] | undefined,
        promptSeconds: (t1 - t0) / 1000,
        decodeSeconds: (t2 - t1) / 1000,
      };
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}
