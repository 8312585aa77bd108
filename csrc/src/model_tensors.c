/* model_tensors.c — the model's tensor table (model_tensors.h), conversion of its matrices at load and
 * its weight figures. */
#include "model_tensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "model_util.h"

#define PER_LAYER 9

int ss_model_tied(const ss_model *m) { return m->lm_head.data == m->tok_embeddings.data; }

int32_t ss_model_tensor_count(const ss_model *m, int tied) { return 2 + PER_LAYER * m->info.n_layers + !tied; }

static void matrix(ss_model_tensor *t, const char *name, ss_weight *w, int64_t rows, int64_t cols, int qk) {
  snprintf(t->name, sizeof t->name, "%s", name);
  t->w = w;
  t->vec = NULL;
  t->rows = rows;
  t->cols = cols;
  t->qk = qk;
  t->classifier = 0;
}

static void vector(ss_model_tensor *t, const char *name, const float **v, int64_t n) {
  snprintf(t->name, sizeof t->name, "%s", name);
  t->w = NULL;
  t->vec = v;
  t->rows = 1;
  t->cols = n;
  t->qk = 0;
  t->classifier = 0;
}

void ss_model_tensor_at(ss_model *m, int32_t i, ss_model_tensor *out) {
  const ss_model_info *in = &m->info;
  int64_t dim = in->dim, hid = in->hidden_dim, V = in->vocab_size, qd = (int64_t)in->n_heads * in->head_dim,
          kvd = (int64_t)in->n_kv_heads * in->head_dim;
  int32_t last = 1 + PER_LAYER * in->n_layers;
  if (i == 0) {
    matrix(out, "token_embd.weight", &m->tok_embeddings, V, dim, 0);
    out->classifier = ss_model_tied(m);
    return;
  }
  if (i == last) return vector(out, "output_norm.weight", &m->final_norm, dim);
  if (i > last) {
    matrix(out, "output.weight", &m->lm_head, V, dim, 0);
    out->classifier = 1;
    return;
  }
  int32_t l = (i - 1) / PER_LAYER, k = (i - 1) % PER_LAYER;
  ss_layer_weights *w = &m->layers[l];
  static const char *const names[PER_LAYER] = {"attn_norm", "attn_q", "attn_k",   "attn_v",  "attn_output",
                                               "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
  char name[64];
  snprintf(name, sizeof name, "blk.%d.%s.weight", (int)l, names[k]);
  switch (k) {
    case 0: return vector(out, name, &w->attn_norm, dim);
    case 1: return matrix(out, name, &w->wq, qd, dim, 1);
    case 2: return matrix(out, name, &w->wk, kvd, dim, 1);
    case 3: return matrix(out, name, &w->wv, kvd, dim, 0);
    case 4: return matrix(out, name, &w->wo, dim, qd, 0);
    case 5: return vector(out, name, &w->ffn_norm, dim);
    case 6: return matrix(out, name, &w->w_gate, hid, dim, 0);
    case 7: return matrix(out, name, &w->w_up, hid, dim, 0);
    default: return matrix(out, name, &w->w_down, dim, hid, 0);
  }
}

int32_t ss_model_tensor_dtype(const ss_model_tensor *t, int32_t target) {
  int32_t want = t->classifier && target == SS_DTYPE_Q4_0 ? SS_DTYPE_Q8_0 : target;
  return ss_storage_dtype(want, t->cols);
}

int32_t ss_dominant_dtype(const size_t counts[SS_N_DTYPES]) {
  int32_t best = SS_DTYPE_F32;
  for (int32_t d = 0; d < SS_N_DTYPES; d++)
    if (counts[d] > counts[best]) best = d;
  return best;
}

/* Give the pages of [p, p + n) of one of m's mappings back (they were only read to convert them). */
static void release_mapped(const ss_model *m, const void *p, size_t n) {
  uintptr_t a = (uintptr_t)p, page = (uintptr_t)sysconf(_SC_PAGESIZE);
  for (int32_t i = 0; i < m->n_maps; i++) {
    uintptr_t base = (uintptr_t)m->map_base[i];
    if (a < base || a + n > base + m->map_size[i]) continue;
    uintptr_t lo = (a + page - 1) / page * page, hi = (a + n) / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    return;
  }
}

static int convert_matrix(ss_model *m, ss_weight *w, int32_t to, const char *name) {
  size_t rb = ss_dtype_row_bytes(to, w->cols), bytes;
  if (!ss_mul_ok(rb, (size_t)w->rows, &bytes))
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: %s: converted size overflows", m->path, name);
  uint8_t *dst = malloc(bytes ? bytes : 1);
  float *row = malloc((size_t)w->cols * sizeof(float));
  if (!dst || !row) {
    free(dst);
    free(row);
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes to convert %s to %s", m->path, bytes, name,
                   ss_dtype_name(to));
  }
  for (int64_t r = 0; r < w->rows; r++) {
    ss_weight_row_f32(w, r, row);
    ss_quantize_row(to, row, dst + (size_t)r * rb, w->cols);
  }
  free(row);
  int rc = ss_model_own(m, dst);
  if (rc != SS_OK) return rc;
  release_mapped(m, w->data, ss_weight_bytes(w));
  *w = ss_weight_make(dst, to, w->rows, w->cols);
  return SS_OK;
}

int ss_model_convert_weights(ss_model *m, int32_t target) {
  int tied = ss_model_tied(m);
  int32_t n = ss_model_tensor_count(m, tied);
  for (int32_t i = 0; i < n; i++) {
    ss_model_tensor t;
    ss_model_tensor_at(m, i, &t);
    if (!t.w) continue;
    int32_t to = ss_model_tensor_dtype(&t, target);
    if (to == t.w->dtype) continue;
    int rc = convert_matrix(m, t.w, to, t.name);
    if (rc != SS_OK) return rc;
  }
  if (tied) m->lm_head = m->tok_embeddings;
  return SS_OK;
}

void ss_model_finish_info(ss_model *m) {
  int tied = ss_model_tied(m);
  int32_t n = ss_model_tensor_count(m, tied);
  size_t counts[SS_N_DTYPES] = {0};
  int64_t bytes = 0;
  for (int32_t i = 0; i < n; i++) {
    ss_model_tensor t;
    ss_model_tensor_at(m, i, &t);
    if (!t.w) {
      bytes += t.cols * (int64_t)sizeof(float);
      continue;
    }
    counts[t.w->dtype] += (size_t)t.rows * (size_t)t.cols;
    if (i == 0) /* the embedding table: one row per token (unless it is the classifier too) */
      bytes += (int64_t)(tied ? ss_weight_bytes(t.w) : ss_dtype_row_bytes(t.w->dtype, t.cols));
    else
      bytes += (int64_t)ss_weight_bytes(t.w);
  }
  for (int32_t l = 0; l < m->info.n_layers; l++) {
    const ss_layer_weights *w = &m->layers[l];
    int64_t qd = (int64_t)m->info.n_heads * m->info.head_dim, kvd = (int64_t)m->info.n_kv_heads * m->info.head_dim;
    bytes += ((w->bq ? qd : 0) + (w->bk ? kvd : 0) + (w->bv ? kvd : 0)) * (int64_t)sizeof(float);
  }
  m->info.weight_dtype = ss_dominant_dtype(counts);
  m->info.weight_bytes = bytes;
}
