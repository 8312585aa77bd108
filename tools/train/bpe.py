"""A small SentencePiece-style BPE tokenizer: training, encoding, and its Hugging Face tokenizer.json.

Text is normalised as the runtime's SentencePiece-BPE path expects: a "▁" is prepended and every
space becomes "▁". Words are the runs that start at a "▁"; merges never cross a word boundary, so
applying the merges by rank to the whole normalised string (what tokenizers' BPE model does with no
pre-tokenizer) gives the same pieces as applying them word by word (what encode() here does).
Characters outside the vocabulary fall back to their UTF-8 bytes (<0xNN> tokens).

Vocabulary layout: 0 <unk>, 1 <s>, 2 </s>, 3..258 the 256 byte tokens, then the merged pieces in
merge order, then the single characters seen in training (most frequent first).
"""

from __future__ import annotations

import collections
import json
import re

SPACE = "\u2581"
SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE0 = len(SPECIALS)
_WORD = re.compile(SPACE + "[^" + SPACE + "]*|[^" + SPACE + "]+")


def normalise(text: str) -> str:
    return SPACE + text.replace(" ", SPACE)


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


def merge_pair(parts: list, a: str, b: str) -> list:
    """Every occurrence of the pair (a, b) merged, left to right (as tokenizers' BPE does)."""
    out, i = [], 0
    while i < len(parts):
        if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out


class Bpe:
    def __init__(self, pieces: list[str], merges: list[tuple[str, str]]):
        # pieces: the non-special, non-byte vocabulary in id order (merged pieces, then characters).
        self.pieces = pieces
        self.merges = merges
        self.vocab: dict[str, int] = {}
        for i, s in enumerate(SPECIALS):
            self.vocab[s] = i
        for b in range(256):
            self.vocab[f"<0x{b:02X}>"] = BYTE0 + b
        for i, p in enumerate(pieces):
            self.vocab[p] = BYTE0 + 256 + i
        self.rank = {m: i for i, m in enumerate(merges)}
        self._cache: dict[str, list[int]] = {}
        self.id_to_piece = {i: p for p, i in self.vocab.items()}

    @property
    def size(self) -> int:
        return len(self.vocab)

    def _encode_word(self, w: str) -> list[int]:
        hit = self._cache.get(w)
        if hit is not None:
            return hit
        parts = list(w)
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = self.rank.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            parts = merge_pair(parts, *self.merges[best])
        ids: list[int] = []
        for p in parts:
            v = self.vocab.get(p)
            if v is not None:
                ids.append(v)
            else:
                ids.extend(BYTE0 + b for b in p.encode("utf-8"))
        self._cache[w] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for w in words(text):
            ids.extend(self._encode_word(w))
        return ids

    def decode(self, ids: list[int]) -> str:
        buf = bytearray()
        for i in ids:
            if i < BYTE0:
                continue
            if i < BYTE0 + 256:
                buf.append(i - BYTE0)
            else:
                buf.extend(self.id_to_piece[i].encode("utf-8"))
        s = buf.decode("utf-8", errors="replace").replace(SPACE, " ")
        return s[1:] if s.startswith(" ") else s

    def tokenizer_json(self) -> dict:
        added = [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, s in enumerate(SPECIALS)
        ]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": SPACE},
                {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
            ]},
            "pre_tokenizer": None,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
            },
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ]},
            "model": {
                "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                "vocab": self.vocab,
                "merges": [[a, b] for a, b in self.merges],
            },
        }


def train_bpe(texts: list[str], vocab_size: int, min_char_count: int = 2) -> Bpe:
    """Greedy BPE on word counts: repeatedly merge the most frequent adjacent pair (ties: the pair
    first seen earliest in a fixed order), until the vocabulary (specials + bytes + characters +
    merges) reaches vocab_size."""
    word_counts: collections.Counter[str] = collections.Counter()
    for t in texts:
        word_counts.update(words(t))
    char_counts: collections.Counter[str] = collections.Counter()
    for w, c in word_counts.items():
        for ch in w:
            char_counts[ch] += c
    chars = [ch for ch, c in sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_char_count]
    n_merges = vocab_size - len(SPECIALS) - 256 - len(chars)
    if n_merges < 1:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for merges ({len(chars)} characters)")
    charset = set(chars)
    # Each distinct word as a list of symbols; characters outside the vocabulary block merges.
    seqs = [[ch if ch in charset else None for ch in w] for w in word_counts]
    counts = list(word_counts.values())
    merges: list[tuple[str, str]] = []
    pair_counts: collections.Counter[tuple[str, str]] = collections.Counter()
    where: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for wi, s in enumerate(seqs):
        for a, b in zip(s, s[1:]):
            if a is not None and b is not None:
                pair_counts[(a, b)] += counts[wi]
                where[(a, b)].add(wi)
    for _ in range(n_merges):
        if not pair_counts:
            break
        best = max(pair_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pair_counts[best] < 2:
            break
        merges.append(best)
        a, b = best
        for wi in list(where[best]):
            s = seqs[wi]
            c = counts[wi]
            for x, y in zip(s, s[1:]):
                if x is not None and y is not None:
                    pair_counts[(x, y)] -= c
                    if pair_counts[(x, y)] <= 0:
                        del pair_counts[(x, y)]
            out = merge_pair(s, a, b)
            seqs[wi] = out
            for x, y in zip(out, out[1:]):
                if x is not None and y is not None:
                    pair_counts[(x, y)] += c
                    where[(x, y)].add(wi)
        where.pop(best, None)
    pieces = [a + b for a, b in merges]
    seen = set()
    uniq = []
    for p in pieces + chars:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return Bpe(uniq, merges)


def save(bpe: Bpe, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(bpe.tokenizer_json(), f, ensure_ascii=False, indent=1)
