/* model_export.c — ss_model_export_*: a loaded model as the tensors of a GGUF llama file, converted
 * with the quantization of weights.c (the same as at load), Q/K rows in GGUF's adjacent-pair layout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_tensors.h"
#include "model_util.h"

static int has_biases(const ss_model *m) {
  for (int32_t l = 0; l < m->info.n_layers; l++)
    if (m->layers[l].bq || m->layers[l].bk || m->layers[l].bv) return 1;
  return 0;
}

int ss_model_export_count(const ss_model *m, int32_t *out_n) {
  if (!m || !out_n) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_export_count: model or out_n is NULL");
  *out_n = 0;
  if (has_biases(m))
    return ss_fail(SS_ERR_UNSUPPORTED, "%s: q/k/v biases (%s) have no place in a GGUF llama file", m->path,
                   m->info.arch == SS_ARCH_QWEN2 ? "Qwen2" : "this model");
  *out_n = ss_model_tensor_count(m, ss_model_tied(m));
  return SS_OK;
}

/* Entry `index` and its exported type; the checks every export call shares. */
static int export_entry(const ss_model *m, int32_t index, int32_t dtype, const char *fn, ss_model_tensor *t,
                        int32_t *out_dtype) {
  if (!m) return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
  int32_t n;
  int rc = ss_model_export_count(m, &n);
  if (rc != SS_OK) return rc;
  if (index < 0 || index >= n) return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: index %d outside [0, %d)", fn, index, n);
  if (dtype != SS_WEIGHTS_AS_FILE && !ss_dtype_valid(dtype))
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: dtype %d is neither SS_WEIGHTS_AS_FILE nor an ss_dtype", fn, dtype);
  ss_model_tensor_at((ss_model *)m, index, t); /* read only */
  *out_dtype = !t->w ? SS_DTYPE_F32 : dtype == SS_WEIGHTS_AS_FILE ? t->w->dtype : ss_model_tensor_dtype(t, dtype);
  return SS_OK;
}

int ss_model_export_info(const ss_model *m, int32_t index, int32_t dtype, ss_tensor_info *out) {
  if (!out) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_export_info: out is NULL");
  memset(out, 0, sizeof *out);
  ss_model_tensor t;
  int32_t dt;
  int rc = export_entry(m, index, dtype, "ss_model_export_info", &t, &dt);
  if (rc != SS_OK) return rc;
  snprintf(out->name, sizeof out->name, "%s", t.name);
  out->dtype = dt;
  out->n_dims = t.w ? 2 : 1;
  out->ne[0] = t.cols;
  out->ne[1] = t.rows;
  out->row_bytes = (int64_t)ss_dtype_row_bytes(dt, t.cols);
  return SS_OK;
}

int ss_model_export_rows(const ss_model *m, int32_t index, int32_t dtype, int64_t row0, int64_t n_rows, void *dst,
                         size_t dst_size) {
  static const char fn[] = "ss_model_export_rows";
  ss_model_tensor t;
  int32_t dt;
  int rc = export_entry(m, index, dtype, fn, &t, &dt);
  if (rc != SS_OK) return rc;
  if (row0 < 0 || n_rows < 0 || row0 > t.rows - n_rows)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: %s: rows [%lld, +%lld) outside [0, %lld)", fn, t.name,
                   (long long)row0, (long long)n_rows, (long long)t.rows);
  size_t rb = ss_dtype_row_bytes(dt, t.cols);
  if (n_rows > 0 && (!dst || dst_size / rb < (size_t)n_rows))
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: %s: %lld rows of %zu bytes do not fit a %zu-byte buffer", fn, t.name,
                   (long long)n_rows, rb, dst_size);
  if (!t.w) {
    if (n_rows) memcpy(dst, *t.vec, rb);
    return SS_OK;
  }
  const ss_weight *w = t.w;
  size_t src_rb = ss_dtype_row_bytes(w->dtype, w->cols);
  float *row = dt == w->dtype ? NULL : malloc((size_t)w->cols * sizeof(float));
  if (dt != w->dtype && !row) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
  for (int64_t r = 0; r < n_rows; r++) {
    int64_t src = row0 + r; /* GGUF row; the model's row of it */
    if (t.qk && !m->rope_adjacent) src = ss_rope_half_row(src, m->info.head_dim);
    uint8_t *o = (uint8_t *)dst + (size_t)r * rb;
    if (!row) {
      memcpy(o, (const uint8_t *)w->data + (size_t)src * src_rb, rb);
    } else {
      ss_weight_row_f32(w, src, row);
      ss_quantize_row(dt, row, o, w->cols);
    }
  }
  free(row);
  return SS_OK;
}
