/*
 * backend.h — the internal interface between the engine (cache bookkeeping,
 * validation, sampling) and a compute backend (cpu, cuda, later TensorRT-LLM).
 *
 * The engine owns the sequence table and decides, for every token, its
 * stream index; the backend owns the KV memory and runs the forward pass,
 * placing and reading keys by the geometry it is given (cache_geometry.h:
 * slots, visible ranges, the chunk keep rule). A backend never needs to know
 * which policy is active beyond that geometry.
 */
#ifndef SS_BACKEND_H
#define SS_BACKEND_H

#include <stdint.h>

#include "../include/sinkstream.h"
#include "cache_geometry.h"
#include "model.h"

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
  /* Bytes of KV memory held by `kv` now, and bytes one cached token takes (K and V of every layer). */
  int64_t (*kv_bytes)(ss_backend_ctx *ctx, const void *kv);
  int64_t (*kv_bytes_per_token)(ss_backend_ctx *ctx);
  /* Run the forward pass over all items (tokens of all items batched through
   * every matmul). For each item with want_logits, writes vocab floats to
   * logits + k * vocab where k counts the items with want_logits before it.
   * Storage of every item has been reserved for all slots it will write. */
  int (*forward)(ss_backend_ctx *ctx, const ss_forward_item *items, int32_t n_items, float *logits);
} ss_backend_ops;

/* The backend an engine runs and its context (*ctx), for backend-specific entry points
 * (backend_cuda.h); NULL for a NULL engine. */
const ss_backend_ops *ss_engine_backend(const ss_engine *e, ss_backend_ctx **ctx);

/* Backends compiled into this library (NULL when not built). */
const ss_backend_ops *ss_backend_cpu(void);
const ss_backend_ops *ss_backend_cuda(void);

#endif /* SS_BACKEND_H */
