/*
 * backend_cpu.c — the CPU backend: Llama forward pass over a batch of
 * sequences with StreamingLLM ring caches (geometry: cache_geometry.h).
 *
 * Per forward pass, T tokens of all items are stacked into [T, dim] and go
 * through every matmul together (register-blocked over tokens and rows, for
 * every weight type: cpu_wkernels.h; the kernel table is chosen at init for
 * this CPU, SS_CPU_ISA=portable|avx2|avx512 picks one). Matmuls with Q8_0 /
 * Q4_0 weights first quantize their input rows per block.
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
#include "cpu_wkernels.h"
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

/* The cache's element type when ss_engine_params.kv_dtype is SS_KV_DTYPE_DEFAULT (decision D??:
 * F16 costs no perplexity measurable on the stories260K stream and halves the bytes). */
#define CPU_KV_DEFAULT SS_DTYPE_F16

typedef struct cpu_kv {
  ss_cache_geometry geom;
  int32_t n_slots; /* slots allocated in every layer buffer */
  int64_t bytes;   /* bytes of the 2 * n_layers buffers as allocated */
  void **k;        /* [n_layers] -> [n_slots, kv_dim] of the cache type, keys rotated at their stream index */
  void **v;        /* [n_layers] -> [n_slots, kv_dim] */
} cpu_kv;

/* ---- backend context ------------------------------------------------------ */

struct ss_backend_ctx {
  const ss_model *model;
  int dim, hidden, n_layers, n_heads, n_kv_heads, hd, q_dim, kv_dim, vocab;
  float eps;
  int max_tokens;
  int n_threads;
  int32_t kv_dtype;     /* SS_DTYPE_F32 or SS_DTYPE_F16: K/V rows are stored as f32 or IEEE half */
  size_t kv_es;         /* bytes per cached element */
  int64_t par_min_work; /* jobs below this work run inline (PAR_MIN_WORK) */
  int group;            /* n_heads / n_kv_heads: query heads per K/V head */
  int attn_heads_max;   /* most query heads per attention task (SS_CPU_ATTN_HEADS; default group) */
  int attn_heads;       /* query heads per attention task in this forward pass (divides group) */
  ss_threadpool *pool;
  const ss_wkernels *wk; /* matmul kernels for this CPU */
  void (*rotate)(float *restrict x, const float *restrict cos_tab, const float *restrict sin_tab, int hd); /* RoPE layout */
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
  int8_t *xq_q;      /* [T, max_in] a matmul input quantized per block (Q8_0 / Q4_0 weights) */
  float *xq_d;       /* [T, max_in / 32] its block scales */
  int max_in;        /* widest matmul input: max(dim, q_dim, hidden) */

  /* per-thread attention scratch, for up to `group` heads */
  float *th_f;          /* [n_threads, group * (3 * hd + ATT_BLOCK + 2)] */
  const float **th_vp;  /* [n_threads, ATT_BLOCK] */
  float *th_kv;         /* [n_threads, 2 * ATT_BLOCK * hd]: f16 cache rows widened (keys, then values) */

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
  free(c->xq_q);
  free(c->xq_d);
  free(c->th_f);
  free(c->th_vp);
  free(c->th_kv);
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
  const char *isa = getenv("SS_CPU_ISA");
  c->wk = ss_wkernels_select(isa);
  if (!c->wk) {
    free(c);
    return ss_fail(SS_ERR_UNSUPPORTED, "cpu backend: SS_CPU_ISA=%s: unknown, or this CPU cannot run it "
                   "(portable, avx2, avx512)", isa);
  }
  c->kv_dtype = params->kv_dtype == SS_KV_DTYPE_DEFAULT ? CPU_KV_DEFAULT : params->kv_dtype;
  if (c->kv_dtype != SS_DTYPE_F32 && c->kv_dtype != SS_DTYPE_F16) {
    free(c);
    return ss_fail(SS_ERR_UNSUPPORTED, "cpu backend: kv_dtype %d is not supported (F32 or F16)", params->kv_dtype);
  }
  c->kv_es = c->kv_dtype == SS_DTYPE_F16 ? 2 : 4;
  c->rotate = model->rope_adjacent ? ss_rope_rotate_adjacent : ss_rope_rotate;
  c->max_in = c->dim > c->q_dim ? c->dim : c->q_dim;
  if (c->hidden > c->max_in) c->max_in = c->hidden;

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
  c->xq_q = xcalloc(T * (size_t)c->max_in, 1);
  c->xq_d = xcalloc(T * ((size_t)c->max_in / SS_QBLOCK + 1), sizeof(float));
  c->th_f = xcalloc((size_t)nt * (size_t)c->group * (3 * (size_t)c->hd + ATT_BLOCK + 2), sizeof(float));
  c->th_vp = xcalloc((size_t)nt * ATT_BLOCK, sizeof(float *));
  c->th_kv = xcalloc((size_t)nt * 2 * ATT_BLOCK * (size_t)c->hd, sizeof(float));
  if (!c->inv_freq || !c->x || !c->xb || !c->q || !c->k || !c->v || !c->att || !c->hb || !c->hb2 || !c->rope ||
      !c->xl || !c->tok_item || !c->tok_pos || !c->item_row || !c->logit_row || !c->xq_q || !c->xq_d || !c->th_f ||
      !c->th_vp || !c->th_kv) {
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
    kv->k = calloc((size_t)c->n_layers, sizeof(void *));
    kv->v = calloc((size_t)c->n_layers, sizeof(void *));
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
  size_t bytes = (size_t)n_slots * (size_t)c->kv_dim * c->kv_es;
  for (int l = 0; l < c->n_layers; l++) {
    /* realloc keeps the rows of the slots already in use */
    void *nk = realloc(kv->k[l], bytes);
    if (!nk) goto oom;
    kv->k[l] = nk;
    void *nv = realloc(kv->v[l], bytes);
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

/* K and V rows of one slot in every layer, in the cache type */
static int64_t cpu_kv_bytes_per_token(ss_backend_ctx *c) {
  return (int64_t)c->n_layers * 2 * (int64_t)c->kv_dim * (int64_t)c->kv_es;
}

static int64_t cpu_kv_bytes(ss_backend_ctx *c, const void *kvp) { return ((const cpu_kv *)kvp)->bytes; }

/* ---- parallel tasks ---------------------------------------------------------- */

static int64_t grain_for(const ss_backend_ctx *c, int64_t n_tasks, int64_t work) {
  if (c->n_threads <= 1 || work < c->par_min_work) return n_tasks; /* inline */
  int64_t g = n_tasks / ((int64_t)c->n_threads * 4);
  return g < 1 ? 1 : g;
}

/* y_s[T, W_s.rows] (+)= x[T, in] . W_s^T (+ b_s), up to three matrices sharing x (and in). */
typedef struct mm_seg {
  float *y;
  const ss_weight *w;
  const float *b;
} mm_seg;

typedef struct mm_job {
  const ss_backend_ctx *c;
  const float *x;
  const ss_act_q8 *xq; /* x quantized, when a segment has block-type weights */
  int T, accumulate, n_seg;
  mm_seg seg[3];
} mm_job;

static void mm_task(void *ctx, int64_t begin, int64_t end, int tid) {
  const mm_job *j = ctx;
  int64_t base = 0;
  for (int s = 0; s < j->n_seg; s++) {
    const mm_seg *g = &j->seg[s];
    int64_t out = g->w->rows, lo = begin > base ? begin : base, hi = end < base + out ? end : base + out;
    if (lo < hi)
      j->c->wk->mm[g->w->dtype](g->y, j->x, j->xq, g->w, g->b, j->T, (int)(lo - base), (int)(hi - base),
                                j->accumulate);
    base += out;
  }
}

/* x[T, in] quantized per block into c->xq_q / xq_d (for Q8_0 / Q4_0 weights). */
typedef struct quant_job {
  ss_backend_ctx *c;
  const float *x;
  int in;
} quant_job;

static void quant_task(void *ctx, int64_t begin, int64_t end, int tid) {
  const quant_job *j = ctx;
  for (int64_t t = begin; t < end; t++)
    ss_quantize_act(j->c->xq_q + t * j->in, j->c->xq_d + t * (j->in / SS_QBLOCK), j->x + t * j->in, j->in);
}

/* Quantize x[T, in] when any of the n weights needs it; *view describes the result. NULL when none does. */
static const ss_act_q8 *quantize_input(ss_backend_ctx *c, const float *x, int T, const ss_weight *const *w, int n,
                                       ss_act_q8 *view) {
  int need = 0;
  for (int i = 0; i < n; i++) need |= ss_wkernel_needs_q8(w[i]->dtype);
  if (!need) return NULL;
  int in = w[0]->cols;
  quant_job qj = {c, x, in};
  ss_threadpool_run(c->pool, T, grain_for(c, T, (int64_t)T * in * 4), quant_task, &qj);
  *view = (ss_act_q8){.q = c->xq_q, .d = c->xq_d, .in = in};
  return view;
}

static void run_mm(ss_backend_ctx *c, mm_job *j) {
  int64_t rows = 0;
  const ss_weight *ws[3];
  for (int s = 0; s < j->n_seg; s++) rows += j->seg[s].w->rows, ws[s] = j->seg[s].w;
  ss_act_q8 view;
  j->c = c;
  j->xq = quantize_input(c, j->x, j->T, ws, j->n_seg, &view);
  ss_threadpool_run(c->pool, rows, grain_for(c, rows, rows * j->T * ws[0]->cols), mm_task, j);
}

/* hb[T, hidden] = silu(xb . Wgate^T) * (xb . Wup^T) */
typedef struct ffn_job {
  ss_backend_ctx *c;
  const ss_layer_weights *w;
  const ss_act_q8 *xq; /* xb quantized, when gate or up has block-type weights */
} ffn_job;

static void ffn_task(void *ctx, int64_t begin, int64_t end, int tid) {
  const ffn_job *j = ctx;
  ss_backend_ctx *c = j->c;
  int T = c->T, H = c->hidden, r0 = (int)begin, r1 = (int)end;
  c->wk->mm[j->w->w_gate.dtype](c->hb, c->xb, j->xq, &j->w->w_gate, NULL, T, r0, r1, 0);
  c->wk->mm[j->w->w_up.dtype](c->hb2, c->xb, j->xq, &j->w->w_up, NULL, T, r0, r1, 0);
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

/* x[n] rounded to the nearest f16 values, in place. */
static void round_f16(const ss_wkernels *wk, float *x, int n) {
  uint16_t h[256];
  for (int i = 0; i < n; i += 256) {
    int m = n - i < 256 ? n - i : 256;
    wk->f32_to_f16(h, x + i, m);
    wk->f16_to_f32(x + i, h, m);
  }
}

/* Rotate the chunk keys k[t] at their own stream index (and, for an f16 cache, round k and v to it). */
static void krot_task(void *ctx, int64_t begin, int64_t end, int tid) {
  ss_backend_ctx *c = ctx;
  int half = c->hd / 2;
  for (int64_t t = begin; t < end; t++) {
    const float *r = c->rope + t * 4 * half;
    float *k = c->k + t * c->kv_dim, *v = c->v + t * c->kv_dim;
    for (int h = 0; h < c->n_kv_heads; h++) c->rotate(k + h * c->hd, r, r + half, c->hd);
    if (c->kv_dtype == SS_DTYPE_F16) { /* the chunk's own keys and values as the cache will hold them */
      round_f16(c->wk, k, c->kv_dim);
      round_f16(c->wk, v, c->kv_dim);
    }
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
  float *kbuf, *vbuf; /* [ATT_BLOCK, hd] each: f16 cache rows of the pending block, widened */
  const ss_wkernels *wk;
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

/* Score key rows [0, n) of k (stride elements apart; f32, or f16 when `half`) with the G query vectors
 * q[G, hd]; values at the same rows of v. f16 rows are widened (exactly) into the block's buffers first,
 * so the arithmetic is that of f32 rows holding the same values. */
static void attn_run(attn_acc *a, const float *q, const void *k, const void *v, int64_t n, int stride, int half,
                     float scale) {
  size_t step = (size_t)stride * (half ? 2 : 4);
  /* spans up to the next block boundary: scores in one kernel call */
  while (n > 0) {
    int m = ATT_BLOCK - a->n, hd = a->hd;
    if (n < m) m = (int)n;
    if (half) {
      float *kb = a->kbuf + (int64_t)a->n * hd, *vb = a->vbuf + (int64_t)a->n * hd;
      for (int j = 0; j < m; j++) {
        a->wk->f16_to_f32(kb + (int64_t)j * hd, (const uint16_t *)((const char *)k + j * step), hd);
        a->wk->f16_to_f32(vb + (int64_t)j * hd, (const uint16_t *)((const char *)v + j * step), hd);
        a->vp[a->n + j] = vb + (int64_t)j * hd;
      }
      ss_attn_scores_g(a->s + a->n, ATT_BLOCK, q, a->G, kb, m, hd, hd, scale);
    } else {
      ss_attn_scores_g(a->s + a->n, ATT_BLOCK, q, a->G, k, m, stride, hd, scale);
      for (int j = 0; j < m; j++) a->vp[a->n + j] = (const float *)((const char *)v + j * step);
    }
    a->n += m;
    k = (const char *)k + (size_t)m * step;
    v = (const char *)v + (size_t)m * step;
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
  attn_acc a = {.out = qs + (size_t)G * hd, .vp = c->th_vp + (size_t)tid * ATT_BLOCK, .wk = c->wk, .hd = hd, .G = G};
  a.kbuf = c->th_kv + (size_t)tid * 2 * ATT_BLOCK * (size_t)hd;
  a.vbuf = a.kbuf + (size_t)ATT_BLOCK * hd;
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
      c->rotate(qt + (int64_t)g * hd, r, r + half, hd);
      c->rotate(qs + (int64_t)g * hd, r + 2 * half, r + 3 * half, hd);
    }

    /* cache rows of this K/V head (kv_es bytes per element), and the chunk's own rows (f32) */
    int hc = c->kv_dtype == SS_DTYPE_F16;
    size_t es = c->kv_es;
    const char *ck = kv->k[c->layer] ? (const char *)kv->k[c->layer] + (size_t)kvh * hd * es : NULL;
    const char *cv = kv->v[c->layer] ? (const char *)kv->v[c->layer] + (size_t)kvh * hd * es : NULL;
    const float *sk = c->k + row0 * kvd + (int64_t)kvh * hd;
    const float *sv = c->v + row0 * kvd + (int64_t)kvh * hd;

    memset(a.out, 0, (size_t)G * hd * sizeof(float));
    for (int g = 0; g < G; g++) a.m[g] = -INFINITY, a.l[g] = 0.0f;
    a.n = 0;

    /* sinks: i in [0, min(S, t+1)), query rotated at n(t)-1 */
    int64_t n_sink = ss_geom_n_sinks_visible(t, S);
    int64_t sc = n_sink < start ? n_sink : start; /* sinks in the cache: [0, sc) */
    if (sc > 0) attn_run(&a, qs, ck, cv, sc, kvd, hc, scale);
    if (n_sink > sc)
      attn_run(&a, qs, sk + (sc - start) * kvd, sv + (sc - start) * kvd, n_sink - sc, kvd, 0, scale);

    /* recent: i in [max(S, t-R+1), t], query rotated at t */
    int64_t lo = ss_geom_recent_lo(t, S, C);
    int64_t cache_hi = t < start - 1 ? t : start - 1; /* recent keys from the cache: [lo, cache_hi] */
    if (cache_hi >= lo) {
      int64_t n = cache_hi - lo + 1;
      int32_t s0 = ss_geom_slot(lo, S, C);
      int64_t first = ss_geom_ring_run(s0, n, C); /* up to the end of the ring, then wrap to S */
      size_t at = (size_t)s0 * kvd * es, wrap = (size_t)S * kvd * es;
      attn_run(&a, qt, ck + at, cv + at, first, kvd, hc, scale);
      if (n > first) attn_run(&a, qt, ck + wrap, cv + wrap, n - first, kvd, hc, scale);
    }
    int64_t chunk_lo = lo > start ? lo : start;
    if (t >= chunk_lo)
      attn_run(&a, qt, sk + (chunk_lo - start) * kvd, sv + (chunk_lo - start) * kvd, t - chunk_lo + 1, kvd, 0, scale);
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
  size_t row_bytes = (size_t)kvd * c->kv_es;
  for (int i = 0; i < c->n_items; i++) {
    const ss_forward_item *it = &c->items[i];
    cpu_kv *kv = it->kv;
    int32_t S = it->geom.n_sinks, C = it->geom.capacity;
    int64_t end = it->start_index + it->n_tokens; /* one past the last stream index */
    char *ck = kv->k[c->layer], *cv = kv->v[c->layer];
    for (int j = 0; j < it->n_tokens; j++) {
      int64_t idx = it->start_index + j;
      if (!ss_geom_kept(idx, end, S, C)) continue; /* overwritten later in this chunk */
      int64_t slot = ss_geom_slot(idx, S, C), row = c->item_row[i] + j;
      if (c->kv_dtype == SS_DTYPE_F16) { /* exact: the rows were rounded to f16 values (krot_task) */
        c->wk->f32_to_f16((uint16_t *)(void *)(ck + slot * row_bytes), c->k + row * kvd, kvd);
        c->wk->f32_to_f16((uint16_t *)(void *)(cv + slot * row_bytes), c->v + row * kvd, kvd);
      } else {
        memcpy(ck + slot * row_bytes, c->k + row * kvd, row_bytes);
        memcpy(cv + slot * row_bytes, c->v + row * kvd, row_bytes);
      }
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
      ss_weight_row_f32(&m->tok_embeddings, it->tokens[j], c->x + (int64_t)T * dim);
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

    mm_job qkv = {.x = c->xb, .T = T, .accumulate = 0, .n_seg = 3,
                  .seg = {{c->q, &w->wq, w->bq}, {c->k, &w->wk, w->bk}, {c->v, &w->wv, w->bv}}};
    run_mm(c, &qkv);

    ss_threadpool_run(c->pool, T, grain_for(c, T, (int64_t)T * c->kv_dim * 2), krot_task, c);
    int64_t n_att = (int64_t)T * (c->n_heads / c->attn_heads);
    ss_threadpool_run(c->pool, n_att, grain_for(c, n_att, att_work), attn_task, c);
    write_kv(c);

    mm_job wo = {.x = c->att, .T = T, .accumulate = 1, .n_seg = 1, .seg = {{c->x, &w->wo, NULL}}};
    run_mm(c, &wo);

    norm_job nf = {c, w->ffn_norm};
    ss_threadpool_run(c->pool, T, grain_for(c, T, (int64_t)T * dim), norm_task, &nf);
    const ss_weight *gu[2] = {&w->w_gate, &w->w_up};
    ss_act_q8 view;
    ffn_job fj = {c, w, quantize_input(c, c->xb, T, gu, 2, &view)};
    ss_threadpool_run(c->pool, c->hidden, grain_for(c, c->hidden, (int64_t)T * dim * c->hidden * 2), ffn_task, &fj);

    mm_job down = {.x = c->hb, .T = T, .accumulate = 1, .n_seg = 1, .seg = {{c->x, &w->w_down, NULL}}};
    run_mm(c, &down);
  }

  if (n_want > 0) {
    ss_threadpool_run(c->pool, n_want, grain_for(c, n_want, (int64_t)n_want * dim), final_norm_task, c);
    mm_job head = {.x = c->xl, .T = n_want, .accumulate = 0, .n_seg = 1, .seg = {{logits, &m->lm_head, NULL}}};
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
