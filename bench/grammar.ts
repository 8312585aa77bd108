/**
 * Structured outputs: what constrained decoding costs, and whom.
 *
 *  1. Event-loop cost of the grammar work (gateway/grammar/), for the served vocabulary and a 32K one
 *     (the Llama 2 tokenizer): building xgrammar's vocabulary, compiling a schema, and the mask of one
 *     token (replaying a valid JSON text through the matcher, mask + accept per token).
 *  2. Decode ms/token of unconstrained sequences in a batch of `--batch` sequences, side by side in one
 *     run, rounds interleaved: alone; with one more unconstrained neighbour; with one constrained neighbour
 *     (its mask made on the event loop before each step, as the scheduler does, and applied in the engine's
 *     sampler). The neighbour's extra forward work is the same in the last two: their difference is what
 *     masking costs the others.
 *
 *   flock /tmp/sinkstream-bench.lock deno run -A bench/grammar.ts [--model PATH] [--batch 4] [--steps 64]
 *     [--rounds 12] [--threads 1] [--vocab32k PATH] [--json]
 */
import { parseArgs } from "node:util";
import { createEngine, loadModel } from "../runtime/native_engine.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import type { Tokenizer } from "../runtime/types.ts";
import { Grammars, type TokenConstraint } from "../gateway/grammar/grammars.ts";
import type { OutputFormat } from "../gateway/grammar/format.ts";
import { intFlag, percentile } from "./lib.ts";
import { PET_SCHEMA } from "./pet_schema.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    batch: { type: "string", default: "4" },
    steps: { type: "string", default: "64" },
    rounds: { type: "string", default: "12" },
    threads: { type: "string", default: "1" },
    vocab32k: { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const shared = new URL("../../shared/", import.meta.url).pathname;
const modelPath = args.model ?? `${shared}models/stories260K/stories260K.bin`;
const vocab32k = args.vocab32k ?? `${shared}tokenizers/llama2/tokenizer.bin`;
const batch = intFlag("batch", args.batch, 1, 256);
const steps = intFlag("steps", args.steps, 4, 4096);
const rounds = intFlag("rounds", args.rounds, 1, 1000);
const threads = intFlag("threads", args.threads, 1, 256);

const SCHEMA = PET_SCHEMA;
const FORMAT: OutputFormat = { type: "json_schema", name: "pet", schema: SCHEMA, strict: true };
const TEXT = '{"name": "Lily the cat", "age": 7, "mood": "happy", "toys": ["ball", "red string"], ' +
  '"home": {"town": "Oakville", "rooms": 4}}';

interface GrammarCost {
  vocab: number;
  createMs: number;
  /** The first compile of the process (json_object, the probe Worker's start included) and its loop stall. */
  firstCompileMs: number;
  firstStallMs: number;
  /** Compiling the 5-field schema, and the longest event-loop stall meanwhile. */
  compileMs: number;
  compileStallMs: number;
  masks: number;
  maskUsP50: number;
  maskUsP99: number;
  /** Resident memory added per compiled grammar (8 distinct schemas compiled), MiB. */
  mibPerGrammar: number;
}

/** How long `f` takes, and the longest the event loop went without running a 1 ms timer meanwhile. */
async function timedStall(f: () => Promise<unknown>): Promise<{ ms: number; stallMs: number }> {
  let last = performance.now();
  let stall = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    stall = Math.max(stall, now - last);
    last = now;
  }, 1);
  const t = performance.now();
  await f();
  const ms = performance.now() - t;
  clearInterval(tick);
  return { ms, stallMs: Math.max(stall, performance.now() - last) };
}

/** Section 1 for one tokenizer: the JSON text replayed token by token (greedy longest piece). */
async function grammarCost(tokenizer: Tokenizer, vocab: number): Promise<GrammarCost> {
  const t = performance.now();
  const grammars = await Grammars.create(tokenizer, vocab);
  const createMs = performance.now() - t;
  // The first compile starts the schema probe's Worker.
  const first = await timedStall(() => grammars.compile({ type: "json_object" }));
  const pet = await timedStall(() => grammars.compile(FORMAT));
  // Tokens of the text: at each position the longest token whose bytes match (every byte has one).
  const bytes = new TextEncoder().encode(TEXT);
  const pieces = new Map<string, number>();
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const b = tokenizer.tokenBytes(id);
    if (b.length > 0) pieces.set(b.join(","), id);
  }
  const ids: number[] = [];
  for (let i = 0; i < bytes.length;) {
    let n = Math.min(16, bytes.length - i);
    while (n > 1 && !pieces.has(bytes.subarray(i, i + n).join(","))) n--;
    ids.push(pieces.get(bytes.subarray(i, i + n).join(","))!);
    i += n;
  }
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c = await grammars.constraint(FORMAT);
    for (const id of ids) {
      const t0 = performance.now();
      await c.nextMask(Infinity);
      c.accept(id);
      times.push((performance.now() - t0) * 1000);
    }
    c.dispose();
  }
  const rss0 = Deno.memoryUsage().rss;
  for (let i = 0; i < 8; i++) {
    await grammars.compile({
      type: "json_schema",
      name: "pet",
      strict: true,
      schema: { ...SCHEMA, properties: { ...SCHEMA.properties, [`x${i}`]: { type: "integer" } } },
    });
  }
  const mibPerGrammar = (Deno.memoryUsage().rss - rss0) / 8 / (1 << 20);
  grammars.close();
  return {
    vocab,
    mibPerGrammar,
    createMs,
    firstCompileMs: first.ms,
    firstStallMs: first.stallMs,
    compileMs: pet.ms,
    compileStallMs: pet.stallMs,
    masks: times.length,
    maskUsP50: percentile(times, 50),
    maskUsP99: percentile(times, 99),
  };
}

type Mode = "alone" | "+ unconstrained neighbour" | "+ constrained neighbour";
const MODES: Mode[] = ["alone", "+ unconstrained neighbour", "+ constrained neighbour"];

const model = await loadModel(modelPath);
const engine = await createEngine(model, { threads, maxSequences: batch + 8 });
const tokenizer = await loadTokenizer(modelPath);
const costs = [await grammarCost(tokenizer, engine.info.vocabSize)];
const big = await loadTokenizer(vocab32k).catch(() => null);
if (big) costs.push(await grammarCost(big, big.vocabSize));

// Section 2. Every round runs the three modes in turn on fresh sequences, `steps` decode steps each.
const grammars = await Grammars.create(tokenizer, engine.info.vocabSize);
const prompt = [tokenizer.bosId, ...tokenizer.encode("Lily went to the park with her dog.", { bos: false })];
const perToken: Record<Mode, number[]> = {
  alone: [],
  "+ unconstrained neighbour": [],
  "+ constrained neighbour": [],
};
const maskUs: number[] = [];

async function round(mode: Mode): Promise<void> {
  const seqs = Array.from({ length: batch }, () => engine.createSequence({ capacity: 512 }));
  const neighbour = mode === "alone"
    ? null
    : engine.createSequence({ capacity: 512, temperature: 1, seed: 1 });
  let constraint: TokenConstraint | null = mode === "+ constrained neighbour"
    ? await grammars.constraint(FORMAT)
    : null;
  const all = neighbour === null ? seqs : [...seqs, neighbour];
  let results = await engine.step(all.map((seq) => ({ seq, tokens: prompt })));
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    let mask: Uint32Array | undefined;
    if (constraint) {
      const m0 = performance.now();
      mask = await constraint.nextMask(Infinity);
      maskUs.push((performance.now() - m0) * 1000);
    }
    results = await engine.step(all.map((seq, i) => ({
      seq,
      tokens: [results[i].token],
      mask: seq === neighbour ? mask : undefined,
    })));
    perToken[mode].push(performance.now() - t0);
    if (constraint && constraint.accept(results[all.length - 1].token)) {
      constraint.dispose(); // complete: the neighbour starts another object on its sequence
      constraint = await grammars.constraint(FORMAT);
    }
  }
  constraint?.dispose();
  for (const seq of all) engine.freeSequence(seq);
}

for (let r = 0; r < rounds; r++) {
  for (const mode of MODES) await round(mode);
}

const summary = {
  date: new Date().toISOString(),
  model: modelPath,
  batch,
  steps,
  rounds,
  threads,
  grammar: costs,
  decode: MODES.map((mode) => ({
    mode,
    msPerTokenP50: percentile(perToken[mode], 50),
    msPerTokenP90: percentile(perToken[mode], 90),
    mean: perToken[mode].reduce((a, b) => a + b, 0) / perToken[mode].length,
  })),
  maskUsP50: percentile(maskUs, 50),
  maskUsP99: percentile(maskUs, 99),
};
if (args.json) console.log(JSON.stringify(summary));
else {
  console.log(`grammar work on the event loop (${TEXT.length}-byte JSON text, schema with 5 fields)`);
  console.log(
    "| vocab | create (ms) | first compile (ms) / loop stall | compile (ms) / loop stall | mask + accept p50 (µs) | p99 (µs) | MiB per grammar |",
  );
  const f = (x: number) => x.toFixed(1);
  for (const c of costs) {
    console.log(
      `| ${c.vocab} | ${f(c.createMs)} | ${f(c.firstCompileMs)} / ${f(c.firstStallMs)} | ${
        f(c.compileMs)
      } / ${f(c.compileStallMs)} | ${f(c.maskUsP50)} | ${f(c.maskUsP99)} | ${c.mibPerGrammar.toFixed(2)} |`,
    );
  }
  console.log(
    `\ndecode of ${batch} unconstrained sequences, ms per token (= per step), ${rounds} x ${steps} steps each`,
  );
  console.log("| batch | p50 | p90 | mean |");
  for (const d of summary.decode) {
    console.log(
      `| ${batch} ${d.mode} | ${d.msPerTokenP50.toFixed(3)} | ${d.msPerTokenP90.toFixed(3)} | ${
        d.mean.toFixed(3)
      } |`,
    );
  }
  console.log(
    `\nneighbour's mask per step: p50 ${summary.maskUsP50.toFixed(1)} µs, p99 ${
      summary.maskUsP99.toFixed(1)
    } µs`,
  );
}
grammars.close();
engine.close();
model.close();
