/**
 * Deterministic test texts for tokenizer property tests: words of real prose, runs of spaces and
 * newlines, tabs, CJK, emoji, combining marks, lone surrogates, byte-fallback look-alikes ("<0x41>")
 * and special-token text, mixed by a seeded generator.
 */
import { shared } from "./_shared.ts";

/** A small seeded PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ODD = [
  " ",
  "  ",
  "   ",
  "\n",
  "\n\n",
  "\t",
  " \n ",
  "中文",
  "日本語の",
  "😀",
  "🎉🎉",
  "e\u0301",
  "\ud800",
  "x\udc00y",
  "<0x41>",
  "</s>",
  "<s>",
  "[INST]",
  "<unk>",
  "Ünïcödé",
  "☃",
  "\u00a0",
  "a-b_c.d,e!",
  "1234567890",
];

/** Prose words from the shared MT-Bench prompts. */
export async function proseWords(): Promise<string[]> {
  const text = await Deno.readTextFile(shared("data/mt_bench.jsonl"));
  return text.split(/\s+/).filter((w) => w.length > 0).slice(0, 5000);
}

/** `count` texts of up to `maxParts` parts each. */
export function mixedTexts(words: string[], count: number, maxParts: number, seed = 1): string[] {
  const r = rng(seed);
  const out: string[] = ["", " ", "a", " lead", "trail ", "  two  spaces\n\nnew"];
  while (out.length < count) {
    const parts = 1 + Math.floor(r() * maxParts);
    let s = "";
    for (let i = 0; i < parts; i++) {
      const x = r();
      if (x < 0.6) s += (r() < 0.8 ? " " : "") + words[Math.floor(r() * words.length)];
      else if (x < 0.9) s += ODD[Math.floor(r() * ODD.length)];
      else s += String.fromCodePoint(0x20 + Math.floor(r() * 0x2ff00));
    }
    out.push(s);
  }
  return out;
}
