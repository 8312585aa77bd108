/**
 * Constrained decoding with xgrammar (the one owner of grammar logic in the gateway):
 *  - the model's vocabulary as xgrammar's TokenizerInfo, built from our tokenizer's token bytes (each
 *    token's exact bytes, written in the byte-level alphabet; control tokens, which have no bytes, are
 *    never allowed), the EOS id as its stop token;
 *  - an output format (format.ts) compiled to a grammar, compiled grammars cached by their schema
 *    (least recently used first out, GRAMMAR_CACHE_ENTRIES at most);
 *  - per response a `TokenConstraint`: a matcher that gives the token mask of each sampling step
 *    (the scheduler hands it to the engine with the step item, runtime/types.ts StepItem.mask) and
 *    accepts each sampled token; once the text is complete JSON the response is done.
 * Whitespace is not free (one line, ", " and ": " separators), so a small model cannot loop on spaces;
 * additional properties are not generated (xgrammar's strict mode) whatever `strict` says; near the end
 * of a response's budget closing tokens are preferred (CLOSE_RESERVE_TOKENS).
 */
import type { CompiledGrammar, GrammarCompiler, GrammarMatcher } from "@mlc-ai/web-xgrammar";
import type { Tokenizer } from "../../runtime/types.ts";
import type { OutputFormat } from "./format.ts";
import { byteLevelAlphabet } from "./alphabet.ts";
import { SchemaProbe } from "./probe.ts";
import { loadXgrammar, type XgrammarModule } from "./xgrammar.ts";

/** Compiled grammars kept for reuse (each holds token-mask tables of the vocabulary's size). */
export const GRAMMAR_CACHE_ENTRIES = 32;

/**
 * With this many tokens or fewer left of a response's budget, a constraint prefers the tokens that close
 * what is open (made of `"`, `}` and `]` only) whenever the grammar allows one, so that the JSON ends within
 * the budget where it can (a small model may otherwise write one string until max_tokens).
 */
export const CLOSE_RESERVE_TOKENS = 48;

/** The bytes of closing tokens. */
const CLOSERS = new Set([0x22, 0x7d, 0x5d]);

/** The schema of a format that xgrammar cannot compile (or a grammar that admits no output). */
export class GrammarError extends Error {
  override name = "GrammarError";
}

/**
 * The per-response side of constrained decoding, as the scheduler uses it (gateway/scheduler/job.ts).
 * Calls alternate: nextMask, then accept of the token sampled under that mask.
 */
export interface TokenConstraint {
  /**
   * The mask of the next sampled token: ceil(vocab / 32) words, bit t % 32 of word t / 32 = t allowed.
   * `remaining`: tokens the response may still produce, this one included (CLOSE_RESERVE_TOKENS).
   */
  nextMask(remaining: number): Promise<Uint32Array>;
  /** Take the sampled token; true when the output is complete (the response ends, reason "stop"). */
  accept(token: number): boolean;
  /** Free the matcher (idempotent). */
  dispose(): void;
}

/** Each token id's bytes in the byte-level alphabet ("" for a control token). */
export function byteLevelVocab(tokenizer: Tokenizer): string[] {
  const alphabet = byteLevelAlphabet();
  const vocab: string[] = new Array(tokenizer.vocabSize);
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    let s = "";
    for (const b of tokenizer.tokenBytes(id)) s += alphabet[b];
    vocab[id] = s;
  }
  return vocab;
}

/** The schema a format constrains to (json_object: any object). */
function schemaOf(format: OutputFormat): Record<string, unknown> {
  return format.type === "json_object" ? { type: "object" } : format.schema;
}

export class Grammars {
  readonly #xg: XgrammarModule;
  readonly #compiler: GrammarCompiler;
  /** The stop tokens for matchers; undefined: the vocabulary's (none; xgrammar refuses an empty override). */
  readonly #stopTokens: number[] | undefined;
  readonly #probe = new SchemaProbe();
  /** The closing tokens (CLOSE_RESERVE_TOKENS), as a mask. */
  readonly #closers: Uint32Array;
  /** Compiled grammars by schema JSON, in use order (a Map iterates oldest first). */
  readonly #cache = new Map<string, Promise<CompiledGrammar>>();

  private constructor(xg: XgrammarModule, compiler: GrammarCompiler, eos: number, closers: Uint32Array) {
    this.#xg = xg;
    this.#compiler = compiler;
    this.#closers = closers;
    this.#stopTokens = eos >= 0 ? [eos] : undefined;
  }

  /**
   * Grammars for a model: `vocabSize` is the engine's (masks have its width; ids past the tokenizer's
   * vocabulary are never allowed).
   */
  static async create(tokenizer: Tokenizer, vocabSize: number): Promise<Grammars> {
    const xg = await loadXgrammar();
    const eos = tokenizer.eosId;
    const info = await xg.TokenizerInfo.createTokenizerInfo(
      byteLevelVocab(tokenizer),
      "byte_level",
      false,
      Math.max(vocabSize, tokenizer.vocabSize),
      eos >= 0 ? [eos] : [],
    );
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
    const closers = new Uint32Array(Math.ceil(Math.max(vocabSize, tokenizer.vocabSize) / 32));
    for (let id = 0; id < tokenizer.vocabSize; id++) {
      const bytes = tokenizer.tokenBytes(id);
      if (bytes.length > 0 && bytes.every((b) => CLOSERS.has(b))) closers[id >> 5] |= 1 << (id & 31);
    }
    return new Grammars(xg, compiler, eos, closers);
  }

  /** Number of compiled grammars held. */
  get cached(): number {
    return this.#cache.size;
  }

  /** The compiled grammar of a format (cached); GrammarError when its schema cannot be compiled. */
  compile(format: OutputFormat): Promise<CompiledGrammar> {
    const key = JSON.stringify(schemaOf(format));
    const hit = this.#cache.get(key);
    if (hit) {
      this.#cache.delete(key);
      this.#cache.set(key, hit);
      return hit;
    }
    const compiled = this.#compile(key);
    this.#cache.set(key, compiled);
    compiled.catch(() => this.#cache.get(key) === compiled && this.#cache.delete(key));
    while (this.#cache.size > GRAMMAR_CACHE_ENTRIES) {
      const [oldest, p] = this.#cache.entries().next().value!;
      this.#cache.delete(oldest);
      // Matchers keep what they need of it (xgrammar shares the compiled data by reference count).
      p.then((c) => c.dispose(), () => {});
    }
    return compiled;
  }

  async #compile(schemaJson: string): Promise<CompiledGrammar> {
    const problem = await this.#probe.check(schemaJson);
    if (problem !== null) {
      throw new GrammarError(`the schema cannot be used for constrained decoding: ${problem}`);
    }
    try {
      // any_whitespace false, indent -1: one line, ", " and ": " separators; strict mode: no extra properties.
      return await this.#compiler.compileJSONSchema(schemaJson, false, -1, undefined, true);
    } catch (e) {
      throw new GrammarError(`the schema cannot be used for constrained decoding: ${describe(e)}`);
    }
  }

  /** Stop the schema probe's Worker. */
  close(): void {
    this.#probe.close();
  }

  /** A constraint for one response (GrammarError for a schema xgrammar refuses). */
  async constraint(format: OutputFormat): Promise<TokenConstraint> {
    const compiled = await this.compile(format);
    const matcher = await this.#xg.GrammarMatcher.createGrammarMatcher(compiled, this.#stopTokens, true);
    return new MatcherConstraint(matcher, this.#closers);
  }
}

/** xgrammar throws C++ exceptions as numbers (pointers) or Errors; say what can be said. */
function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  return typeof e === "string" ? e : "xgrammar refused it (unsupported or contradictory keywords)";
}

class MatcherConstraint implements TokenConstraint {
  #matcher: GrammarMatcher | null;

  constructor(matcher: GrammarMatcher, readonly closers: Uint32Array) {
    this.#matcher = matcher;
  }

  async nextMask(remaining: number): Promise<Uint32Array> {
    const m = this.#live();
    const words = await m.getNextTokenBitmask();
    const mask = new Uint32Array(words.buffer, words.byteOffset, words.length);
    if (remaining > CLOSE_RESERVE_TOKENS) return mask;
    const closing = mask.map((w, i) => w & this.closers[i]);
    return closing.some((w) => w !== 0) ? closing : mask;
  }

  accept(token: number): boolean {
    const m = this.#live();
    if (!m.acceptToken(token)) {
      throw new GrammarError(`the grammar rejects token ${token} sampled under its mask`);
    }
    return m.isTerminated();
  }

  dispose(): void {
    this.#matcher?.dispose();
    this.#matcher = null;
  }

  #live(): GrammarMatcher {
    if (!this.#matcher) throw new GrammarError("the constraint was disposed");
    return this.#matcher;
  }
}

/** The gateway's Grammars, created on first use (loading xgrammar and the vocabulary costs time once). */
export class GrammarSource {
  #grammars: Promise<Grammars> | null = null;

  constructor(readonly tokenizer: Tokenizer, readonly vocabSize: number) {}

  get(): Promise<Grammars> {
    this.#grammars ??= Grammars.create(this.tokenizer, this.vocabSize);
    return this.#grammars;
  }

  /** Stop what the grammars run (the schema probe's Worker), if they were created. */
  async close(): Promise<void> {
    const g = this.#grammars;
    if (g) (await g.catch(() => null))?.close();
  }
}
