/**
 * Finding added tokens (e.g. "<s>", "<|im_end|>") in text, the way @huggingface/tokenizers does it:
 * scan left to right, at each position take the longest token that starts there, split the text
 * around it; a token with `lstrip` / `rstrip` trims the whitespace of the text next to it.
 *
 * `sections()` does that over segments (Tokenizer.encodeSegments): tokens are looked for only inside
 * segments marked special (template markup); unmarked segments (message content) stay text, and a
 * token whose text straddles a segment edge is not one. Adjacent text is joined into one section, as
 * it is in a single text.
 */
import type { TextSegment } from "../types.ts";

export interface AddedTokenInfo {
  content: string;
  id: number;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
}

export type Section = { text: string; token?: undefined } | { text?: undefined; token: AddedTokenInfo };

interface TrieNode {
  next: Map<string, TrieNode>;
  token?: AddedTokenInfo;
}

export class AddedTokenSplitter {
  readonly #root: TrieNode = { next: new Map() };
  readonly empty: boolean;

  constructor(tokens: readonly AddedTokenInfo[]) {
    for (const t of tokens) {
      if (t.content.length === 0) continue;
      let node = this.#root;
      for (const ch of t.content.split("")) {
        let n = node.next.get(ch);
        if (!n) node.next.set(ch, n = { next: new Map() });
        node = n;
      }
      node.token = t;
    }
    this.empty = this.#root.next.size === 0;
  }

  /** The longest token starting at `i` (UTF-16 units, as the library matches), or undefined. */
  #match(text: string, i: number): AddedTokenInfo | undefined {
    let node: TrieNode | undefined = this.#root;
    let found: AddedTokenInfo | undefined;
    for (let j = i; j < text.length; j++) {
      node = node.next.get(text[j]);
      if (!node) break;
      if (node.token) found = node.token;
    }
    return found;
  }

  /** Whether any token's text occurs in `text`. */
  occursIn(text: string): boolean {
    if (this.empty) return false;
    for (let i = 0; i < text.length; i++) {
      if (this.#root.next.has(text[i]) && this.#match(text, i)) return true;
    }
    return false;
  }

  /**
   * Whether each special token found in the joined text, scanned as one text, lies inside one special
   * segment — then the segments encode as the joined text does. Content that holds special-token text,
   * or a special token straddling a segment edge, makes it false.
   */
  specialsOnlyInMarkup(segments: readonly TextSegment[]): boolean {
    if (this.empty) return true;
    const text = segments.map((s) => s.text).join("");
    let seg = 0, segStart = 0;
    for (let i = 0; i < text.length;) {
      const t = this.#root.next.has(text[i]) ? this.#match(text, i) : undefined;
      if (!t) {
        i++;
        continue;
      }
      while (segStart + segments[seg].text.length <= i) segStart += segments[seg++].text.length;
      const inside = segments[seg].special && i + t.content.length <= segStart + segments[seg].text.length;
      if (t.special && !inside) return false;
      i += t.content.length;
    }
    return true;
  }

  /** Text and token sections of the joined segments; tokens only from special segments. */
  sections(segments: readonly TextSegment[]): Section[] {
    const out: Section[] = [];
    let text = "";
    for (const seg of segments) {
      if (!seg.special || this.empty) {
        text += seg.text;
        continue;
      }
      const s = seg.text;
      let from = 0;
      for (let i = 0; i < s.length;) {
        const t = this.#root.next.has(s[i]) ? this.#match(s, i) : undefined;
        if (!t) {
          i++;
          continue;
        }
        text += s.slice(from, i);
        if (text !== "") out.push({ text });
        text = "";
        out.push({ token: t });
        i += t.content.length;
        from = i;
      }
      text += s.slice(from);
    }
    if (text !== "") out.push({ text });
    // lstrip / rstrip, in order, as the library applies them.
    for (let i = 0; i < out.length; i++) {
      const t = out[i].token;
      if (!t) continue;
      const before = out[i - 1], after = out[i + 1];
      if (t.lstrip && before?.text !== undefined) before.text = before.text.trimEnd();
      if (t.rstrip && after?.text !== undefined) after.text = after.text.trimStart();
    }
    return out;
  }
}
