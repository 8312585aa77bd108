/**
 * llama2.c's merge rule, fast: repeatedly merge the adjacent pair whose concatenation is the
 * best-scoring vocabulary piece (leftmost on ties) until no pair merges.
 *
 * Three things make it linear in practice (the result is the rule's, id for id):
 *  - Independent chunks. Every token a merge makes is a vocabulary piece, and its bytes are the
 *    bytes of the initial tokens it covers. So a merge can never cross a boundary between two
 *    initial tokens whose last and first bytes (x, y) occur next to each other in no piece of the
 *    vocabulary. Merges on either side of such a boundary never see each other, and running the rule
 *    on each side alone gives the same tokens (the best pair of a side is the best pair of the whole
 *    whenever it is taken, and ties between sides go to the left one, as they do in one run). For
 *    SentencePiece vocabularies, whose pieces hold spaces only at the front, every " word" is a chunk.
 *  - A memo of merged chunks (texts repeat their words).
 *  - A heap of candidate pairs inside a chunk, so a long chunk (text without spaces) is O(n log n).
 */

/** Chunks up to this many initial tokens are memoised. */
const MEMO_MAX_TOKENS = 32;
/** The memo is dropped when it reaches this many entries (bounded memory whatever the input). */
const MEMO_MAX_ENTRIES = 1 << 16;

export class ScoreMerger {
  readonly #strs: readonly string[];
  readonly #lookup: ReadonlyMap<string, number>;
  readonly #scores: Float32Array;
  /** [x * 256 + y] = 1 when bytes x, y are adjacent somewhere in a piece. */
  readonly #adjacent = new Uint8Array(65536);
  /** First / last byte of each piece; -1 for an empty piece (never a chunk boundary). */
  readonly #first: Int16Array;
  readonly #last: Int16Array;
  readonly #memo = new Map<string, readonly number[]>();
  readonly #wideIds: boolean;

  /** strs: each piece as a binary string (one char per byte); lookup: piece -> id (first occurrence). */
  constructor(strs: readonly string[], lookup: ReadonlyMap<string, number>, scores: Float32Array) {
    this.#strs = strs;
    this.#lookup = lookup;
    this.#scores = scores;
    this.#first = new Int16Array(strs.length).fill(-1);
    this.#last = new Int16Array(strs.length).fill(-1);
    for (let id = 0; id < strs.length; id++) {
      const s = strs[id];
      if (s.length === 0) continue;
      this.#first[id] = s.charCodeAt(0);
      this.#last[id] = s.charCodeAt(s.length - 1);
      for (let i = 0; i + 1 < s.length; i++) this.#adjacent[s.charCodeAt(i) * 256 + s.charCodeAt(i + 1)] = 1;
    }
    this.#wideIds = strs.length > 0xffff;
  }

  /** Merge the initial tokens `ids` and append the result to `out`. */
  encode(ids: readonly number[], out: number[]): void {
    let start = 0;
    for (let i = 1; i <= ids.length; i++) {
      if (i < ids.length && !this.#independent(ids[i - 1], ids[i])) continue;
      this.#chunk(ids, start, i, out);
      start = i;
    }
  }

  #independent(left: number, right: number): boolean {
    const x = this.#last[left], y = this.#first[right];
    return x >= 0 && y >= 0 && this.#adjacent[x * 256 + y] === 0;
  }

  #chunk(ids: readonly number[], from: number, to: number, out: number[]): void {
    if (to - from === 1) {
      out.push(ids[from]);
      return;
    }
    if (to - from > MEMO_MAX_TOKENS) {
      for (const id of this.#merge(ids.slice(from, to))) out.push(id);
      return;
    }
    let key = "";
    for (let i = from; i < to; i++) {
      key += this.#wideIds
        ? String.fromCharCode(ids[i] >>> 16, ids[i] & 0xffff)
        : String.fromCharCode(ids[i]);
    }
    let merged = this.#memo.get(key);
    if (!merged) {
      merged = this.#merge(ids.slice(from, to));
      if (this.#memo.size >= MEMO_MAX_ENTRIES) this.#memo.clear();
      this.#memo.set(key, merged);
    }
    for (const id of merged) out.push(id);
  }

  /** The merge rule on one chunk, with a heap of candidate pairs (stale entries skipped by version). */
  #merge(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    const tok = Int32Array.from(ids);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const strs = this.#strs;
    const heap = new PairHeap();
    const consider = (l: number) => {
      const r = next[l];
      if (r < 0) return;
      const id = this.#lookup.get(strs[tok[l]] + strs[tok[r]]);
      if (id === undefined) return;
      const score = this.#scores[id];
      if (!(score > -1e10)) return; // llama2.c starts its best score at -1e10
      heap.push({ score, left: l, right: r, lv: version[l], rv: version[r], id });
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    for (;;) {
      const c = heap.pop();
      if (!c) break;
      const l = c.left;
      const r = next[l];
      if (!alive[l] || r !== c.right || version[l] !== c.lv || version[r] !== c.rv) continue;
      tok[l] = c.id;
      version[l]++;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      if (prev[l] >= 0) consider(prev[l]);
      consider(l);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]);
    return out;
  }
}

interface Candidate {
  score: number;
  left: number;
  right: number;
  lv: number;
  rv: number;
  id: number;
}

/** Max-heap by score, then min by left position (the leftmost pair wins ties, as in llama2.c). */
class PairHeap {
  #a: Candidate[] = [];
  #before(x: Candidate, y: Candidate): boolean {
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }
  push(c: Candidate): void {
    const a = this.#a;
    a.push(c);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#before(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): Candidate | undefined {
    const a = this.#a;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.#before(a[l], a[m])) m = l;
        if (r < a.length && this.#before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}
