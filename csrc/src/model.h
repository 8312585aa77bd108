/*
 * model.h — the in-memory model shared by the loaders and the backends.
 *
 * All weights are exposed as row-major float32 on the host, whatever the
 * file held: F32 tensors are memory-mapped straight from the file when the
 * data is 4-byte aligned; F16/BF16 (and misaligned F32) are converted into
 * owned buffers. Q/K projection rows are always in the Hugging Face
 * "rotate-half" layout: within each head, dimension d pairs with d + head_dim/2.
 * (The llama2.c loader permutes Meta's adjacent-pair rows into this layout.)
 */
#ifndef SS_MODEL_H
#define SS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../include/sinkstream.h"

typedef struct ss_layer_weights {
  const float *attn_norm; /* [dim] */
  const float *wq;        /* [n_heads * head_dim, dim] */
  const float *wk;        /* [n_kv_heads * head_dim, dim] */
  const float *wv;        /* [n_kv_heads * head_dim, dim] */
  const float *bq;        /* [n_heads * head_dim] or NULL (Qwen2 has q/k/v biases) */
  const float *bk;        /* [n_kv_heads * head_dim] or NULL */
  const float *bv;        /* [n_kv_heads * head_dim] or NULL */
  const float *wo;        /* [dim, n_heads * head_dim] */
  const float *ffn_norm;  /* [dim] */
  const float *w_gate;    /* [hidden_dim, dim]  (HF gate_proj, llama2.c w1) */
  const float *w_up;      /* [hidden_dim, dim]  (HF up_proj,   llama2.c w3) */
  const float *w_down;    /* [dim, hidden_dim]  (HF down_proj, llama2.c w2) */
} ss_layer_weights;

struct ss_model {
  ss_model_info info;
  const float *tok_embeddings; /* [vocab, dim] */
  const float *final_norm;     /* [dim] */
  const float *lm_head;        /* [vocab, dim]; == tok_embeddings when tied */
  ss_layer_weights *layers;    /* [n_layers] */

  /* ownership: every mapping and buffer is released by ss_model_free */
  void *map_base[64];
  size_t map_size[64];
  int32_t n_maps;
  void **owned;
  int32_t n_owned, cap_owned;
  char *path;
};

#endif /* SS_MODEL_H */
