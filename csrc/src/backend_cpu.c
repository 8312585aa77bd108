/*
 * backend_cpu.c — the CPU backend: Llama forward pass over a batch of
 * sequences with StreamingLLM ring caches (geometry: cache_geometry.h).
 *
 * Per forward pass, T tokens of all items are stacked into [T, dim] and go
 * through every matmul together (each weight row is read once per 4 tokens).
 * Per layer:
 *   xb = rmsnorm(x)                      [T, dim]
 *   q, k, v = xb . Wq/Wk/Wv^T (+ bias)   [T, q_dim], [T, kv_dim], [T, kv_dim]
 *   k rotated at each token's stream index (k of the chunk stays in scratch)
 *   att = attention(q; cache + chunk scratch)   [T, q_dim]
 *   chunk k, v written into the ring slots (in order)
 *   x += att . Wo^T
 *   xb = rmsnorm(x)
 *   hb = silu(xb . Wgate^T) * (xb . Wup^T) [T, hidden]
 *   x += hb . Wdown^T
 * then for the items that want logits: logits = rmsnorm(x_last) . lm_head^T.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cpu_kernels.h"
#include "error.h"
#include "threadpool.h"

#define ATT_BLOCK 128 /* keys scored per online-softmax block */

/* Below this estimated work (multiply-adds, or the equivalent for the
 * element-wise ops) a job runs inline on the calling thread: handing it to
 * the pool costs more than it saves. Chosen by measurement (decision D10):
 * a dispatch costs ~1-3 us when a worker is spinning, ~30-100 us when it must
 * be woken or the machine is busy, and one core does ~10-20 multiply-adds/ns,
 * so jobs under ~0.5 M multiply-adds (~30 us) never pay. Override with the
 * environment variable SS_CPU_PAR_MIN_WORK (tests use 0 to force the pool). */
#define PAR_MIN_WORK (1 << 19)

/* ---- KV storage ---------------------------------------------------------- */

typedef struct cpu_kv {
  ss_cache_geometry geom;
  int32_t n_slots; /* slots allocated in every layer buffer */
  int64_t bytes;   /* bytes of the 2 * n_layers buffers as allocated */
  float **k;       /* [n_layers] -> [n_slots, kv_dim], keys rotated at their stream index */
  float **v;       /* [n_layers] -> [n_slots, kv_dim] */
} cpu_kv;

/* ---- backend context ------------------------------------------------------ */

struct ss_backend_ctx {
  const ss_model *model;
  int dim, hidden, n_layers, n_heads, n_kv_heads, hd, q_dim, kv_dim, vocab;
  float eps;
  int max_tokens;
  int n_threads;
  int64_t par_min_work; /* jobs below this work run inline (PAR_MIN_WORK) */
  int group;            /* n_heads / n_kv_heads: query heads per K/V head */
  int attn_heads_max;   /* most query heads per attention task (SS_CPU_ATTN_HEADS; default group) */
  int attn_heads;       /* query heads per attention task in this forward pass (divides group) */
  ss_threadpool *pool;
  double *inv_freq; /* [hd/2] */

  /* activations, [max_tokens, *] */
  float *x;    /* [T, dim] residual stream */
  float *xb;   /* [T, dim] normed input of a sub-block */
  float *q;    /* [T, q_dim] (unrotated) */
  float *k;    /* [T, kv_dim] chunk keys (rotated) */
  float *v;    /* [T, kv_dim] chunk values */
  float *att;  /* [T, q_dim] attention output */
  float *hb;   /* [T, hidden] */
  float *hb2;  /* [T, hidden] */
  float *rope; /* [T, 4, hd/2]: cos/sin at t, cos/sin at n(t)-1 */
  float *xl;   /* [T, dim] final-normed last rows of the items wanting logits */
  int32_t *tok_item; /* [T] item of each token */
  int64_t *tok_pos;  /* [T] stream index of each token */
  int32_t *item_row; /* [max_tokens] first token row of each item */
  int32_t *logit_row;/* [max_tokens] token rows whose logits are wanted */

  /* per-thread attention scratch, for up to `group` heads */
  float *th_f;          /* [n_threads, group * (3 * hd + ATT_BLOCK + 2)] */
  const float **th_vp;  /* [n_threads, ATT_BLOCK] */

  /* the forward pass in flight (read by the task functions) */
  const ss_forward_item *items;
  int n_items;
  int T;
  int layer;
};

static void *xcalloc(size_t n, size_t size) { return n && size ? calloc(n, size) : NULL; }

static void cpu_destroy(ss_backend_ctx *c) {
  if (!c) return;
  ss_threadpool_free(c->pool);
  free(c->inv_freq);
  free(c->x);
  free(c->xb);
  free(c->q);
  free(c->k);
  free(c->v);
  free(c->att);
  free(c->hb);
  free(c->hb2);
  free(c->rope);
  free(c->xl);
  free(c->tok_item);
  free(c->tok_pos);
  free(c->item_row);
  free(c->logit_row);
  free(c->th_f);
  free(c->th_vp);
  free(c);
}

static int cpu_init(const ss_model *model, const ss_engine_params *params, ss_backend_ctx **out) {
  *out = NULL;
  const ss_model_info *mi = &model->info;
  ss_backend_ctx *c = calloc(1, sizeof *c);
  if (!c) return ss_fail(SS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory");
  c->model = model;
  c->dim = mi->dim;
  c->hidden = mi->hidden_dim;
  c->n_layers = mi->n_layers;
  c->n_heads = mi->n_heads;
  c->n_kv_heads = mi->n_kv_heads;
  c->hd = mi->head_dim;
  c->q_dim = mi->n_heads * mi->head_dim;
  c->kv_dim = mi->n_kv_heads * mi->head_dim;
  c->vocab = mi->vocab_size;
  c->eps = mi->rms_norm_eps;
  c->max_tokens = params->max_batch_tokens;

  int nt = params->n_threads;
  if (nt <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    nt = n > 0 ? (int)(n > 256 ? 256 : n) : 1;
  }
  c->n_threads = nt;
  c->par_min_work = PAR_MIN_WORK;
  const char *pmw = getenv("SS_CPU_PAR_MIN_WORK");
  if (pmw && *pmw) {
    char *end = NULL;
    long long v = strtoll(pmw, &end, 10);
    if (end && *end == '\0' && v >= 0) c->par_min_work = v;
  }
  c->group = c->n_heads / c->n_kv_heads;
  c->attn_heads_max = c->group;
  /* SS_CPU_ATTN_HEADS=<n>: at most n query heads per attention task (the
   * largest divisor of the group not above n; 1 = one task per head). Results
   * do not depend on it; tests use it to check that. */
  const char *ah = getenv("SS_CPU_ATTN_HEADS");
  if (ah && *ah) {
    char *end = NULL;
    long v = strtol(ah, &end, 10);
    if (end && *end == '\0' && v >= 1) c->attn_heads_max = v < c->group ? (int)v : c->group;
  }

  size_t T = (size_t)c->max_tokens, half = (size_t)c->hd / 2;
  c->inv_freq = xcalloc(half, sizeof(double));
  c->x = xcalloc(T * c->dim, sizeof(float));
  c->xb = xcalloc(T * c->dim, sizeof(float));
  c->q = xcalloc(T * c->q_dim, sizeof(float));
  c->k = xcalloc(T * c->kv_dim, sizeof(float));
  c->v = xcalloc(T * c->kv_dim, sizeof(float));
  c->att = xcalloc(T * c->q_dim, sizeof(float));
  c->hb = xcalloc(T * c->hidden, sizeof(float));
  c->hb2 = xcalloc(T * c->hidden, sizeof(float));
  c->rope = xcalloc(T * 4 * half, sizeof(float));
  c->xl = xcalloc(T * c->dim, sizeof(float));
  c->tok_item = xcalloc(T, sizeof(int32_t));
  c->tok_pos = xcalloc(T, sizeof(int64_t));
  c->item_row = xcalloc(T, sizeof(int32_t));
  c->logit_row = xcalloc(T, sizeof(int32_t));
  c->th_f = xcalloc((size_t)nt * (size_t)c->group * (3 * (size_t)c->hd + ATT_BLOCK + 2), sizeof(float));
  c->th_vp = xcalloc((size_t)nt * ATT_BLOCK, sizeof(float *));
  if (!c->inv_freq || !c->x || !c->xb || !c->q || !c->k || !c->v || !c->att || !c->hb || !c->hb2 || !c->rope ||
      !c->xl || !c->tok_item || !c->tok_pos || !c->item_row || !c->logit_row || !c->th_f || !c->th_vp) {
    cpu_destroy(c);
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "cpu backend: cannot allocate scratch for %d batch tokens",
                   c->max_tokens);
  }
  ss_rope_inv_freq(c->inv_freq, (double)mi->rope_theta, c->hd);
  c->pool = ss_threadpool_create(nt);
  if (!c->pool) {
    cpu_destroy(c);
    return ss_fail(SS_ERR_BACKEND, "cpu backend: cannot start %d threads", nt);
  }
  *out = c;
  return SS_OK;
}

/* ---- KV ops ----------------------------------------------------------------- */

static int cpu_kv_create(ss_backend_ctx *c, ss_cache_geometry geom, void **out_kv) {
  *out_kv = NULL;
  cpu_kv *kv = calloc(1, sizeof *kv);
  if (kv) {
    kv->k = calloc((size_t)c->n_layers, sizeof(float *));
    kv->v = calloc((size_t)c->n_layers, sizeof(float *));
  }
  if (!kv || !kv->k || !kv->v) {
    if (kv) {
      free(kv->k);
      free(kv->v);
    }
    free(kv);
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory creating a KV cache");
  }
  kv->geom = geom;
  *out_kv = kv;
  return SS_OK;
}

static int cpu_kv_reserve(ss_backend_ctx *c, void *kvp, int32_t n_slots) {
  cpu_kv *kv = kvp;
  if (n_slots <= kv->n_slots) return SS_OK;
  size_t bytes = (size_t)n_slots * (size_t)c->kv_dim * sizeof(float);
  for (int l = 0; l < c->n_layers; l++) {
    /* realloc keeps the rows of the slots already in use */
    float *nk = realloc(kv->k[l], bytes);
    if (!nk) goto oom;
    kv->k[l] = nk;
    float *nv = realloc(kv->v[l], bytes);
    if (!nv) goto oom;
    kv->v[l] = nv;
  }
  kv->n_slots = n_slots;
  kv->bytes = 2 * (int64_t)c->n_layers * (int64_t)bytes;
  return SS_OK;
oom:
  return ss_fail(SS_ERR_OUT_OF_MEMORY, "cpu backend: cannot grow a KV cache to %d slots (%zu bytes per layer)",
                 n_slots, 2 * bytes);
}

static void cpu_kv_destroy(ss_backend_ctx *c, void *kvp) {
  cpu_kv *kv = kvp;
  if (!kv) return;
  for (int l = 0; l < c->n_layers; l++) {
    free(kv->k[l]);
    free(kv->v[l]);
  }
  free(kv->k);
  free(kv->v);
  free(kv);
}

/* K and V rows of one slot in every layer (f32) */
static int64_t cpu_kv_bytes_per_token(ss_backend_ctx *c) {
  return (int64_t)c->n_layers * 2 * (int64_t)c->kv_dim * (int64_t)sizeof(float);
}

static int64_t cpu_kv_bytes(ss_backend_ctx *c, const void *kvp) { return ((const cpu_kv *)kvp)->bytes; }

/* ---- parallel tasks ---------------------------------------------------------- */

static int64_t grain_for(const ss_backend_ctx *c, int64_t n_tasks, int64_t work) {
  if (c->n_threads <= 1 || work < c->par_min_work) return n_tasks; /* inline */
  int64_t g = n_tasks / ((int64_t)c->n_threads * 4);
  return g < 1 ? 1 : g;
}

/* y_s[T, out_s] (+)= x[T, in] . W_s^T (+ b_s), up to three matrices sharing x. */
typedef struct mm_seg {
  float *y;
  const float *w, *b;
  int out;
} mm_seg;

typedef struct mm_job {
  const float *x;
  int T, in, accumulate, n_seg;
  mm_seg seg[3];
} mm_job;

static void mm_task(void *ctx, int64_t begin, int64_t end, int tid) {
  const mm_job *j = ctx;
  int64_t base = 0;
  for (int s = 0; s < j->n_seg; s++) {
    const mm_seg *g = &j->seg[s];
    int64_t lo = begin > base ? begin : base, hi = end < base + g->out ? end : base + g->out;
    if (lo < hi)
      ss_matmul_rows(g->y, j->x, g->w, g->b, j->T, j->in, g->out, (int)(lo - base), (int)(hi - base), j->accumulate);
    base += g->out;
  }
}

static void run_mm(ss_backend_ctx *c, mm_job *j) {
  int64_t rows = 0;
  for (int s = 0; s < j->n_seg; s++) rows += j->seg[s].out;
  ss_threadpool_run(c->pool, rows, grain_for(c, rows, rows * j->T * j->in), mm_task, j);
}

/* hb[T, hidden] = silu(xb . Wgate^T) * (xb . Wup^T) */
typedef struct ffn_job {
  ss_backend_ctx *c;
  const ss_layer_weights *w;
} ffn_job;

static void ffn_task(void *ctx, int64_t begin, int64_t end, int tid) {
  const ffn_job *j = ctx;
  ss_backend_ctx *c = j->c;
  int T = c->T, H = c->hidden, r0 = (int)begin, r1 = (int)end;
  ss_matmul_rows(c->hb, c->xb, j->w->w_gate, NULL, T, c->dim, H, r0, r1, 0);
  ss_matmul_rows(c->hb2, c->xb, j->w->w_up, NULL, T, c->dim, H, r0, r1, 0);
  for (int t = 0; t < T; t++) {
    float *g = c->hb + (int64_t)t * H, *u = c->hb2 + (int64_t)t * H;
    for (int r = r0; r < r1; r++) g[r] = g[r] / (1.0f + expf(-g[r])) * u[r];
  }
}

/* xb[t] = rmsnorm(x[t]) * w for t in range */
typedef struct norm_job {
  ss_backend_ctx *c;
  const float *w;
} norm_job;

static void norm_task(void *ctx, int64_t begin, int64_t end, int tid) {
  const norm_job *j = ctx;
  const ss_backend_ctx *c = j->c;
  for (int64_t t = begin; t < end; t++) ss_rmsnorm(c->xb + t * c->dim, c->x + t * c->dim, j->w, c->dim, c->eps);
}

/* RoPE tables of each token: at t (query vs recent keys, and the token's own
 * key) and at n(t) - 1 (query vs sink keys). */
static void rope_task(void *ctx, int64_t begin, int64_t end, int tid) {
  ss_backend_ctx *c = ctx;
  int half = c->hd / 2;
  for (int64_t t = begin; t < end; t++) {
    const ss_forward_item *it = &c->items[c->tok_item[t]];
    int64_t pos = c->tok_pos[t];
    int64_t n_vis = ss_geom_n_visible(pos, it->geom.capacity);
    float *r = c->rope + t * 4 * half;
    ss_rope_tables(r, r + half, pos, c->inv_freq, c->hd);
    if (n_vis - 1 == pos) {
      memcpy(r + 2 * half, r, 2 * (size_t)half * sizeof(float));
    } else {
      ss_rope_tables(r + 2 * half, r + 3 * half, n_vis - 1, c->inv_freq, c->hd);
    }
  }
}

/* Rotate the chunk keys k[t] at their own stream index. */
static void krot_task(void *ctx, int64_t begin, int64_t end, int tid) {
  ss_backend_ctx *c = ctx;
  int half = c->hd / 2;
  for (int64_t t = begin; t < end; t++) {
    const float *r = c->rope + t * 4 * half;
    for (int h = 0; h < c->n_kv_heads; h++) ss_rope_rotate(c->k + t * c->kv_dim + h * c->hd, r, r + half, c->hd);
  }
}

/* Online softmax over keys pushed in a fixed order, ATT_BLOCK at a time, for
 * the G query heads of one K/V head (GQA group, or a part of it): per head g,
 * out_g = sum_j softmax(s_g)_j v_j with a running max / sum rescaled per block.
 * The keys, the block boundaries and the value rows are the same for every
 * head of the group, so each K/V row is read once for all G heads; the
 * arithmetic of each head is exactly that of a one-head pass. */
typedef struct attn_acc {
  float *out; /* [G, hd] running weighted sums */
  float *m;   /* [G] running max */
  float *l;   /* [G] running sum of exp */
  float *s;   /* [G, ATT_BLOCK] scores of the pending block */
  const float **vp; /* [ATT_BLOCK] value rows of the pending block */
  int n, hd, G;
} attn_acc;

static void attn_flush(attn_acc *a) {
  if (a->n == 0) return;
  int hd = a->hd;
  for (int g = 0; g < a->G; g++) {
    float *s = a->s + (int64_t)g * ATT_BLOCK, *out = a->out + (int64_t)g * hd;
    float mb = s[0];
    for (int j = 1; j < a->n; j++) mb = s[j] > mb ? s[j] : mb;
    float m_new = mb > a->m[g] ? mb : a->m[g];
    if (a->m[g] != -INFINITY && m_new != a->m[g]) {
      float scale = expf(a->m[g] - m_new);
      for (int d = 0; d < hd; d++) out[d] *= scale;
      a->l[g] *= scale;
    }
    a->m[g] = m_new;
    ss_softmax_exp(s, m_new, a->n); /* scores -> weights, in place */
    float l = a->l[g];
    for (int j = 0; j < a->n; j++) l += s[j];
    a->l[g] = l;
  }
  ss_attn_pv_g(a->out, a->s, ATT_BLOCK, a->G, a->vp, a->n, hd);
  a->n = 0;
}

/* Score key rows [0, n) of k (stride kv_dim) with the G query vectors q[G, hd];
 * values at the same rows of v. */
static void attn_run(attn_acc *a, const float *q, const float *k, const float *v, int64_t n, int stride,
                     float scale) {
  /* spans up to the next block boundary: scores in one kernel call */
  while (n > 0) {
    int m = ATT_BLOCK - a->n;
    if (n < m) m = (int)n;
    ss_attn_scores_g(a->s + a->n, ATT_BLOCK, q, a->G, k, m, stride, a->hd, scale);
    for (int j = 0; j < m; j++) a->vp[a->n + j] = v + (int64_t)j * stride;
    a->n += m;
    k += (int64_t)m * stride;
    v += (int64_t)m * stride;
    n -= m;
    if (a->n == ATT_BLOCK) attn_flush(a);
  }
}

/* One (token, K/V head, run of attn_heads query heads) task: attention over the
 * sinks and the recent window of the token, keys drawn from the cache (before
 * the chunk) and from the chunk scratch (the chunk's own tokens). */
static void attn_task(void *ctx, int64_t begin, int64_t end, int tid) {
  ss_backend_ctx *c = ctx;
  int hd = c->hd, half = hd / 2, kvd = c->kv_dim, G = c->attn_heads, parts = c->n_heads / G;
  float scale = 1.0f / sqrtf((float)hd);
  float *qt = c->th_f + (size_t)tid * (size_t)c->group * (3 * (size_t)hd + ATT_BLOCK + 2); /* q rotated at t */
  float *qs = qt + (size_t)G * hd;                                                            /* at n(t)-1 */
  attn_acc a = {.out = qs + (size_t)G * hd, .vp = c->th_vp + (size_t)tid * ATT_BLOCK, .hd = hd, .G = G};
  a.s = a.out + (size_t)G * hd;
  a.m = a.s + (size_t)G * ATT_BLOCK;
  a.l = a.m + G;

  for (int64_t task = begin; task < end; task++) {
    int64_t row = task / parts;
    int h0 = (int)(task % parts) * G, kvh = h0 / c->group;
    const ss_forward_item *it = &c->items[c->tok_item[row]];
    const cpu_kv *kv = it->kv;
    int64_t t = c->tok_pos[row], start = it->start_index;
    int32_t S = it->geom.n_sinks, C = it->geom.capacity;
    int64_t row0 = c->item_row[c->tok_item[row]]; /* scratch row of stream index `start` */
    const float *r = c->rope + row * 4 * half;

    memcpy(qt, c->q + row * c->q_dim + (int64_t)h0 * hd, (size_t)G * hd * sizeof(float));
    memcpy(qs, qt, (size_t)G * hd * sizeof(float));
    for (int g = 0; g < G; g++) {
      ss_rope_rotate(qt + (int64_t)g * hd, r, r + half, hd);
      ss_rope_rotate(qs + (int64_t)g * hd, r + 2 * half, r + 3 * half, hd);
    }

    const float *ck = kv->k[c->layer] ? kv->k[c->layer] + (int64_t)kvh * hd : NULL;
    const float *cv = kv->v[c->layer] ? kv->v[c->layer] + (int64_t)kvh * hd : NULL;
    const float *sk = c->k + row0 * kvd + (int64_t)kvh * hd;
    const float *sv = c->v + row0 * kvd + (int64_t)kvh * hd;

    memset(a.out, 0, (size_t)G * hd * sizeof(float));
    for (int g = 0; g < G; g++) a.m[g] = -INFINITY, a.l[g] = 0.0f;
    a.n = 0;

    /* sinks: i in [0, min(S, t+1)), query rotated at n(t)-1 */
    int64_t n_sink = ss_geom_n_sinks_visible(t, S);
    int64_t sc = n_sink < start ? n_sink : start; /* sinks in the cache: [0, sc) */
    if (sc > 0) attn_run(&a, qs, ck, cv, sc, kvd, scale);
    if (n_sink > sc) attn_run(&a, qs, sk + (sc - start) * kvd, sv + (sc - start) * kvd, n_sink - sc, kvd, scale);

    /* recent: i in [max(S, t-R+1), t], query rotated at t */
    int64_t lo = ss_geom_recent_lo(t, S, C);
    int64_t cache_hi = t < start - 1 ? t : start - 1; /* recent keys from the cache: [lo, cache_hi] */
    if (cache_hi >= lo) {
      int64_t n = cache_hi - lo + 1;
      int32_t s0 = ss_geom_slot(lo, S, C);
      int64_t first = ss_geom_ring_run(s0, n, C); /* up to the end of the ring, then wrap to S */
      attn_run(&a, qt, ck + s0 * kvd, cv + s0 * kvd, first, kvd, scale);
      if (n > first) attn_run(&a, qt, ck + (int64_t)S * kvd, cv + (int64_t)S * kvd, n - first, kvd, scale);
    }
    int64_t chunk_lo = lo > start ? lo : start;
    if (t >= chunk_lo) attn_run(&a, qt, sk + (chunk_lo - start) * kvd, sv + (chunk_lo - start) * kvd, t - chunk_lo + 1, kvd, scale);
    attn_flush(&a);

    for (int g = 0; g < G; g++) {
      float *o = c->att + row * c->q_dim + (int64_t)(h0 + g) * hd, inv = 1.0f / a.l[g];
      const float *out = a.out + (int64_t)g * hd;
      for (int d = 0; d < hd; d++) o[d] = out[d] * inv;
    }
  }
}

/* Write the chunk's K/V rows into their ring slots, in stream order; rows that a
 * later token of the same chunk overwrites are skipped. */
static void write_kv(ss_backend_ctx *c) {
  int kvd = c->kv_dim;
  size_t row_bytes = (size_t)kvd * sizeof(float);
  for (int i = 0; i < c->n_items; i++) {
    const ss_forward_item *it = &c->items[i];
    cpu_kv *kv = it->kv;
    int32_t S = it->geom.n_sinks, C = it->geom.capacity;
    int64_t end = it->start_index + it->n_tokens; /* one past the last stream index */
    float *ck = kv->k[c->layer], *cv = kv->v[c->layer];
    for (int j = 0; j < it->n_tokens; j++) {
      int64_t idx = it->start_index + j;
      if (!ss_geom_kept(idx, end, S, C)) continue; /* overwritten later in this chunk */
      int64_t slot = ss_geom_slot(idx, S, C), row = c->item_row[i] + j;
      memcpy(ck + slot * kvd, c->k + row * kvd, row_bytes);
      memcpy(cv + slot * kvd, c->v + row * kvd, row_bytes);
    }
  }
}

/* final norm of the wanted rows into xl[n_want, dim] */
static void final_norm_task(void *ctx, int64_t begin, int64_t end, int tid) {
  ss_backend_ctx *c = ctx;
  for (int64_t k = begin; k < end; k++)
    ss_rmsnorm(c->xl + k * c->dim, c->x + (int64_t)c->logit_row[k] * c->dim, c->model->final_norm, c->dim, c->eps);
}

/* ---- forward ------------------------------------------------------------------ */

static int cpu_forward(ss_backend_ctx *c, const ss_forward_item *items, int32_t n_items, float *logits) {
  const ss_model *m = c->model;
  int dim = c->dim;

  /* token rows: item of each row, stream index, first row of each item */
  int T = 0, n_want = 0;
  int64_t att_work = 0;
  for (int i = 0; i < n_items; i++) {
    const ss_forward_item *it = &items[i];
    if (T + it->n_tokens > c->max_tokens)
      return ss_fail(SS_ERR_LIMIT, "cpu backend: %d+ tokens exceed max_batch_tokens %d", T + it->n_tokens,
                     c->max_tokens);
    c->item_row[i] = T;
    for (int j = 0; j < it->n_tokens; j++, T++) {
      c->tok_item[T] = i;
      c->tok_pos[T] = it->start_index + j;
      att_work += ss_geom_n_visible(it->start_index + j, it->geom.capacity);
      memcpy(c->x + (int64_t)T * dim, m->tok_embeddings + (int64_t)it->tokens[j] * dim, (size_t)dim * sizeof(float));
    }
    if (it->want_logits) c->logit_row[n_want++] = T - 1;
  }
  c->items = items;
  c->n_items = n_items;
  c->T = T;
  att_work *= (int64_t)c->q_dim * 2;

  /* Attention tasks: one per (token, K/V head), all query heads of the group
   * against each K/V row read once. Split a group in halves while there are too
   * few tasks for the threads (batch-1 decode with few K/V heads); per-head
   * results are the same either way. */
  int ah = c->attn_heads_max;
  while (ah > 1 && c->group % ah) ah--;
  if (att_work >= c->par_min_work)
    while (ah % 2 == 0 && (int64_t)T * (c->n_heads / ah) < 2 * (int64_t)c->n_threads) ah /= 2;
  c->attn_heads = ah;

  ss_threadpool_run(c->pool, T, grain_for(c, T, (int64_t)T * c->hd * 64), rope_task, c);

  for (int l = 0; l < c->n_layers; l++) {
    const ss_layer_weights *w = &m->layers[l];
    c->layer = l;

    norm_job nj = {c, w->attn_norm};
    ss_threadpool_run(c->pool, T, grain_for(c, T, (int64_t)T * dim), norm_task, &nj);

    mm_job qkv = {.x = c->xb, .T = T, .in = dim, .accumulate = 0, .n_seg = 3,
                  .seg = {{c->q, w->wq, w->bq, c->q_dim}, {c->k, w->wk, w->bk, c->kv_dim}, {c->v, w->wv, w->bv, c->kv_dim}}};
    run_mm(c, &qkv);

    ss_threadpool_run(c->pool, T, grain_for(c, T, (int64_t)T * c->kv_dim * 2), krot_task, c);
    int64_t n_att = (int64_t)T * (c->n_heads / c->attn_heads);
    ss_threadpool_run(c->pool, n_att, grain_for(c, n_att, att_work), attn_task, c);
    write_kv(c);

    mm_job wo = {.x = c->att, .T = T, .in = c->q_dim, .accumulate = 1, .n_seg = 1, .seg = {{c->x, w->wo, NULL, dim}}};
    run_mm(c, &wo);

    norm_job nf = {c, w->ffn_norm};
    ss_threadpool_run(c->pool, T, grain_for(c, T, (int64_t)T * dim), norm_task, &nf);
    ffn_job fj = {c, w};
    ss_threadpool_run(c->pool, c->hidden, grain_for(c, c->hidden, (int64_t)T * dim * c->hidden * 2), ffn_task, &fj);

    mm_job down = {.x = c->hb, .T = T, .in = c->hidden, .accumulate = 1, .n_seg = 1,
                   .seg = {{c->x, w->w_down, NULL, dim}}};
    run_mm(c, &down);
  }

  if (n_want > 0) {
    ss_threadpool_run(c->pool, n_want, grain_for(c, n_want, (int64_t)n_want * dim), final_norm_task, c);
    mm_job head = {.x = c->xl, .T = n_want, .in = dim, .accumulate = 0, .n_seg = 1,
                   .seg = {{logits, m->lm_head, NULL, c->vocab}}};
    run_mm(c, &head);
  }
  c->items = NULL;
  return SS_OK;
}

static const ss_backend_ops cpu_ops = {
    .name = "cpu",
    .init = cpu_init,
    .destroy = cpu_destroy,
    .kv_create = cpu_kv_create,
    .kv_reserve = cpu_kv_reserve,
    .kv_destroy = cpu_kv_destroy,
    .kv_bytes = cpu_kv_bytes,
    .kv_bytes_per_token = cpu_kv_bytes_per_token,
    .forward = cpu_forward,
};

const ss_backend_ops *ss_backend_cpu(void) { return &cpu_ops; }
