/*
 * engine.c — engines, sequences and the batched step of the public C ABI.
 *
 * The engine owns the sequence table (ids come from a LIFO free list, so a
 * freed id is the next one handed out), validates sequence parameters (the
 * one validator: front ends ask it through ss_seq_check_params) and every
 * step item before touching anything, grows each sequence's KV storage on
 * demand (doubling, up to its capacity), calls the backend's forward pass
 * over the healthy items and samples on the host. Cache geometry:
 * cache_geometry.h. ss_seq_stats.n_sinks reports the configured S of a
 * streaming sequence (0 for window / dense).
 *
 * Errors: every failure goes to the thread-local ss_last_error() (error.c);
 * calls on a non-const engine also copy it into the engine's slot
 * (ss_engine_last_error), and a step records one status and message per
 * item in a per-engine arena that lives until the next step.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "sampler.h"

/* ---- limits ------------------------------------------------------------------ */
#define MIN_CAPACITY 2
#define MAX_CAPACITY (1 << 24)
#define MAX_TOP_K INT32_MAX
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
  char *broken;   /* why a backend failure left the cache undefined (owned, or broken_oom); NULL = healthy */
} ss_seq;

/* the cause of a broken sequence when even its message could not be stored */
static char broken_oom[] = "a backend failure (its message was lost: out of memory)";

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

  ss_forward_item *items; /* [max_batch_tokens] healthy items of a step (an item has >= 1 token) */
  int32_t *fed;           /* [max_batch_tokens] step item index of each forward item */
  float *logits;          /* [logits_rows, vocab], grown on demand */
  int32_t logits_rows;
  ss_candidate *cand; /* [vocab] sampler scratch */

  char last_error[SS_ERROR_MAX]; /* ss_engine_last_error */

  /* the last step's item failures */
  int32_t n_step_items;  /* items of the last step that got this far (0: it failed as a whole early) */
  int32_t *item_status;  /* [max_batch_tokens] */
  int64_t *item_msg;     /* [max_batch_tokens] offset of the item's message in msgs, -1 = none */
  char *msgs;            /* NUL-terminated messages, back to back */
  size_t msgs_len, msgs_cap;
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
  p.kv_dtype = SS_KV_DTYPE_DEFAULT;
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
  if (!m->tok_embeddings.data || !m->final_norm || !m->lm_head.data || !m->layers)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "engine: model has missing weights");
  return SS_OK;
}

static int engine_create(const ss_model *model, const ss_engine_params *params, ss_engine **out) {
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
  if (p.kv_dtype != SS_KV_DTYPE_DEFAULT && (p.kv_dtype < 0 || p.kv_dtype > SS_DTYPE_Q4_0))
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_create: kv_dtype %d is neither SS_KV_DTYPE_DEFAULT nor an "
                   "ss_dtype", p.kv_dtype);
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
  size_t n_items = (size_t)p.max_batch_tokens;
  e->seqs = calloc((size_t)p.max_sequences, sizeof *e->seqs);
  e->free_ids = malloc((size_t)p.max_sequences * sizeof *e->free_ids);
  e->items = malloc(n_items * sizeof *e->items);
  e->fed = malloc(n_items * sizeof *e->fed);
  e->item_status = malloc(n_items * sizeof *e->item_status);
  e->item_msg = malloc(n_items * sizeof *e->item_msg);
  e->cand = malloc((size_t)e->info.vocab_size * sizeof *e->cand);
  if (!e->seqs || !e->free_ids || !e->items || !e->fed || !e->item_status || !e->item_msg || !e->cand) {
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

int ss_engine_create(const ss_model *model, const ss_engine_params *params, ss_engine **out, char *err,
                     size_t err_size) {
  return ss_report_error(engine_create(model, params, out), err, err_size);
}

static void seq_destroy(ss_engine *e, ss_seq *s) {
  if (!s) return;
  if (s->kv) e->ops->kv_destroy(e->bctx, s->kv);
  if (s->broken != broken_oom) free(s->broken);
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
  free(e->fed);
  free(e->item_status);
  free(e->item_msg);
  free(e->msgs);
  free(e->logits);
  free(e->cand);
  free(e);
}

/* Keep the message of a failed call in the engine's slot too; returns rc. */
static int engine_status(ss_engine *e, int rc) {
  if (rc != SS_OK && e) snprintf(e->last_error, sizeof e->last_error, "%s", ss_last_error());
  return rc;
}

const char *ss_engine_last_error(const ss_engine *e) { return e ? e->last_error : ""; }

int64_t ss_engine_kv_bytes_per_token(const ss_engine *e) { return e ? e->ops->kv_bytes_per_token(e->bctx) : 0; }

const ss_backend_ops *ss_engine_backend(const ss_engine *e, ss_backend_ctx **ctx) {
  *ctx = e ? e->bctx : NULL;
  return e ? e->ops : NULL;
}

/* ---- sequence parameters ------------------------------------------------------------ */

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

int ss_engine_get_limits(const ss_engine *e, ss_seq_limits *out) {
  if (!e || !out) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_get_limits: engine or out is NULL");
  memset(out, 0, sizeof *out);
  out->min_capacity = MIN_CAPACITY;
  out->max_capacity = MAX_CAPACITY;
  out->default_capacity = e->info.max_seq_len;
  out->max_top_k = MAX_TOP_K;
  return SS_OK;
}

/* A failed parameter check: the message (prefixed by the calling function) and the field's name. */
static int bad_param(const char **field, const char *name, const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad_param(const char **field, const char *name, const char *fn, const char *fmt, ...) {
  char msg[SS_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (field) *field = name;
  return ss_fail(SS_ERR_INVALID_ARGUMENT, "%s: %s", fn, msg);
}

static int check_sampling(const char *fn, const ss_seq_params *p, const char **field) {
  if (!(p->temperature >= 0.0f) || isinf(p->temperature))
    return bad_param(field, "temperature", fn, "temperature %g must be finite and >= 0", (double)p->temperature);
  if (p->top_k < 0 || p->top_k > MAX_TOP_K)
    return bad_param(field, "top_k", fn, "top_k %d outside [0, %d]", p->top_k, MAX_TOP_K);
  if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
    return bad_param(field, "top_p", fn, "top_p %g outside (0, 1]", (double)p->top_p);
  return SS_OK;
}

/* The rules of a new sequence (ss_seq_create and ss_seq_check_params); the geometry it gets in *geom. */
static int check_seq_params(const ss_engine *e, const char *fn, const ss_seq_params *p, ss_cache_geometry *geom,
                            const char **field) {
  if (field) *field = NULL;
  if (p->policy != SS_POLICY_STREAMING && p->policy != SS_POLICY_WINDOW && p->policy != SS_POLICY_DENSE)
    return bad_param(field, "policy", fn, "unknown policy %d", p->policy);
  int32_t cap = p->capacity == 0 ? e->info.max_seq_len : p->capacity;
  if (cap < MIN_CAPACITY || cap > MAX_CAPACITY)
    return bad_param(field, "capacity", fn, "capacity %d outside [%d, %d]%s", cap, MIN_CAPACITY, MAX_CAPACITY,
                     p->capacity == 0 ? " (capacity 0 = the model's max_seq_len)" : "");
  int32_t sinks = 0;
  if (p->policy == SS_POLICY_STREAMING) {
    if (p->n_sinks < 0 || p->n_sinks >= cap)
      return bad_param(field, "n_sinks", fn, "n_sinks %d outside [0, capacity %d)", p->n_sinks, cap);
    sinks = p->n_sinks;
  }
  int rc = check_sampling(fn, p, field);
  if (rc) return rc;
  geom->n_sinks = sinks;
  geom->capacity = cap;
  return SS_OK;
}

int ss_seq_check_params(const ss_engine *e, const ss_seq_params *params, const char **out_field) {
  if (out_field) *out_field = NULL;
  if (!e || !params) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_check_params: engine or params is NULL");
  ss_cache_geometry geom;
  return check_seq_params(e, "ss_seq_check_params", params, &geom, out_field);
}

/* ---- sequences ------------------------------------------------------------------ */

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

static int seq_create(ss_engine *e, const ss_seq_params *params, int32_t *out_id) {
  if (!out_id) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_create: out_id is NULL");
  *out_id = -1;
  ss_seq_params p = params ? *params : ss_seq_default_params();
  ss_cache_geometry geom;
  int rc = check_seq_params(e, "ss_seq_create", &p, &geom, NULL);
  if (rc) return rc;
  if (e->n_free == 0)
    return ss_fail(SS_ERR_LIMIT, "ss_seq_create: max_sequences %d sequences are alive", e->params.max_sequences);

  ss_seq *s = calloc(1, sizeof *s);
  if (!s) return ss_fail(SS_ERR_OUT_OF_MEMORY, "ss_seq_create: out of memory");
  s->policy = p.policy;
  s->geom = geom;
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

int ss_seq_create(ss_engine *e, const ss_seq_params *params, int32_t *out_id) {
  if (!e) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_create: engine is NULL");
  return engine_status(e, seq_create(e, params, out_id));
}

static int seq_free(ss_engine *e, int32_t seq_id) {
  ss_seq *s = find_seq(e, seq_id);
  if (!s) return ss_fail(SS_ERR_NOT_FOUND, "ss_seq_free: unknown sequence %d", seq_id);
  seq_destroy(e, s);
  e->seqs[seq_id] = NULL;
  e->free_ids[e->n_free++] = seq_id;
  return SS_OK;
}

int ss_seq_free(ss_engine *e, int32_t seq_id) {
  if (!e) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_free: engine is NULL");
  return engine_status(e, seq_free(e, seq_id));
}

static int seq_set_sampling(ss_engine *e, int32_t seq_id, const ss_seq_params *params) {
  if (!params) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_set_sampling: params is NULL");
  ss_seq *s = find_seq(e, seq_id);
  if (!s) return ss_fail(SS_ERR_NOT_FOUND, "ss_seq_set_sampling: unknown sequence %d", seq_id);
  int rc = check_sampling("ss_seq_set_sampling", params, NULL);
  if (rc) return rc;
  set_sampling(s, params);
  return SS_OK;
}

int ss_seq_set_sampling(ss_engine *e, int32_t seq_id, const ss_seq_params *params) {
  if (!e) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_seq_set_sampling: engine is NULL");
  return engine_status(e, seq_set_sampling(e, seq_id, params));
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

/* Item i's row of a step's token masks. */
static const uint32_t *item_mask(const ss_engine *e, const uint32_t *masks, int32_t i) {
  return masks + (size_t)i * (size_t)SS_MASK_WORDS(e->info.vocab_size);
}

/* Record item i's failure: its status and its message in the step's arena. */
static int item_fail(ss_engine *e, int32_t i, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int item_fail(ss_engine *e, int32_t i, int status, const char *fmt, ...) {
  e->item_status[i] = status;
  e->item_msg[i] = -1;
  char msg[SS_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t len = n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
  if (e->msgs_len + len + 1 > e->msgs_cap) {
    size_t cap = e->msgs_cap ? 2 * e->msgs_cap : 4096;
    while (cap < e->msgs_len + len + 1) cap *= 2;
    char *nm = realloc(e->msgs, cap);
    if (!nm) return status; /* the status stands; ss_engine_item_error says the message was lost */
    e->msgs = nm;
    e->msgs_cap = cap;
  }
  memcpy(e->msgs + e->msgs_len, msg, len);
  e->msgs[e->msgs_len + len] = '\0';
  e->item_msg[i] = (int64_t)e->msgs_len;
  e->msgs_len += len + 1;
  return status;
}

const char *ss_engine_item_error(const ss_engine *e, int32_t item) {
  if (!e || item < 0 || item >= e->n_step_items || e->item_status[item] == SS_OK) return "";
  return e->item_msg[item] >= 0 ? e->msgs + e->item_msg[item] : "(message lost: out of memory)";
}

/* Whole-step checks: the arrays and the token layout; nothing is recorded per item. */
static int check_step(const ss_engine *e, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                      const int32_t *tokens) {
  if (!seq_ids || !n_tokens || !tokens)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: seq_ids, n_tokens and tokens must not be NULL");
  int64_t total = 0;
  for (int32_t i = 0; i < n_items; i++) {
    if (n_tokens[i] < 1)
      return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: item %d (sequence %d): n_tokens %d < 1", i,
                     seq_ids[i], n_tokens[i]);
    total += n_tokens[i];
  }
  if (total > e->params.max_batch_tokens)
    return ss_fail(SS_ERR_LIMIT, "ss_engine_step: %lld tokens exceed max_batch_tokens %d", (long long)total,
                   e->params.max_batch_tokens);
  return SS_OK;
}

/* Item i's own checks (tokens from `tok`); a failure is recorded with item_fail, its message naming only
 * the item's own sequence. Marks the sequence as listed in this step (stamp), so a second item of it fails. */
static int check_item(ss_engine *e, int32_t i, uint64_t stamp, const int32_t *seq_ids, const int32_t *n_tokens,
                       const int32_t *tok, const int32_t *flags, const int32_t *targets, const uint32_t *masks) {
  int32_t id = seq_ids[i], n = n_tokens[i], V = e->info.vocab_size;
  ss_seq *s = find_seq(e, id);
  if (!s) return item_fail(e, i, SS_ERR_NOT_FOUND, "ss_engine_step: unknown sequence %d", id);
  if (s->stamp == stamp)
    return item_fail(e, i, SS_ERR_INVALID_ARGUMENT, "ss_engine_step: sequence %d appears twice in one step", id);
  s->stamp = stamp;
  if (flags && (flags[i] & ~(SS_STEP_SAMPLE | SS_STEP_LOGITS | SS_STEP_MASK)))
    return item_fail(e, i, SS_ERR_INVALID_ARGUMENT, "ss_engine_step: sequence %d: unknown flags 0x%x", id,
                     (unsigned)flags[i]);
  if (item_flags(flags, i) & SS_STEP_MASK) {
    if (!masks)
      return item_fail(e, i, SS_ERR_INVALID_ARGUMENT,
                       "ss_engine_step: sequence %d: SS_STEP_MASK without masks (use ss_engine_step_masked)", id);
    if (ss_mask_count(item_mask(e, masks, i), V) == 0)
      return item_fail(e, i, SS_ERR_EMPTY_MASK, "ss_engine_step: sequence %d: the token mask allows no token", id);
  }
  if (targets && targets[i] >= V)
    return item_fail(e, i, SS_ERR_INVALID_ARGUMENT, "ss_engine_step: sequence %d: target %d outside [0, %d)", id,
                     targets[i], V);
  for (int32_t j = 0; j < n; j++)
    if (tok[j] < 0 || tok[j] >= V)
      return item_fail(e, i, SS_ERR_INVALID_ARGUMENT,
                       "ss_engine_step: sequence %d: token %d at position %d outside [0, %d)", id, tok[j], j, V);
  if (s->broken)
    return item_fail(e, i, SS_ERR_BACKEND,
                     "ss_engine_step: sequence %d is broken: an earlier step failed in the backend (%s); free it", id,
                     s->broken);
  if (s->policy == SS_POLICY_DENSE && !ss_geom_dense_fits(s->n_seen, n, s->geom.capacity))
    return item_fail(e, i, SS_ERR_CONTEXT_FULL,
                     "ss_engine_step: dense sequence %d is full: %lld cached + %d new tokens exceed capacity %d", id,
                     (long long)s->n_seen, n, s->geom.capacity);
  return SS_OK;
}

/* Grow the KV storage of s to hold the slots the next n tokens write
 * (doubling, capped at capacity). Contents are kept, so a failure here
 * leaves the sequence as it was. */
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

/* A backend failure in the forward pass: every sequence it was fed may hold partly written rows. */
static void mark_broken(ss_engine *e, int32_t n_fed, const int32_t *seq_ids) {
  for (int32_t k = 0; k < n_fed; k++) {
    ss_seq *s = e->seqs[seq_ids[e->fed[k]]];
    if (s->broken) continue;
    s->broken = strdup(ss_last_error());
    if (!s->broken) s->broken = broken_oom;
  }
}

/* The step as the header describes it; a whole-step failure returns its status (message in ss_last_error). */
static int engine_step(ss_engine *e, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                       const int32_t *tokens, const int32_t *flags, const int32_t *targets, const uint32_t *masks,
                       int32_t *out_tokens, float *out_logits, float *out_target_logprobs, int32_t *out_status) {
  e->n_step_items = 0;
  e->msgs_len = 0;
  if (n_items < 0) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: n_items %d < 0", n_items);
  if (n_items == 0) return SS_OK;
  int rc = check_step(e, n_items, seq_ids, n_tokens, tokens);
  if (rc) return rc;

  /* per-item checks (n_items <= total tokens <= max_batch_tokens: the item arrays hold them) */
  e->n_step_items = n_items;
  uint64_t stamp = ++e->n_steps;
  int64_t off = 0;
  int32_t first_bad = -1;
  for (int32_t i = 0; i < n_items; i++) {
    e->item_status[i] = SS_OK;
    e->item_msg[i] = -1;
    if (check_item(e, i, stamp, seq_ids, n_tokens, tokens + off, flags, targets, masks) && first_bad < 0) first_bad = i;
    off += n_tokens[i];
  }
  if (first_bad >= 0 && !out_status)
    return ss_fail(e->item_status[first_bad], "%s", ss_engine_item_error(e, first_bad));

  /* storage of the healthy items, and the forward items (healthy only, in step order) */
  int32_t vocab = e->info.vocab_size, n_fed = 0, n_want = 0;
  off = 0;
  for (int32_t i = 0; i < n_items; i++) {
    int64_t item_off = off;
    off += n_tokens[i];
    if (e->item_status[i] != SS_OK) continue;
    ss_seq *s = e->seqs[seq_ids[i]];
    rc = reserve_for(e, s, n_tokens[i]);
    if (rc) {
      if (!out_status) return rc;
      item_fail(e, i, rc, "%s", ss_last_error());
      continue;
    }
    int32_t f = item_flags(flags, i);
    int want = ((f & SS_STEP_SAMPLE) && out_tokens) || ((f & SS_STEP_LOGITS) && out_logits) ||
               (targets && targets[i] >= 0 && out_target_logprobs);
    e->items[n_fed] = (ss_forward_item){.kv = s->kv,
                                        .geom = s->geom,
                                        .start_index = s->n_seen,
                                        .n_tokens = n_tokens[i],
                                        .tokens = tokens + item_off,
                                        .want_logits = want};
    e->fed[n_fed++] = i;
    n_want += want;
  }
  if (n_want > e->logits_rows) {
    float *nl = realloc(e->logits, (size_t)n_want * (size_t)vocab * sizeof(float));
    if (!nl) return ss_fail(SS_ERR_OUT_OF_MEMORY, "ss_engine_step: out of memory for %d logit rows", n_want);
    e->logits = nl;
    e->logits_rows = n_want;
  }

  if (n_fed > 0) {
    rc = e->ops->forward(e->bctx, e->items, n_fed, e->logits);
    if (rc) {
      mark_broken(e, n_fed, seq_ids);
      return rc;
    }
  }

  /* outputs: fed items from their logits row, failed items -1 / NaN */
  int32_t row_k = 0, k = 0;
  for (int32_t i = 0; i < n_items; i++) {
    if (out_status) out_status[i] = e->item_status[i];
    if (k >= n_fed || e->fed[k] != i) {
      if (out_tokens) out_tokens[i] = -1;
      if (out_target_logprobs) out_target_logprobs[i] = NAN;
      continue;
    }
    ss_seq *s = e->seqs[seq_ids[i]];
    s->n_seen += n_tokens[i];
    int32_t f = item_flags(flags, i);
    const float *row = e->items[k].want_logits ? e->logits + (size_t)row_k++ * vocab : NULL;
    k++;
    const uint32_t *mask = (f & SS_STEP_MASK) ? item_mask(e, masks, i) : NULL;
    if (out_tokens)
      out_tokens[i] = (row && (f & SS_STEP_SAMPLE)) ? ss_sample(&s->sampling, &s->rng, row, vocab, mask, e->cand) : -1;
    if (out_logits && row && (f & SS_STEP_LOGITS)) memcpy(out_logits + (size_t)i * vocab, row, (size_t)vocab * sizeof(float));
    if (out_target_logprobs)
      out_target_logprobs[i] = (row && targets && targets[i] >= 0) ? (float)ss_log_softmax_at(row, vocab, targets[i]) : NAN;
  }
  return SS_OK;
}

int ss_engine_step_masked(ss_engine *e, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                          const int32_t *tokens, const int32_t *flags, const int32_t *targets, const uint32_t *masks,
                          int32_t *out_tokens, float *out_logits, float *out_target_logprobs, int32_t *out_status) {
  if (!e) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_engine_step: engine is NULL");
  int rc = engine_step(e, n_items, seq_ids, n_tokens, tokens, flags, targets, masks, out_tokens, out_logits,
                       out_target_logprobs, out_status);
  /* a whole-step failure: every item that had not failed on its own shares its status */
  if (rc != SS_OK && out_status)
    for (int32_t i = 0; i < n_items; i++) out_status[i] = i < e->n_step_items && e->item_status[i] ? e->item_status[i] : rc;
  return engine_status(e, rc);
}

int ss_engine_step(ss_engine *e, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                   const int32_t *tokens, const int32_t *flags, const int32_t *targets, int32_t *out_tokens,
                   float *out_logits, float *out_target_logprobs, int32_t *out_status) {
  return ss_engine_step_masked(e, n_items, seq_ids, n_tokens, tokens, flags, targets, NULL, out_tokens, out_logits,
                               out_target_logprobs, out_status);
}
