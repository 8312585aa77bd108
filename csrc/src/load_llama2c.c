/*
 * load_llama2c.c — llama2.c checkpoints (karpathy/llama2.c run.c, the legacy
 * "version 0" export).
 *
 * Layout (little-endian):
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *         (vocab_size < 0 means the classifier is stored separately)
 *   float token_embedding_table [vocab, dim]
 *         rms_att_weight        [L, dim]
 *         wq                    [L, n_heads * hs, dim]      hs = dim / n_heads
 *         wk                    [L, n_kv_heads * hs, dim]
 *         wv                    [L, n_kv_heads * hs, dim]
 *         wo                    [L, dim, n_heads * hs]
 *         rms_ffn_weight        [L, dim]
 *         w1                    [L, hidden, dim]   (gate)
 *         w2                    [L, dim, hidden]   (down)
 *         w3                    [L, hidden, dim]   (up)
 *         rms_final_weight      [dim]
 *         freq_cis_real, _imag  [seq_len, hs / 2] each (legacy RoPE table, skipped)
 *         wcls                  [vocab, dim]       (only when vocab_size < 0)
 *
 * llama2.c rotates adjacent pairs (2i, 2i+1) of each head (Meta layout); the
 * model contract is the Hugging Face rotate-half layout (i, i + hs/2), so the
 * rows of wq and wk are permuted per head into owned buffers.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_util.h"

#define L2C_HEADER_BYTES 28
#define L2C_MAGIC_V1 0x616b3432u /* "ak42": newer llama2.c export versions */

static int32_t read_i32(const uint8_t *p) {
  uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  int32_t v;
  memcpy(&v, &u, sizeof v);
  return v;
}

/* Fill info from the header; *shared = classifier tied to the embedding. */
static int read_header(const char *path, const ss_file *f, ss_model_info *info, int *shared) {
  if (f->size < L2C_HEADER_BYTES)
    return ss_fail(SS_ERR_FORMAT, "%s: %zu bytes is shorter than the 28-byte llama2.c header", path, f->size);
  int32_t h[7];
  for (int i = 0; i < 7; i++) h[i] = read_i32(f->data + 4 * i);
  if ((uint32_t)h[0] == L2C_MAGIC_V1)
    return ss_fail(SS_ERR_FORMAT, "%s: llama2.c export with magic 'ak42' (version >= 1) is not supported; "
                   "export the legacy version 0 format", path);
  if (h[5] == INT32_MIN) return ss_fail(SS_ERR_FORMAT, "%s: header: vocab_size %d is out of range", path, h[5]);
  if (h[3] <= 0) return ss_fail(SS_ERR_FORMAT, "%s: header: n_heads %d must be positive", path, h[3]);
  if (h[0] <= 0 || h[0] % h[3] != 0)
    return ss_fail(SS_ERR_FORMAT, "%s: header: dim %d must be a positive multiple of n_heads %d", path, h[0], h[3]);
  memset(info, 0, sizeof *info);
  info->arch = SS_ARCH_LLAMA;
  info->dim = h[0];
  info->hidden_dim = h[1];
  info->n_layers = h[2];
  info->n_heads = h[3];
  info->n_kv_heads = h[4];
  info->head_dim = h[0] / h[3];
  info->vocab_size = h[5] < 0 ? -h[5] : h[5];
  info->max_seq_len = h[6];
  info->bos_token_id = 1;
  info->eos_token_id = 2;
  info->source_dtype = SS_DTYPE_F32;
  info->format = SS_FORMAT_LLAMA2C;
  info->rope_theta = 10000.0f;
  info->rms_norm_eps = 1e-5f;
  *shared = h[5] > 0;
  return ss_validate_info(path, "header", info);
}

/* Floats after the header, wcls included; fails on overflow. */
static int expected_floats(const ss_model_info *in, int shared, size_t *out) {
  ss_weight_sizes s = ss_weight_sizes_of(in);
  size_t L = (size_t)in->n_layers, dim = (size_t)in->dim, per_layer = 0, t = 0, n = 0;
  size_t rope = (size_t)in->max_seq_len * (size_t)in->head_dim; /* 2 * seq_len * hs/2 */
  int ok = ss_add_ok(2 * dim, s.wq, &per_layer) && ss_add_ok(per_layer, 2 * s.wk, &per_layer) &&
           ss_add_ok(per_layer, s.wo, &per_layer) && ss_mul_ok(s.w_ffn, 3, &t) &&
           ss_add_ok(per_layer, t, &per_layer) && ss_mul_ok(per_layer, L, &n) &&
           ss_add_ok(n, s.embed * (shared ? 1 : 2), &n) && ss_add_ok(n, dim, &n) && ss_add_ok(n, rope, &n) &&
           n <= (SIZE_MAX - L2C_HEADER_BYTES) / sizeof(float);
  *out = n;
  return ok;
}

/* Meta layout -> rotate-half, per head: dst row j <- src row 2j,
 * dst row hs/2 + j <- src row 2j + 1 (rows of `dim` floats). */
static void permute_rope_rows(float *dst, const float *src, int n_heads, int head_dim, int dim) {
  size_t row = (size_t)dim * sizeof(float);
  for (int h = 0; h < n_heads; h++) {
    const float *s = src + (size_t)h * head_dim * dim;
    float *d = dst + (size_t)h * head_dim * dim;
    for (int j = 0; j < head_dim / 2; j++) {
      memcpy(d + (size_t)j * dim, s + (size_t)(2 * j) * dim, row);
      memcpy(d + (size_t)(head_dim / 2 + j) * dim, s + (size_t)(2 * j + 1) * dim, row);
    }
  }
}

/* Point the model's weights at the float array w (the checkpoint body). */
static int map_weights(ss_model *m, const float *w, int shared) {
  const ss_model_info *in = &m->info;
  ss_weight_sizes s = ss_weight_sizes_of(in);
  size_t L = (size_t)in->n_layers, dim = (size_t)in->dim;
  ss_layer_weights *layers = calloc(L, sizeof *layers);
  if (!layers) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu layers", m->path, L);
  int rc = ss_model_own(m, layers);
  if (rc != SS_OK) return rc;
  m->layers = layers;

  /* permuted copies of wq and wk for all layers */
  float *wq, *wk;
  if ((rc = ss_model_alloc_f32(m, s.wq * L, "wq", &wq)) || (rc = ss_model_alloc_f32(m, s.wk * L, "wk", &wk)))
    return rc;

  const float *embed = w;
  m->tok_embeddings = ss_weight_make(embed, SS_DTYPE_F32, in->vocab_size, in->dim);
  w += s.embed;
  const float *rms_att = w;
  w += L * dim;
  const float *wq_src = w;
  w += L * s.wq;
  const float *wk_src = w;
  w += L * s.wk;
  const float *wv = w;
  w += L * s.wk;
  const float *wo = w;
  w += L * s.wo;
  const float *rms_ffn = w;
  w += L * dim;
  const float *w1 = w;
  w += L * s.w_ffn;
  const float *w2 = w;
  w += L * s.w_ffn;
  const float *w3 = w;
  w += L * s.w_ffn;
  m->final_norm = w;
  w += dim;
  w += (size_t)in->max_seq_len * (size_t)in->head_dim; /* legacy freq_cis_real + freq_cis_imag */
  m->lm_head = ss_weight_make(shared ? embed : w, SS_DTYPE_F32, in->vocab_size, in->dim);

  for (size_t l = 0; l < L; l++) {
    ss_layer_weights *ly = &layers[l];
    permute_rope_rows(wq + l * s.wq, wq_src + l * s.wq, in->n_heads, in->head_dim, in->dim);
    permute_rope_rows(wk + l * s.wk, wk_src + l * s.wk, in->n_kv_heads, in->head_dim, in->dim);
    int64_t qd = (int64_t)s.q_dim, kvd = (int64_t)s.kv_dim, hid = in->hidden_dim;
    ly->attn_norm = rms_att + l * dim;
    ly->wq = ss_weight_make(wq + l * s.wq, SS_DTYPE_F32, qd, in->dim);
    ly->wk = ss_weight_make(wk + l * s.wk, SS_DTYPE_F32, kvd, in->dim);
    ly->wv = ss_weight_make(wv + l * s.wk, SS_DTYPE_F32, kvd, in->dim);
    ly->wo = ss_weight_make(wo + l * s.wo, SS_DTYPE_F32, in->dim, qd);
    ly->ffn_norm = rms_ffn + l * dim;
    ly->w_gate = ss_weight_make(w1 + l * s.w_ffn, SS_DTYPE_F32, hid, in->dim);
    ly->w_down = ss_weight_make(w2 + l * s.w_ffn, SS_DTYPE_F32, in->dim, hid);
    ly->w_up = ss_weight_make(w3 + l * s.w_ffn, SS_DTYPE_F32, hid, in->dim);
  }
  size_t per_layer = 2 * dim + s.wq + 2 * s.wk + s.wo + 3 * s.w_ffn;
  m->info.n_params = (int64_t)(per_layer * L + s.embed * (shared ? 1 : 2) + dim);
  return SS_OK;
}

int ss_load_llama2c(const char *path, const ss_model_params *params, ss_model **out) {
  ss_file f;
  ss_model *m = NULL;
  int shared = 1, rc = ss_file_open(path, &f);
  if (rc != SS_OK) return rc;
  ss_model_info info;
  size_t n_floats = 0;
  if ((rc = read_header(path, &f, &info, &shared)) != SS_OK) goto done;
  if (!expected_floats(&info, shared, &n_floats)) {
    rc = ss_fail(SS_ERR_FORMAT, "%s: header dimensions overflow the file size computation", path);
    goto done;
  }
  size_t want = L2C_HEADER_BYTES + n_floats * sizeof(float);
  if (f.size != want) {
    rc = ss_fail(SS_ERR_FORMAT, "%s: file is %zu bytes but the header (dim %d, hidden %d, layers %d, heads %d/%d, "
                 "vocab %d%s, seq_len %d) implies %zu", path, f.size, info.dim, info.hidden_dim, info.n_layers,
                 info.n_heads, info.n_kv_heads, info.vocab_size, shared ? "" : " unshared", info.max_seq_len, want);
    goto done;
  }
  if ((rc = ss_model_new(path, &m)) != SS_OK) goto done;
  m->info = info;

  /* The body starts at byte 28: 4-byte aligned in a mapping (page-aligned)
   * and in a malloc'd copy, so it can be used in place. */
  const float *body = (const float *)(const void *)(f.data + L2C_HEADER_BYTES);
  int kept = 0;
  if (params->use_mmap && (rc = ss_model_keep_file(m, &f, &kept)) != SS_OK) goto done;
  if (!kept) { /* no mmap wanted (or no slot): own a copy */
    float *copy;
    if ((rc = ss_model_alloc_f32(m, n_floats, "weights", &copy)) != SS_OK) goto done;
    memcpy(copy, body, n_floats * sizeof(float));
    body = copy;
  }
  rc = map_weights(m, body, shared);

done:
  ss_file_close(&f);
  if (rc != SS_OK) {
    ss_model_free(m);
    m = NULL;
  }
  *out = m;
  return rc;
}
