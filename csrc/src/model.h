/*
 * model.h — the in-memory model shared by the loaders and the backends.
 *
 * Weight matrices are ss_weight (weights.h): row-major in their own type (F32, F16, BF16, Q8_0,
 * Q4_0), memory-mapped straight from the file when the data is aligned for its type, else copied;
 * ss_model_params.weights converts them at load. Norms and biases are always float32 (copied when the
 * file holds another type). Q/K projection rows come in one of two RoPE layouts (rope_adjacent):
 * the Hugging Face "rotate-half" one (dimension d pairs with d + head_dim/2 within each head; the
 * llama2.c loader permutes Meta's rows into it) or, for GGUF files, Meta's adjacent pairs (2j, 2j+1),
 * used as they are: attention only needs Q and K in the same layout.
 */
#ifndef SS_MODEL_H
#define SS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../include/sinkstream.h"
#include "weights.h"

typedef struct ss_layer_weights {
  const float *attn_norm; /* [dim] */
  ss_weight wq;           /* [n_heads * head_dim, dim] */
  ss_weight wk;           /* [n_kv_heads * head_dim, dim] */
  ss_weight wv;           /* [n_kv_heads * head_dim, dim] */
  const float *bq;        /* [n_heads * head_dim] or NULL (Qwen2 has q/k/v biases) */
  const float *bk;        /* [n_kv_heads * head_dim] or NULL */
  const float *bv;        /* [n_kv_heads * head_dim] or NULL */
  ss_weight wo;           /* [dim, n_heads * head_dim] */
  const float *ffn_norm;  /* [dim] */
  ss_weight w_gate;       /* [hidden_dim, dim]  (HF gate_proj, llama2.c w1) */
  ss_weight w_up;         /* [hidden_dim, dim]  (HF up_proj,   llama2.c w3) */
  ss_weight w_down;       /* [dim, hidden_dim]  (HF down_proj, llama2.c w2) */
} ss_layer_weights;

struct ss_model {
  ss_model_info info;
  ss_weight tok_embeddings;    /* [vocab, dim] */
  const float *final_norm;     /* [dim] */
  ss_weight lm_head;           /* [vocab, dim]; lm_head.data == tok_embeddings.data when tied */
  ss_layer_weights *layers;    /* [n_layers] */
  int32_t rope_adjacent;       /* 1: Q/K rows pair dimensions (2j, 2j+1) (GGUF); 0: (j, j + head_dim/2) */

  /* ownership: every mapping and buffer is released by ss_model_free */
  void *map_base[64];
  size_t map_size[64];
  int32_t n_maps;
  void **owned;
  int32_t n_owned, cap_owned;
  char *path;
};

#endif /* SS_MODEL_H */
