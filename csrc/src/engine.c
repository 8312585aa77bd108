/*
 * engine.c — engines, sequences and the batched step of the public C ABI.
 *
 * The engine owns the sequence table (ids come from a LIFO free list, so a
 * freed id is the next one handed out), validates every step before touching
 * anything, grows each sequence's KV storage on demand (doubling, up to its
 * capacity), calls the backend's forward pass and samples on the host.
 * Cache geometry: cache_geometry.h. ss_seq_stats.n_sinks reports the configured
 * S of a streaming sequence (0 for window / dense).
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "sampler.h"

/* ---- limits ------------------------------------------------------------------ */
#define MAX_CAPACITY (1 << 24)
#define MAX_SEQUENCES (1 << 20)
#define MAX_BATCH_TOKENS (1 << 16)
#define MAX_THREADS 1024
#define FIRST_RESERVE 16 /* slots reserved at the first step of a sequence */

/* ---- types -------------------------------------------------------------------- */

typedef struct ss_seq {
  int32_t policy;
  ss_cache_geometry geom;
  int64_t n_seen;     /* tokens fed since creation */
  int32_t n_reserved; /* slots the backend storage holds */
  void *kv;           /* backend storage */
  ss_sampling sampling;
  ss_rng rng;
  uint64_t stamp; /* last step that listed this sequence (duplicate check) */
} ss_seq;

struct ss_engine {
  const ss_model *model;
  ss_model_info info;
  ss_engine_params params;
  const ss_backend_ops *ops;
  ss_backend_ctx *bctx;

  ss_seq **seqs;     /* [max_sequences], NULL when the id is free */
  int32_t *free_ids; /* LIFO stack of free ids */
  int32_t n_free;
  uint64_t n_steps;

  ss_forward_item *items; /* [max_batch_tokens] (an item has >= 1 token) */
  float *logits;          /* [logits_rows, vocab], grown on demand */
  int32_t logits_rows;
  ss_candidate *cand; /* [vocab] sampler scratch */
};

/* ---- backends ----------------------------------------------------------------- */

static const ss_backend_ops *backend_ops(int32_t backend) {
  switch (backend) {
    case SS_BACKEND_CPU: return ss_backend_cpu();
    case SS_BACKEND_CUDA: return ss_backend_cuda();
    default: return NULL;
  }
}

int ss_backend_available(int32_t backend) { return backend_ops(backend) != NULL; }

/* ---- engine ------------------------------------------------------------------- */

ss_engine_params ss_engine_default_params(void) {
  ss_engine_params p;
  memset(&p, 0, sizeof p);
  p.backend = SS_BACKEND_CPU;
  p.n_threads = 0;
  p.max_sequences = 1024;
  p.max_batch_tokens = 512;
  p.device = 0;
  return p;
}

static int check_model(const ss_model *m) {
  const ss_model_info *i = &m->info;
  if (i->dim <= 0 || i->hidden_dim <= 0 || i->n_layers <= 0 || i->n_heads <= 0 || i->n_kv_heads <= 0 ||
      i->head_dim <= 0 || i->vocab_size <= 0)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "engine: model has a non-positive dimension");
  if (i->n_heads % i->n_kv_heads != 0)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "engine: model n_heads %d is not a multiple of n_kv_heads %d",
                   i->n_heads, i->n_kv_heads);
  if (i->head_dim % 2 != 0)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "engine: model head_dim %d is odd (RoPE needs pairs)", i->head_dim);
  if (!m->tok_embeddings || !m->final_norm || !m->lm_head || !m->layers)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "engine: model has missing weights");
  return SS_OK;
}

int ss_engine_create(const ss_model *model, const ss_engine_params *params, ss_engine **out) {
  if (!out) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: out is NULL");
  *out = NULL;
  if (!model) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: model is NULL");
  ss_engine_params p = params ? *params : ss_engine_default_params();
  if (p.backend != SS_BACKEND_CPU && p.backend != SS_BACKEND_CUDA)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: unknown backend %d", p.backend);
  if (p.n_threads < 0 || p.n_threads > MAX_THREADS)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: n_threads %d outside [0, %d]", p.n_threads,
                   MAX_THREADS);
  if (p.max_sequences < 1 || p.max_sequences > MAX_SEQUENCES)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: max_sequences %d outside [1, %d]",
                   p.max_sequences, MAX_SEQUENCES);
  if (p.max_batch_tokens < 1 || p.max_batch_tokens > MAX_BATCH_TOKENS)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: max_batch_tokens %d outside [1, %d]",
                   p.max_batch_tokens, MAX_BATCH_TOKENS);
  if (p.device < 0) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: device %d < 0", p.device);
  int rc = check_model(model);
  if (rc) return rc;
  const ss_backend_ops *ops = backend_ops(p.backend);
  if (!ops)
    return ss_fail(SS_ERR_UNSUPPORTED, "ss_engine_create: %s backend not built or not available",
                   p.backend == SS_BACKEND_CUDA ? "cuda" : "cpu");

  ss_engine *e = calloc(1, sizeof *e);
  if (!e) return ss_fail(SS_ERR_OUT_OF_MEMORY, "ss_engine_create: out of memory");
  e->model = model;
  e->info = model->info;
  e->params = p;
  e->ops = ops;
  e->seqs = calloc((size_t)p.max_sequences, sizeof *e->seqs);
  e->free_ids = malloc((size_t)p.max_sequences * sizeof *e->free_ids);
  e->items = malloc((size_t)p.max_batch_tokens * sizeof *e->items);
  e->cand = malloc((size_t)e->info.vocab_size * sizeof *e->cand);
  if (!e->seqs || !e->free_ids || !e->items || !e->cand) {
    ss_engine_free(e);
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "ss_engine_create: out of memory for %d sequences", p.max_sequences);
  }
  /* free ids as a stack with 0 on top */
  for (int32_t i = 0; i < p.max_sequences; i++) e->free_ids[i] = p.max_sequences - 1 - i;
  e->n_free = p.max_sequences;
  rc = ops->init(model, &p, &e->bctx);
  if (rc) {
    e->bctx = NULL;
    ss_engine_free(e);
    return rc;
  }
  *out = e;
  return SS_OK;
}

static void seq_destroy(ss_engine *e, ss_seq *s) {
  if (!s) return;
  if (s->kv) e->ops->kv_destroy(e->bctx, s->kv);
  free(s);
}

void ss_engine_free(ss_engine *e) {
  if (!e) return;
  if (e->seqs) {
    for (int32_t i = 0; i < e->params.max_sequences; i++) seq_destroy(e, e->seqs[i]);
  }
  if (e->bctx) e->ops->destroy(e->bctx);
  free(e->seqs);
  free(e->free_ids);
  free(e->items);
  free(e->logits);
  free(e->cand);
  free(e);
}

/* ---- sequences ------------------------------------------------------------------ */

ss_seq_params ss_seq_default_params(void) {
  ss_seq_params p;
  memset(&p, 0, sizeof p);
  p.policy = SS_POLICY_STREAMING;
  p.n_sinks = 4;
  p.capacity = 0;
  p.temperature = 0.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.seed = 0;
  return p;
}

static int check_sampling(const char *fn, const ss_seq_params *p) {
  if (!(p->temperature >= 0.0f) || isinf(p->temperature))
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: temperature %g must be finite and >= 0", fn, (double)p->temperature);
  if (p->top_k < 0) return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: top_k %d < 0", fn, p->top_k);
  if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: top_p %g outside (0, 1]", fn, (double)p->top_p);
  return SS_OK;
}

static void set_sampling(ss_seq *s, const ss_seq_params *p) {
  s->sampling.temperature = p->temperature;
  s->sampling.top_k = p->top_k;
  s->sampling.top_p = p->top_p;
  ss_rng_seed(&s->rng, p->seed);
}

static ss_seq *find_seq(const ss_engine *e, int32_t id) {
  if (!e || id < 0 || id >= e->params.max_sequences) return NULL;
  return e->seqs[id];
}

int ss_seq_create(ss_engine *e, const ss_seq_params *params, int32_t *out_id) {
  if (!e || !out_id) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_create: engine or out_id is NULL");
  *out_id = -1;
  ss_seq_params p = params ? *params : ss_seq_default_params();
  if (p.policy != SS_POLICY_STREAMING && p.policy != SS_POLICY_WINDOW && p.policy != SS_POLICY_DENSE)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_create: unknown policy %d", p.policy);
  int32_t cap = p.capacity;
  if (cap == 0) cap = e->info.max_seq_len;
  if (cap < 2 || cap > MAX_CAPACITY)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_create: capacity %d outside [2, %d]%s", cap, MAX_CAPACITY,
                   p.capacity == 0 ? " (capacity 0 = the model's max_seq_len)" : "");
  int32_t sinks = 0;
  if (p.policy == SS_POLICY_STREAMING) {
    if (p.n_sinks < 0 || p.n_sinks >= cap)
      return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_create: n_sinks %d outside [0, capacity %d)", p.n_sinks, cap);
    sinks = p.n_sinks;
  }
  int rc = check_sampling("ss_seq_create", &p);
  if (rc) return rc;
  if (e->n_free == 0)
    return ss_fail(SS_ERR_LIMIT, "ss_seq_create: max_sequences %d sequences are alive", e->params.max_sequences);

  ss_seq *s = calloc(1, sizeof *s);
  if (!s) return ss_fail(SS_ERR_OUT_OF_MEMORY, "ss_seq_create: out of memory");
  s->policy = p.policy;
  s->geom.n_sinks = sinks;
  s->geom.capacity = cap;
  set_sampling(s, &p);
  rc = e->ops->kv_create(e->bctx, s->geom, &s->kv);
  if (rc) {
    free(s);
    return rc;
  }
  int32_t id = e->free_ids[--e->n_free];
  e->seqs[id] = s;
  *out_id = id;
  return SS_OK;
}

int ss_seq_free(ss_engine *e, int32_t seq_id) {
  if (!e) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_free: engine is NULL");
  ss_seq *s = find_seq(e, seq_id);
  if (!s) return ss_fail(SS_ERR_NOT_FOUND, "ss_seq_free: unknown sequence %d", seq_id);
  seq_destroy(e, s);
  e->seqs[seq_id] = NULL;
  e->free_ids[e->n_free++] = seq_id;
  return SS_OK;
}

int ss_seq_set_sampling(ss_engine *e, int32_t seq_id, const ss_seq_params *params) {
  if (!e || !params) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_set_sampling: engine or params is NULL");
  ss_seq *s = find_seq(e, seq_id);
  if (!s) return ss_fail(SS_ERR_NOT_FOUND, "ss_seq_set_sampling: unknown sequence %d", seq_id);
  int rc = check_sampling("ss_seq_set_sampling", params);
  if (rc) return rc;
  set_sampling(s, params);
  return SS_OK;
}

static int32_t seq_cached(const ss_seq *s) { return ss_geom_n_cached(s->n_seen, s->geom.capacity); }

int ss_seq_get_stats(const ss_engine *e, int32_t seq_id, ss_seq_stats *out) {
  if (!e || !out) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_get_stats: engine or out is NULL");
  const ss_seq *s = find_seq(e, seq_id);
  if (!s) return ss_fail(SS_ERR_NOT_FOUND, "ss_seq_get_stats: unknown sequence %d", seq_id);
  memset(out, 0, sizeof *out);
  out->n_cached = seq_cached(s);
  out->n_sinks = s->geom.n_sinks;
  out->capacity = s->geom.capacity;
  out->policy = s->policy;
  out->n_seen = s->n_seen;
  out->n_evicted = s->n_seen - out->n_cached;
  out->cache_bytes = e->ops->kv_bytes(e->bctx, s->kv);
  return SS_OK;
}

int ss_seq_get_cache_indices(const ss_engine *e, int32_t seq_id, int64_t *out, int32_t cap, int32_t *out_n) {
  if (!e) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_get_cache_indices: engine is NULL");
  if (cap < 0 || (cap > 0 && !out))
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_get_cache_indices: bad output buffer (cap %d)", cap);
  const ss_seq *s = find_seq(e, seq_id);
  if (!s) return ss_fail(SS_ERR_NOT_FOUND, "ss_seq_get_cache_indices: unknown sequence %d", seq_id);
  int32_t n = seq_cached(s);
  if (out_n) *out_n = n;
  if (n == 0) return SS_OK;
  /* what the last token (t = n_seen - 1) sees: sinks, then the recent window */
  int64_t t = s->n_seen - 1;
  int64_t n_sink = ss_geom_n_sinks_visible(t, s->geom.n_sinks), lo = ss_geom_recent_lo(t, s->geom.n_sinks, s->geom.capacity);
  int32_t k = 0;
  for (int64_t i = 0; i < n_sink && k < cap; i++) out[k++] = i;
  for (int64_t i = lo; i <= t && k < cap; i++) out[k++] = i;
  return SS_OK;
}

/* ---- step ----------------------------------------------------------------------- */

static int32_t item_flags(const int32_t *flags, int32_t i) { return flags ? flags[i] : SS_STEP_SAMPLE; }

/* Everything is checked before anything changes. */
static int validate_step(ss_engine *e, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                         const int32_t *tokens, const int32_t *flags, const int32_t *targets) {
  if (!seq_ids || !n_tokens || !tokens)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: seq_ids, n_tokens and tokens must not be NULL");
  uint64_t stamp = ++e->n_steps;
  int64_t total = 0;
  for (int32_t i = 0; i < n_items; i++) {
    ss_seq *s = find_seq(e, seq_ids[i]);
    if (!s) return ss_fail(SS_ERR_NOT_FOUND, "ss_engine_step: item %d: unknown sequence %d", i, seq_ids[i]);
    if (s->stamp == stamp)
      return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: item %d: sequence %d appears twice in one step", i,
                     seq_ids[i]);
    s->stamp = stamp;
    if (n_tokens[i] < 1)
      return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: item %d (sequence %d): n_tokens %d < 1", i,
                     seq_ids[i], n_tokens[i]);
    if (flags && (flags[i] & ~(SS_STEP_SAMPLE | SS_STEP_LOGITS)))
      return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: item %d (sequence %d): unknown flags 0x%x", i,
                     seq_ids[i], (unsigned)flags[i]);
    if (targets && targets[i] >= e->info.vocab_size)
      return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: item %d (sequence %d): target %d outside [0, %d)", i,
                     seq_ids[i], targets[i], e->info.vocab_size);
    total += n_tokens[i];
  }
  if (total > e->params.max_batch_tokens)
    return ss_fail(SS_ERR_LIMIT, "ss_engine_step: %lld tokens exceed max_batch_tokens %d", (long long)total,
                   e->params.max_batch_tokens);
  int64_t off = 0;
  for (int32_t i = 0; i < n_items; i++) {
    for (int32_t j = 0; j < n_tokens[i]; j++) {
      int32_t tok = tokens[off + j];
      if (tok < 0 || tok >= e->info.vocab_size)
        return ss_fail(SS_ERR_INVALID_ARGUMENT,
                       "ss_engine_step: item %d (sequence %d): token %d at position %d outside [0, %d)", i,
                       seq_ids[i], tok, j, e->info.vocab_size);
    }
    off += n_tokens[i];
    const ss_seq *s = e->seqs[seq_ids[i]];
    if (s->policy == SS_POLICY_DENSE && !ss_geom_dense_fits(s->n_seen, n_tokens[i], s->geom.capacity))
      return ss_fail(SS_ERR_CONTEXT_FULL,
                     "ss_engine_step: dense sequence %d is full: %lld cached + %d new tokens exceed capacity %d",
                     seq_ids[i], (long long)s->n_seen, n_tokens[i], s->geom.capacity);
  }
  return SS_OK;
}

/* Grow the KV storage of s to hold the slots the next n tokens write
 * (doubling, capped at capacity). Contents are kept, so a failure here
 * leaves every sequence as it was. */
static int reserve_for(ss_engine *e, ss_seq *s, int32_t n) {
  int32_t need = ss_geom_n_cached(s->n_seen + n, s->geom.capacity);
  if (need <= s->n_reserved) return SS_OK;
  int64_t grow = s->n_reserved ? 2 * (int64_t)s->n_reserved : FIRST_RESERVE;
  if (grow < need) grow = need;
  if (grow > s->geom.capacity) grow = s->geom.capacity;
  int rc = e->ops->kv_reserve(e->bctx, s->kv, (int32_t)grow);
  if (rc) return rc;
  s->n_reserved = (int32_t)grow;
  return SS_OK;
}

int ss_engine_step(ss_engine *e, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                   const int32_t *tokens, const int32_t *flags, const int32_t *targets, int32_t *out_tokens,
                   float *out_logits, float *out_target_logprobs) {
  if (!e) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: engine is NULL");
  if (n_items < 0) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: n_items %d < 0", n_items);
  if (n_items == 0) return SS_OK;
  int rc = validate_step(e, n_items, seq_ids, n_tokens, tokens, flags, targets);
  if (rc) return rc;

  int32_t vocab = e->info.vocab_size, n_want = 0;
  int64_t off = 0;
  for (int32_t i = 0; i < n_items; i++) {
    ss_seq *s = e->seqs[seq_ids[i]];
    rc = reserve_for(e, s, n_tokens[i]);
    if (rc) return rc;
    int32_t f = item_flags(flags, i);
    int want = ((f & SS_STEP_SAMPLE) && out_tokens) || ((f & SS_STEP_LOGITS) && out_logits) ||
               (targets && targets[i] >= 0 && out_target_logprobs);
    e->items[i] = (ss_forward_item){.kv = s->kv,
                                    .geom = s->geom,
                                    .start_index = s->n_seen,
                                    .n_tokens = n_tokens[i],
                                    .tokens = tokens + off,
                                    .want_logits = want};
    n_want += want;
    off += n_tokens[i];
  }
  if (n_want > e->logits_rows) {
    float *nl = realloc(e->logits, (size_t)n_want * (size_t)vocab * sizeof(float));
    if (!nl) return ss_fail(SS_ERR_OUT_OF_MEMORY, "ss_engine_step: out of memory for %d logit rows", n_want);
    e->logits = nl;
    e->logits_rows = n_want;
  }

  rc = e->ops->forward(e->bctx, e->items, n_items, e->logits);
  if (rc) return rc;

  int32_t k = 0;
  for (int32_t i = 0; i < n_items; i++) {
    ss_seq *s = e->seqs[seq_ids[i]];
    s->n_seen += n_tokens[i];
    int32_t f = item_flags(flags, i);
    const float *row = e->items[i].want_logits ? e->logits + (size_t)k++ * vocab : NULL;
    if (out_tokens) out_tokens[i] = (row && (f & SS_STEP_SAMPLE)) ? ss_sample(&s->sampling, &s->rng, row, vocab, e->cand) : -1;
    if (out_logits && row && (f & SS_STEP_LOGITS)) memcpy(out_logits + (size_t)i * vocab, row, (size_t)vocab * sizeof(float));
    if (out_target_logprobs)
      out_target_logprobs[i] = (row && targets && targets[i] >= 0) ? (float)ss_log_softmax_at(row, vocab, targets[i]) : NAN;
  }
  return SS_OK;
}
