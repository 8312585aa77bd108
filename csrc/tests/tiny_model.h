/*
 * tiny_model.h — test helpers: a small random Llama built in memory (struct
 * ss_model filled by hand), and a naive double-precision reference forward
 * pass with the three cache policies written the "textbook" way:
 * every cached token keeps its PRE-RoPE keys, the cache list is rebuilt at
 * each token (admit, then evict per policy), and every key is rotated at its
 * CURRENT cache position, the query at n - 1 (StreamingLLM re-indexing).
 * Nothing here shares code with the engine.
 */
#ifndef SS_TINY_MODEL_H
#define SS_TINY_MODEL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "sinkstream.h"
#include "weights.h"

typedef struct tiny_cfg {
  int dim, hidden, n_layers, n_heads, n_kv_heads, head_dim, vocab, max_seq_len;
  int bias; /* Qwen2-style q/k/v biases */
  float theta;
  uint64_t seed;
} tiny_cfg;

static inline tiny_cfg tiny_default_cfg(void) {
  tiny_cfg c = {.dim = 32, .hidden = 48, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
                .vocab = 64, .max_seq_len = 64, .bias = 0, .theta = 10000.0f, .seed = 1234};
  return c;
}

typedef struct tiny_model {
  ss_model m;
  tiny_cfg cfg;
  float *data; /* every weight, one block */
  void *conv[3 + 7 * 16]; /* converted matrices (tiny_model_convert) */
  int n_conv;
} tiny_model;

static inline uint64_t tiny_rng(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* uniform in [-a, a] */
static inline float tiny_uniform(uint64_t *s, float a) {
  return (float)(((double)(tiny_rng(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * a);
}

static inline float *tiny_take(float **p, size_t n, float scale, float base, uint64_t *s) {
  float *q = *p;
  for (size_t i = 0; i < n; i++) q[i] = base + tiny_uniform(s, scale);
  *p += n;
  return q;
}

/* Returns 0 on success. Weights ~ U(-0.5, 0.5)/sqrt(fan_in)*2, norms ~ 1 +- 0.2:
 * attention is peaky enough that position mistakes show in the logits. */
static inline int tiny_model_init(tiny_model *t, tiny_cfg cfg) {
  memset(t, 0, sizeof *t);
  t->cfg = cfg;
  int D = cfg.dim, H = cfg.hidden, qd = cfg.n_heads * cfg.head_dim, kvd = cfg.n_kv_heads * cfg.head_dim;
  size_t per_layer = (size_t)D * 2 + (size_t)qd * D + 2 * (size_t)kvd * D + (size_t)qd + 2 * (size_t)kvd +
                     (size_t)D * qd + 3 * (size_t)H * D;
  size_t total = (size_t)cfg.vocab * D * 2 + D + per_layer * cfg.n_layers;
  t->data = malloc(total * sizeof(float));
  t->m.layers = calloc((size_t)cfg.n_layers, sizeof(ss_layer_weights));
  if (!t->data || !t->m.layers) return -1;
  uint64_t s = cfg.seed;
  float *p = t->data;
#define TAKE(n, scale, base) tiny_take(&p, (size_t)(n), (scale), (base), &s)
#define MAT(rows, cols, scale) ss_weight_make(TAKE((size_t)(rows) * (cols), (scale), 0.0f), SS_DTYPE_F32, rows, cols)
  float wa = 1.7f / sqrtf((float)D), wh = 1.7f / sqrtf((float)H), wq = 1.7f / sqrtf((float)qd);
  t->m.tok_embeddings = MAT(cfg.vocab, D, 1.0f);
  t->m.lm_head = MAT(cfg.vocab, D, wa);
  t->m.final_norm = TAKE(D, 0.2f, 1.0f);
  for (int l = 0; l < cfg.n_layers; l++) {
    ss_layer_weights *w = &t->m.layers[l];
    w->attn_norm = TAKE(D, 0.2f, 1.0f);
    w->wq = MAT(qd, D, 2.0f * wa);
    w->wk = MAT(kvd, D, 2.0f * wa);
    w->wv = MAT(kvd, D, wa);
    float *bq = TAKE(qd, 0.3f, 0.0f), *bk = TAKE(kvd, 0.3f, 0.0f), *bv = TAKE(kvd, 0.3f, 0.0f);
    if (cfg.bias) {
      w->bq = bq;
      w->bk = bk;
      w->bv = bv;
    }
    w->wo = MAT(D, qd, wq);
    w->ffn_norm = TAKE(D, 0.2f, 1.0f);
    w->w_gate = MAT(H, D, wa);
    w->w_up = MAT(H, D, wa);
    w->w_down = MAT(D, H, wh);
  }
#undef MAT
#undef TAKE
  ss_model_info *i = &t->m.info;
  i->arch = cfg.bias ? SS_ARCH_QWEN2 : SS_ARCH_LLAMA;
  i->dim = D;
  i->hidden_dim = H;
  i->n_layers = cfg.n_layers;
  i->n_heads = cfg.n_heads;
  i->n_kv_heads = cfg.n_kv_heads;
  i->head_dim = cfg.head_dim;
  i->vocab_size = cfg.vocab;
  i->max_seq_len = cfg.max_seq_len;
  i->bos_token_id = 1;
  i->eos_token_id = 2;
  i->source_dtype = SS_DTYPE_F32;
  i->rope_theta = cfg.theta;
  i->rms_norm_eps = 1e-5f;
  i->n_params = (int64_t)total;
  return 0;
}

static inline void tiny_model_free(tiny_model *t) {
  free(t->data);
  free(t->m.layers);
  for (int i = 0; i < t->n_conv; i++) free(t->conv[i]);
  memset(t, 0, sizeof *t);
}

/* Every matrix slot of t's model (lm_head last). */
static inline int tiny_matrices(tiny_model *t, ss_weight **out) {
  int n = 0;
  out[n++] = &t->m.tok_embeddings;
  for (int l = 0; l < t->cfg.n_layers; l++) {
    ss_layer_weights *w = &t->m.layers[l];
    out[n++] = &w->wq, out[n++] = &w->wk, out[n++] = &w->wv, out[n++] = &w->wo;
    out[n++] = &w->w_gate, out[n++] = &w->w_up, out[n++] = &w->w_down;
  }
  out[n++] = &t->m.lm_head;
  return n;
}

/* Store every matrix as `dtype` (ss_quantize_row; rows that are not whole blocks: F16), and, when
 * widen != 0, back as F32 holding exactly the stored values (the "widened" twin of that model). */
static inline int tiny_model_convert(tiny_model *t, int32_t dtype, int widen) {
  ss_weight *ws[3 + 7 * 16];
  int n = tiny_matrices(t, ws);
  for (int i = 0; i < n; i++) {
    ss_weight *w = ws[i];
    int32_t to = ss_storage_dtype(dtype, w->cols);
    size_t rb = ss_dtype_row_bytes(to, w->cols), n_el = (size_t)w->rows * w->cols;
    uint8_t *q = malloc((size_t)w->rows * rb);
    float *row = malloc((size_t)w->cols * sizeof(float)), *wide = widen ? malloc(n_el * sizeof(float)) : NULL;
    if (!q || !row || (widen && !wide) || t->n_conv + 2 > (int)(sizeof t->conv / sizeof t->conv[0])) return -1;
    for (int r = 0; r < w->rows; r++) {
      ss_weight_row_f32(w, r, row);
      ss_quantize_row(to, row, q + (size_t)r * rb, w->cols);
    }
    ss_weight stored = ss_weight_make(q, to, w->rows, w->cols);
    if (widen) {
      for (int r = 0; r < w->rows; r++) ss_weight_row_f32(&stored, r, wide + (size_t)r * w->cols);
      *w = ss_weight_make(wide, SS_DTYPE_F32, w->rows, w->cols);
      free(q);
      t->conv[t->n_conv++] = wide;
    } else {
      *w = stored;
      t->conv[t->n_conv++] = q;
    }
    free(row);
  }
  return 0;
}

/* F32 data of a matrix the reference reads (tiny models are F32 unless converted). */
static inline const float *tiny_f32(const ss_weight *w) { return w->dtype == SS_DTYPE_F32 ? (const float *)w->data : NULL; }

/* ---- naive double reference ----------------------------------------------------- */

typedef struct ref_entry {
  int64_t index; /* stream index */
  double *k, *v; /* [n_layers, kv_dim]; k is pre-RoPE */
} ref_entry;

typedef struct ref_seq {
  const tiny_model *t;
  int policy, sinks, capacity;
  int64_t n_seen;
  ref_entry *cache; /* [capacity + 1], cache order */
  int n;
} ref_seq;

static inline void ref_init(ref_seq *r, const tiny_model *t, int policy, int sinks, int capacity) {
  memset(r, 0, sizeof *r);
  r->t = t;
  r->policy = policy;
  r->sinks = policy == SS_POLICY_STREAMING ? sinks : 0;
  r->capacity = capacity;
  r->cache = calloc((size_t)capacity + 1, sizeof(ref_entry));
}

static inline void ref_free(ref_seq *r) {
  for (int i = 0; i < r->n; i++) {
    free(r->cache[i].k);
    free(r->cache[i].v);
  }
  free(r->cache);
}

static inline void ref_matvec(double *y, const double *x, const float *w, const float *b, int in, int out) {
  for (int o = 0; o < out; o++) {
    double s = b ? b[o] : 0.0;
    for (int i = 0; i < in; i++) s += (double)w[(size_t)o * in + i] * x[i];
    y[o] = s;
  }
}

static inline void ref_rmsnorm(double *o, const double *x, const float *w, int n, double eps) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  double sc = 1.0 / sqrt(ss / n + eps);
  for (int i = 0; i < n; i++) o[i] = x[i] * sc * w[i];
}

/* rotate-half RoPE at position pos */
static inline void ref_rope(double *x, int hd, double pos, double theta) {
  for (int j = 0; j < hd / 2; j++) {
    double a = pos * pow(theta, -2.0 * j / hd), c = cos(a), s = sin(a);
    double x0 = x[j], x1 = x[j + hd / 2];
    x[j] = x0 * c - x1 * s;
    x[j + hd / 2] = x1 * c + x0 * s;
  }
}

/* Feed one token; logits[vocab] (double) out. Returns 0, or -1 when a dense
 * cache is full. */
static inline int ref_feed(ref_seq *r, int token, double *logits) {
  const tiny_model *t = r->t;
  const tiny_cfg *c = &t->cfg;
  int D = c->dim, H = c->hidden, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
  if (r->policy == SS_POLICY_DENSE && r->n >= r->capacity) return -1;
  /* admit, then evict: streaming drops the oldest non-sink, window the oldest */
  ref_entry e = {r->n_seen++, calloc((size_t)c->n_layers * kvd, sizeof(double)),
                 calloc((size_t)c->n_layers * kvd, sizeof(double))};
  r->cache[r->n++] = e;
  if (r->n > r->capacity) {
    int drop = r->sinks;
    free(r->cache[drop].k);
    free(r->cache[drop].v);
    memmove(&r->cache[drop], &r->cache[drop + 1], (size_t)(r->n - drop - 1) * sizeof(ref_entry));
    r->n--;
  }
  double *x = calloc(D, sizeof(double)), *xb = calloc(D, sizeof(double)), *q = calloc(qd, sizeof(double));
  double *att = calloc(qd, sizeof(double)), *o = calloc(D, sizeof(double)), *hb = calloc(H, sizeof(double));
  double *hb2 = calloc(H, sizeof(double)), *sc = calloc((size_t)r->n, sizeof(double)), *kr = calloc(hd, sizeof(double));
  double *qr = calloc(hd, sizeof(double));
  for (int i = 0; i < D; i++) x[i] = tiny_f32(&t->m.tok_embeddings)[(size_t)token * D + i];
  for (int l = 0; l < c->n_layers; l++) {
    const ss_layer_weights *w = &t->m.layers[l];
    ref_rmsnorm(xb, x, w->attn_norm, D, t->m.info.rms_norm_eps);
    ref_matvec(q, xb, tiny_f32(&w->wq), w->bq, D, qd);
    ref_entry *me = &r->cache[r->n - 1];
    ref_matvec(me->k + (size_t)l * kvd, xb, tiny_f32(&w->wk), w->bk, D, kvd);
    ref_matvec(me->v + (size_t)l * kvd, xb, tiny_f32(&w->wv), w->bv, D, kvd);
    for (int h = 0; h < c->n_heads; h++) {
      int kvh = h / (c->n_heads / c->n_kv_heads);
      memcpy(qr, q + h * hd, hd * sizeof(double));
      ref_rope(qr, hd, r->n - 1, c->theta);
      double mx = -INFINITY;
      for (int j = 0; j < r->n; j++) {
        memcpy(kr, r->cache[j].k + (size_t)l * kvd + kvh * hd, hd * sizeof(double));
        ref_rope(kr, hd, j, c->theta);
        double s = 0;
        for (int d = 0; d < hd; d++) s += qr[d] * kr[d];
        sc[j] = s / sqrt((double)hd);
        if (sc[j] > mx) mx = sc[j];
      }
      double sum = 0;
      for (int j = 0; j < r->n; j++) sum += (sc[j] = exp(sc[j] - mx));
      for (int d = 0; d < hd; d++) {
        double a = 0;
        for (int j = 0; j < r->n; j++) a += sc[j] / sum * r->cache[j].v[(size_t)l * kvd + kvh * hd + d];
        att[h * hd + d] = a;
      }
    }
    ref_matvec(o, att, tiny_f32(&w->wo), NULL, qd, D);
    for (int i = 0; i < D; i++) x[i] += o[i];
    ref_rmsnorm(xb, x, w->ffn_norm, D, t->m.info.rms_norm_eps);
    ref_matvec(hb, xb, tiny_f32(&w->w_gate), NULL, D, H);
    ref_matvec(hb2, xb, tiny_f32(&w->w_up), NULL, D, H);
    for (int i = 0; i < H; i++) hb[i] = hb[i] / (1.0 + exp(-hb[i])) * hb2[i];
    ref_matvec(o, hb, tiny_f32(&w->w_down), NULL, H, D);
    for (int i = 0; i < D; i++) x[i] += o[i];
  }
  ref_rmsnorm(xb, x, t->m.final_norm, D, t->m.info.rms_norm_eps);
  ref_matvec(logits, xb, tiny_f32(&t->m.lm_head), NULL, D, c->vocab);
  free(x), free(xb), free(q), free(att), free(o), free(hb), free(hb2), free(sc), free(kr), free(qr);
  return 0;
}

/* max_i |a_i - b_i| / max(1, max_i |b_i|) */
static inline double rel_err_f(const float *a, const float *b, int n) {
  double md = 0, mb = 1;
  for (int i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
    if (fabs(b[i]) > mb) mb = fabs(b[i]);
  }
  return md / mb;
}

static inline double rel_err_d(const float *a, const double *b, int n) {
  double md = 0, mb = 1;
  for (int i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
    if (fabs(b[i]) > mb) mb = fabs(b[i]);
  }
  return md / mb;
}

#endif /* SS_TINY_MODEL_H */
