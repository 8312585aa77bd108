/* gpu_model.h — synthetic Llama-shaped models built in memory for the GPU test and benchmark
 * (no file, no download). Weights uniform in [-scale, scale] from a fixed-seed xorshift, norms
 * around 1. share_layers = 1 points every layer at ONE set of host buffers (the 7B-shaped
 * benchmark: the CUDA backend still uploads each layer into its own device memory, so the bytes
 * read per token are those of a real model; only host RAM and generation time are saved). */
#ifndef SS_GPU_MODEL_H
#define SS_GPU_MODEL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "model_util.h"

static inline uint64_t gm_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

static inline void gm_fill(float *p, size_t n, uint64_t *s, float scale, float center) {
  for (size_t i = 0; i < n; i++) {
    float u = (float)(gm_next(s) >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
    p[i] = center + scale * (2.0f * u - 1.0f);
  }
}

static inline int gm_alloc(ss_model *m, size_t n, float **out, uint64_t *s, float scale, float center) {
  int rc = ss_model_alloc_f32(m, n, "synthetic weights", out);
  if (rc) return rc;
  gm_fill(*out, n, s, scale, center);
  return 0;
}

/* A random F32 matrix [rows, cols] owned by m. */
static inline int gm_matrix(ss_model *m, size_t rows, size_t cols, ss_weight *out, uint64_t *s, float scale) {
  float *p;
  int rc = gm_alloc(m, rows * cols, &p, s, scale, 0.0f);
  if (rc) return rc;
  *out = ss_weight_make(p, SS_DTYPE_F32, (int64_t)rows, (int64_t)cols);
  return 0;
}

/* info: arch .. rms_norm_eps filled by the caller (n_params is computed here). */
static inline int gpu_model_random(const ss_model_info *info, uint64_t seed, float scale, int share_layers,
                                   ss_model **out) {
  *out = NULL;
  ss_model *m = NULL;
  int rc = ss_model_new("synthetic", &m);
  if (rc) return rc;
  m->info = *info;
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  size_t dim = (size_t)info->dim, hid = (size_t)info->hidden_dim, hd = (size_t)info->head_dim;
  size_t qd = (size_t)info->n_heads * hd, kvd = (size_t)info->n_kv_heads * hd, V = (size_t)info->vocab_size;
  float *p;
  rc = gm_matrix(m, V, dim, &m->tok_embeddings, &s, scale * 8.0f);
  if (rc) goto fail;
  rc = gm_matrix(m, V, dim, &m->lm_head, &s, scale);
  if (rc) goto fail;
  rc = gm_alloc(m, dim, &p, &s, 0.1f, 1.0f);
  if (rc) goto fail;
  m->final_norm = p;
  m->layers = calloc((size_t)info->n_layers, sizeof *m->layers);
  if (!m->layers || (rc = ss_model_own(m, m->layers)) != 0) {
    rc = rc ? rc : SS_ERR_OUT_OF_MEMORY;
    goto fail;
  }
  for (int l = 0; l < info->n_layers; l++) {
    ss_layer_weights *w = &m->layers[l];
    if (share_layers && l > 0) {
      *w = m->layers[0];
      continue;
    }
    float *a;
    if ((rc = gm_alloc(m, dim, &a, &s, 0.1f, 1.0f))) goto fail;
    w->attn_norm = a;
    if ((rc = gm_alloc(m, dim, &a, &s, 0.1f, 1.0f))) goto fail;
    w->ffn_norm = a;
    if ((rc = gm_matrix(m, qd, dim, &w->wq, &s, scale))) goto fail;
    if ((rc = gm_matrix(m, kvd, dim, &w->wk, &s, scale))) goto fail;
    if ((rc = gm_matrix(m, kvd, dim, &w->wv, &s, scale))) goto fail;
    if ((rc = gm_matrix(m, dim, qd, &w->wo, &s, scale))) goto fail;
    if ((rc = gm_matrix(m, hid, dim, &w->w_gate, &s, scale))) goto fail;
    if ((rc = gm_matrix(m, hid, dim, &w->w_up, &s, scale))) goto fail;
    if ((rc = gm_matrix(m, dim, hid, &w->w_down, &s, scale))) goto fail;
  }
  m->info.n_params = (int64_t)(2 * V * dim + dim +
                               (size_t)info->n_layers * (2 * dim + qd * dim + 2 * kvd * dim + dim * qd + 3 * hid * dim));
  *out = m;
  return 0;
fail:
  ss_model_free(m);
  return rc;
}

static inline ss_model_info gpu_info_stories260k(void) {
  ss_model_info i;
  memset(&i, 0, sizeof i);
  i.arch = SS_ARCH_LLAMA;
  i.dim = 64;
  i.hidden_dim = 172;
  i.n_layers = 5;
  i.n_heads = 8;
  i.n_kv_heads = 4;
  i.head_dim = 8;
  i.vocab_size = 512;
  i.max_seq_len = 512;
  i.bos_token_id = 1;
  i.eos_token_id = 2;
  i.source_dtype = SS_DTYPE_F32;
  i.rope_theta = 10000.0f;
  i.rms_norm_eps = 1e-5f;
  return i;
}

static inline ss_model_info gpu_info_llama2_7b(void) {
  ss_model_info i;
  memset(&i, 0, sizeof i);
  i.arch = SS_ARCH_LLAMA;
  i.dim = 4096;
  i.hidden_dim = 11008;
  i.n_layers = 32;
  i.n_heads = 32;
  i.n_kv_heads = 32;
  i.head_dim = 128;
  i.vocab_size = 32000;
  i.max_seq_len = 4096;
  i.bos_token_id = 1;
  i.eos_token_id = 2;
  i.source_dtype = SS_DTYPE_F16;
  i.rope_theta = 10000.0f;
  i.rms_norm_eps = 1e-5f;
  return i;
}

#endif
