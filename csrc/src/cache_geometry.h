/*
 * cache_geometry.h — the one owner of the KV cache geometry of a sequence (all policies in one formula),
 * usable from C (engine.c, backend_cpu.c) and from CUDA (kernels/, through common.cuh; host and device).
 *
 *   S = n_sinks for streaming, 0 for window and dense;  C = capacity;  R = C - S >= 1.
 *   Token with stream index i (0-based count of tokens fed before it) lives in
 *     slot(i) = i                      if i < S
 *             = S + (i - S) mod R      otherwise          (the recent part is a ring of R slots)
 *   A query token with stream index t sees
 *     sinks:  i in [0, min(S, t+1))
 *     recent: i in [max(S, t - R + 1), t]     (t itself included)
 *   n(t) = min(t + 1, C) tokens in all; a dense sequence requires t < C.
 *   The recent keys are consecutive in the ring: from slot(lo) on, wrapping once from slot C-1 to slot S.
 *   A chunk of stream indices [s0, end) leaves in the cache (as token-by-token feeding would) its tokens
 *   i < S and i >= keep_from = max(S, end - R); the others are overwritten by later tokens of the chunk.
 *
 *   Keys are stored rotated (RoPE) at their stream index i. Re-indexed positions (cache order 0..n-1,
 *   query at n-1) are obtained exactly by rotating the query: for recent keys the relative distance
 *   (n-1) - pos(i) equals t - i, so the query is rotated at t; for sink keys (pos = i) the query is rotated
 *   at n(t) - 1. Nothing in the cache is moved or re-rotated on eviction.
 *
 * Units: stream indices are int64_t (they grow for ever); slots and counts within a cache are int32_t
 * (C <= the engine's max capacity). Preconditions everywhere: 0 <= S < C, i and t >= 0.
 * Tested against a token-by-token eviction simulation in tests/test_cache_geometry.c.
 */
#ifndef SS_CACHE_GEOMETRY_H
#define SS_CACHE_GEOMETRY_H

#include <stdint.h>

#if defined(__CUDACC__)
#define SS_GEOM_FN static inline __host__ __device__
#else
#define SS_GEOM_FN static inline
#endif

/* Geometry of one sequence's cache. */
typedef struct ss_cache_geometry {
  int32_t n_sinks;  /* S (0 for window / dense) */
  int32_t capacity; /* C */
} ss_cache_geometry;

/* Cache slot of stream index i. */
SS_GEOM_FN int32_t ss_geom_slot(int64_t i, int32_t S, int32_t C) {
  return i < S ? (int32_t)i : S + (int32_t)((i - S) % (int64_t)(C - S));
}

/* Slot of the key r places after the key in ring slot `slot` (slot >= S, 0 <= r < R): the walk over the
 * recent keys, which wraps once from C-1 to S. */
SS_GEOM_FN int32_t ss_geom_ring_step(int32_t slot, int32_t r, int32_t S, int32_t C) {
  int32_t s = slot + r;
  return s >= C ? s - (C - S) : s;
}

/* Keys from ring slot `slot` on (slot >= S) that lie in consecutive slots before the ring wraps, of n. */
SS_GEOM_FN int64_t ss_geom_ring_run(int32_t slot, int64_t n, int32_t C) {
  return n < (int64_t)(C - slot) ? n : (int64_t)(C - slot);
}

/* n(t): keys query t sees (= tokens cached once t has been fed). */
SS_GEOM_FN int32_t ss_geom_n_visible(int64_t t, int32_t C) {
  return t + 1 < (int64_t)C ? (int32_t)(t + 1) : C;
}

/* Tokens in the cache after n_seen tokens were fed. */
SS_GEOM_FN int32_t ss_geom_n_cached(int64_t n_seen, int32_t C) {
  return n_seen < (int64_t)C ? (int32_t)n_seen : C;
}

/* Sinks query t sees: [0, min(S, t+1)). */
SS_GEOM_FN int32_t ss_geom_n_sinks_visible(int64_t t, int32_t S) {
  return t + 1 < (int64_t)S ? (int32_t)(t + 1) : S;
}

/* First recent key query t sees: max(S, t - R + 1) (the recent keys are [lo, t]; none when t < S). */
SS_GEOM_FN int64_t ss_geom_recent_lo(int64_t t, int32_t S, int32_t C) {
  int64_t lo = t - (int64_t)(C - S) + 1;
  return lo > (int64_t)S ? lo : (int64_t)S;
}

/* First non-sink stream index of a chunk ending at `end` (one past its last index) that stays cached. */
SS_GEOM_FN int64_t ss_geom_keep_from(int64_t end, int32_t S, int32_t C) {
  return ss_geom_recent_lo(end - 1, S, C);
}

/* Whether token i of a chunk ending at `end` is still cached after the chunk. */
SS_GEOM_FN int ss_geom_kept(int64_t i, int64_t end, int32_t S, int32_t C) {
  return i < S || i >= ss_geom_keep_from(end, S, C);
}

/* Whether a dense sequence (no eviction) that has seen n_seen tokens has room for n more. */
SS_GEOM_FN int ss_geom_dense_fits(int64_t n_seen, int64_t n, int32_t C) { return n_seen + n <= (int64_t)C; }

#endif /* SS_CACHE_GEOMETRY_H */
