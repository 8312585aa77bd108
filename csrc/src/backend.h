/*
 * backend.h — the internal interface between the engine (cache bookkeeping,
 * validation, sampling) and a compute backend (cpu, cuda, later TensorRT-LLM).
 *
 * The engine owns the sequence table and decides, for every token, its
 * stream index and which cache slot it goes to (see cache_geometry below);
 * the backend owns the KV memory and runs the forward pass. A backend never
 * needs to know which policy is active beyond the geometry it is given.
 *
 * Cache geometry of a sequence (all policies in one formula):
 *   S = n_sinks for streaming, 0 for window and dense;  C = capacity;  R = C - S.
 *   Token with stream index i (0-based count of tokens fed before it) lives in
 *     slot(i) = i                      if i < S
 *             = S + (i - S) mod R      otherwise
 *   A query token with stream index t sees
 *     sinks:  i in [0, min(S, t+1))
 *     recent: i in [max(S, t - R + 1), t]     (t itself included)
 *   n(t) = min(t + 1, C) tokens in all; dense requires t < C.
 *   Keys are stored rotated (RoPE) at their stream index i. Re-indexed
 *   positions (cache order 0..n-1, query at n-1) are obtained exactly by
 *   rotating the query: for recent keys the relative distance (n-1) - pos(i)
 *   equals t - i, so the query is rotated at t; for sink keys (pos = i) the
 *   query is rotated at n(t) - 1. Nothing in the cache is moved or re-rotated
 *   on eviction. Angles are computed in double (stream indices grow for ever).
 */
#ifndef SS_BACKEND_H
#define SS_BACKEND_H

#include <stdint.h>

#include "../include/sinkstream.h"
#include "model.h"

typedef struct ss_cache_geometry {
  int32_t n_sinks;  /* S (0 for window / dense) */
  int32_t capacity; /* C */
} ss_cache_geometry;

/* One item of a batched forward pass. */
typedef struct ss_forward_item {
  void *kv;                 /* backend KV storage of the sequence */
  ss_cache_geometry geom;
  int64_t start_index;      /* stream index of tokens[0] (= tokens fed before) */
  int32_t n_tokens;         /* >= 1 */
  const int32_t *tokens;    /* [n_tokens], validated ids */
  int32_t want_logits;      /* 1: write logits after the last token */
} ss_forward_item;

typedef struct ss_backend_ctx ss_backend_ctx;

typedef struct ss_backend_ops {
  const char *name;
  /* Create the backend for `model`; copies/uploads what it needs. */
  int (*init)(const ss_model *model, const ss_engine_params *params, ss_backend_ctx **out);
  void (*destroy)(ss_backend_ctx *ctx);
  /* New empty KV storage for one sequence (no token memory yet). */
  int (*kv_create)(ss_backend_ctx *ctx, ss_cache_geometry geom, void **out_kv);
  /* Make room for slots [0, n_slots) (n_slots <= capacity); keeps contents. */
  int (*kv_reserve)(ss_backend_ctx *ctx, void *kv, int32_t n_slots);
  void (*kv_destroy)(ss_backend_ctx *ctx, void *kv);
  int64_t (*kv_bytes)(ss_backend_ctx *ctx, const void *kv);
  /* Run the forward pass over all items (tokens of all items batched through
   * every matmul). For each item with want_logits, writes vocab floats to
   * logits + k * vocab where k counts the items with want_logits before it.
   * Storage of every item has been reserved for all slots it will write. */
  int (*forward)(ss_backend_ctx *ctx, const ss_forward_item *items, int32_t n_items, float *logits);
} ss_backend_ops;

/* Backends compiled into this library (NULL when not built). */
const ss_backend_ops *ss_backend_cpu(void);
const ss_backend_ops *ss_backend_cuda(void);

#endif /* SS_BACKEND_H */
