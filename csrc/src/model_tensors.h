/*
 * model_tensors.h — the tensors of a model as one table, in the names of GGUF's llama architecture: the
 * GGUF loader fills a model through it, the export (ss_model_export_*) writes it, and conversion at
 * load (ss_model_params.weights) and the model's weight figures walk it. Internal to the library.
 *
 *   token_embd.weight                 matrix [vocab, dim]
 *   blk.<i>.attn_norm.weight          vector [dim]
 *   blk.<i>.attn_q.weight             matrix [q_dim, dim]   (Q: RoPE layout matters)
 *   blk.<i>.attn_k.weight             matrix [kv_dim, dim]  (K: RoPE layout matters)
 *   blk.<i>.attn_v.weight             matrix [kv_dim, dim]
 *   blk.<i>.attn_output.weight        matrix [dim, q_dim]
 *   blk.<i>.ffn_norm.weight           vector [dim]
 *   blk.<i>.ffn_gate.weight           matrix [hidden, dim]
 *   blk.<i>.ffn_up.weight             matrix [hidden, dim]
 *   blk.<i>.ffn_down.weight           matrix [dim, hidden]
 *   output_norm.weight                vector [dim]
 *   output.weight                     matrix [vocab, dim]   (only when not tied to token_embd)
 */
#ifndef SS_MODEL_TENSORS_H
#define SS_MODEL_TENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct ss_model_tensor {
  char name[64];
  ss_weight *w;      /* the matrix slot, or NULL for a vector */
  const float **vec; /* the vector slot (w == NULL) */
  int64_t rows, cols; /* shape (vectors: rows = 1, cols = length) */
  int qk;            /* 1 for the Q and K projections */
  int classifier;    /* 1 for the matrix the logits come from (output.weight, or token_embd when tied) */
} ss_model_tensor;

/* Tensors of the table for m's shape; `tied`: no output.weight. */
int32_t ss_model_tensor_count(const ss_model *m, int tied);
/* Entry i (0 <= i < count) with its slot in m. */
void ss_model_tensor_at(ss_model *m, int32_t i, ss_model_tensor *out);
/* Whether m's classifier is its embedding table. */
int ss_model_tied(const ss_model *m);

/* The type matrix t gets when a model is converted to (or exported as) `target`: ss_storage_dtype, except
 * that at Q4_0 the classifier gets Q8_0 (llama.cpp's quantizer also keeps its output tensor at higher
 * precision; 4-bit logits cost 13% perplexity on stories260K, decision D??). */
int32_t ss_model_tensor_dtype(const ss_model_tensor *t, int32_t target);

/* The ss_dtype with the most elements (F32 on a tie with it or when all are 0). */
int32_t ss_dominant_dtype(const size_t counts[SS_N_DTYPES]);
/* Convert every matrix whose type differs from ss_storage_dtype(target, cols) (conversion at load). */
int ss_model_convert_weights(ss_model *m, int32_t target);
/* Fill info.weight_dtype and info.weight_bytes from the matrices as they are now. */
void ss_model_finish_info(ss_model *m);

/* Source row of rotate-half row `row` in the adjacent-pair layout (within a head of head_dim rows:
 * j -> 2j, head_dim/2 + j -> 2j + 1). The one owner of the Q/K permutation. */
static inline int64_t ss_rope_adjacent_row(int64_t row, int head_dim) {
  int64_t h = row / head_dim, j = row % head_dim, half = head_dim / 2;
  return h * head_dim + (j < half ? 2 * j : 2 * (j - half) + 1);
}
/* Inverse: rotate-half row of adjacent-pair row `row`. */
static inline int64_t ss_rope_half_row(int64_t row, int head_dim) {
  int64_t h = row / head_dim, j = row % head_dim, half = head_dim / 2;
  return h * head_dim + (j % 2 == 0 ? j / 2 : half + j / 2);
}

#endif /* SS_MODEL_TENSORS_H */
