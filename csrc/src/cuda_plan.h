/*
 * cuda_plan.h — the CUDA backend's pure host-side planning math (no CUDA headers), shared by
 * backend_cuda.c and the CPU-only unit test tests/test_cuda_plan.c:
 *   - the flash-decoding split of the attention key range,
 *   - the size of the split partials workspace that every plan must fit in,
 *   - the layout of the per-step metadata buffer,
 *   - the key under which a captured decode graph is cached and replayed.
 */
#ifndef SS_CUDA_PLAN_H
#define SS_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

/* Attention split of one step: n_splits parts of split_len keys cover [0, max_n). */
typedef struct ss_cuda_split {
  int n_splits, split_len;
  int64_t max_n; /* the key bound the split covers (rounded up to 512) */
} ss_cuda_split;

/* max_n: the largest visible-key count of any token of the step. The bound is rounded up to a
 * multiple of 512 so that a growing stream keeps the same launch shape (and captured graph) for
 * 512 steps. Enough (token, head, split) blocks to fill the device twice over, >= 64 keys a
 * split, split_len a multiple of 32. */
static inline ss_cuda_split ss_cuda_plan_split(int T, int n_heads, int n_sms, int64_t max_n) {
  ss_cuda_split p;
  if (max_n < 1) max_n = 1;
  max_n = (max_n + 511) / 512 * 512;
  int64_t per = (int64_t)T * n_heads;
  if (per < 1) per = 1;
  int64_t want = (2 * (int64_t)n_sms + per - 1) / per;
  int64_t max_splits = (max_n + 63) / 64;
  if (want > max_splits) want = max_splits;
  if (want < 1) want = 1;
  int64_t len = (max_n + want - 1) / want;
  len = (len + 31) / 32 * 32;
  p.split_len = (int)len;
  p.n_splits = (int)((max_n + len - 1) / len);
  p.max_n = max_n;
  return p;
}

/* Floats of the partials workspace: every plan for T <= max_tokens fits, because
 * T * n_heads * n_splits <= 2 * n_sms + T * n_heads - 1 by the choice above. */
static inline size_t ss_cuda_part_floats(int max_tokens, int n_heads, int n_sms, int head_dim) {
  return ((size_t)2 * (size_t)n_sms + (size_t)max_tokens * (size_t)n_heads) * ((size_t)head_dim + 2);
}

static inline size_t ss_cuda_plan_part_need(int T, int n_heads, int head_dim, ss_cuda_split p) {
  return (size_t)T * (size_t)n_heads * (size_t)p.n_splits * ((size_t)head_dim + 2);
}

/* Layout of the metadata buffer of a step (byte offsets, each array 16-byte aligned). */
typedef struct ss_cuda_meta_layout {
  size_t items, tokens, tok_item, want_rows, total;
} ss_cuda_meta_layout;

static inline size_t ss_cuda_align16(size_t n) { return (n + 15) & ~(size_t)15; }

static inline ss_cuda_meta_layout ss_cuda_meta_layout_for(size_t item_size, int n_items, int T, int n_want) {
  ss_cuda_meta_layout L;
  L.items = 0;
  L.tokens = ss_cuda_align16((size_t)n_items * item_size);
  L.tok_item = L.tokens + ss_cuda_align16((size_t)T * 4);
  L.want_rows = L.tok_item + ss_cuda_align16((size_t)T * 4);
  L.total = L.want_rows + ss_cuda_align16((size_t)n_want * 4);
  return L;
}

/* A captured decode graph bakes in the step's launch shapes and the metadata offsets (all
 * functions of these fields); tokens, positions and cache pointers are read from the metadata
 * buffer when the graph runs, so streams may advance and KV buffers may move between replays.
 * Buffers whose address is baked in (activations, logits) invalidate every graph when they are
 * reallocated. */
typedef struct ss_cuda_graph_key {
  int T, n_items, n_want, n_splits, split_len;
} ss_cuda_graph_key;

static inline int ss_cuda_graph_key_eq(ss_cuda_graph_key a, ss_cuda_graph_key b) {
  return a.T == b.T && a.n_items == b.n_items && a.n_want == b.n_want && a.n_splits == b.n_splits &&
         a.split_len == b.split_len;
}

#endif /* SS_CUDA_PLAN_H */
