/* test_cache.c — cache geometry, eviction and chunk semantics on a tiny random model. */
#include "cpu_kernels.h"
#include "test_util.h"
#include "tiny_model.h"

static const char *policy_name(int p) { return p == SS_POLICY_STREAMING ? "streaming" : p == SS_POLICY_WINDOW ? "window" : "dense"; }

static ss_engine *make_engine(const tiny_model *t, int n_threads, int max_batch) {
  ss_engine_params ep = ss_engine_default_params();
  ep.n_threads = n_threads;
  ep.max_batch_tokens = max_batch;
  ep.kv_dtype = SS_DTYPE_F32; /* against the f64 reference at 1e-4: the f16 cache is test_weight_types' */
  ss_engine *e = NULL;
  int rc = ss_engine_create(&t->m, &ep, &e, NULL, 0);
  CHECK(rc == SS_OK && e, "engine create: %s", ss_last_error());
  return e;
}

static int32_t make_seq(ss_engine *e, int policy, int sinks, int capacity) {
  ss_seq_params sp = ss_seq_default_params();
  sp.policy = policy;
  sp.n_sinks = sinks;
  sp.capacity = capacity;
  int32_t id = -1;
  int rc = ss_seq_create(e, &sp, &id);
  CHECK(rc == SS_OK, "seq create: %s", ss_last_error());
  return id;
}

/* feed n tokens as one item; logits of the last token into `logits` (may be NULL) */
static int feed(ss_engine *e, int32_t id, const int32_t *toks, int n, float *logits) {
  int32_t flags = logits ? SS_STEP_LOGITS : 0;
  return ss_engine_step(e, 1, &id, &n, toks, &flags, NULL, NULL, logits, NULL, NULL);
}

/* The cache must hold exactly [0..S-1] ++ the last C-S stream indices (streaming),
 * the last C (window), or everything (dense); stats must agree. */
static void check_geometry(ss_engine *e, int32_t id, int policy, int S, int C, int64_t n_seen, const tiny_model *t) {
  int64_t got[256];
  int32_t n = -1;
  int rc = ss_seq_get_cache_indices(e, id, got, 256, &n);
  CHECK(rc == SS_OK, "cache indices: %s", ss_last_error());
  int64_t want[256];
  int nw = 0;
  if (n_seen <= C) {
    for (int64_t i = 0; i < n_seen; i++) want[nw++] = i;
  } else {
    int s = policy == SS_POLICY_STREAMING ? S : 0;
    for (int64_t i = 0; i < s; i++) want[nw++] = i;
    for (int64_t i = n_seen - (C - s); i < n_seen; i++) want[nw++] = i;
  }
  CHECK(n == nw, "%s S=%d C=%d seen=%lld: %d cached, want %d", policy_name(policy), S, C, (long long)n_seen, n, nw);
  int same = n == nw;
  for (int i = 0; same && i < nw; i++) same = got[i] == want[i];
  CHECK(same, "%s S=%d C=%d seen=%lld: cache indices differ", policy_name(policy), S, C, (long long)n_seen);

  ss_seq_stats st;
  rc = ss_seq_get_stats(e, id, &st);
  CHECK(rc == SS_OK, "stats: %s", ss_last_error());
  int64_t cached = n_seen < C ? n_seen : C;
  CHECK(st.n_cached == cached && st.n_seen == n_seen && st.n_evicted == n_seen - cached,
        "stats cached %d seen %lld evicted %lld (want %lld %lld %lld)", st.n_cached, (long long)st.n_seen,
        (long long)st.n_evicted, (long long)cached, (long long)n_seen, (long long)(n_seen - cached));
  CHECK(st.capacity == C && st.policy == policy && st.n_sinks == (policy == SS_POLICY_STREAMING ? S : 0),
        "stats capacity %d policy %d sinks %d", st.capacity, st.policy, st.n_sinks);
  int64_t row = ss_engine_kv_bytes_per_token(e); /* per cached token, in the engine's KV type */
  CHECK(st.cache_bytes >= cached * row && st.cache_bytes <= C * row, "cache_bytes %lld for %lld cached (row %lld)",
        (long long)st.cache_bytes, (long long)cached, (long long)row);
}

/* Cache indices and stats after many evictions, token by token and in chunks. */
static void test_geometry(const tiny_model *t) {
  ss_engine *e = make_engine(t, 1, 64);
  if (!e) return;
  int32_t toks[64];
  for (int i = 0; i < 64; i++) toks[i] = (i * 7 + 3) % t->cfg.vocab;
  struct { int policy, S, C; } cases[] = {{SS_POLICY_STREAMING, 4, 10}, {SS_POLICY_STREAMING, 1, 2},
                                         {SS_POLICY_STREAMING, 0, 5},  {SS_POLICY_WINDOW, 4, 7},
                                         {SS_POLICY_DENSE, 0, 50}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int32_t id = make_seq(e, cases[c].policy, cases[c].S, cases[c].C);
    ss_seq_stats st;
    ss_seq_get_stats(e, id, &st);
    CHECK(st.cache_bytes == 0 && st.n_cached == 0, "a new sequence holds no KV memory (%lld bytes)",
          (long long)st.cache_bytes);
    int32_t n0 = -1;
    CHECK(ss_seq_get_cache_indices(e, id, NULL, 0, &n0) == SS_OK && n0 == 0, "empty cache indices");
    int64_t seen = 0;
    int limit = cases[c].policy == SS_POLICY_DENSE ? cases[c].C : 200;
    for (int step = 0; seen < limit; step++) {
      int n = 1 + (step * 5) % 13; /* chunks of 1..13 tokens */
      if (seen + n > limit) n = (int)(limit - seen);
      int rc = feed(e, id, toks, n, NULL);
      CHECK(rc == SS_OK, "feed: %s", ss_last_error());
      seen += n;
      check_geometry(e, id, cases[c].policy, cases[c].S, cases[c].C, seen, t);
    }
    ss_seq_free(e, id);
  }
  ss_engine_free(e);
}

/* Engine logits against the naive double reference (re-indexed positions,
 * pre-RoPE keys re-rotated every step), token by token over many evictions. */
static void test_against_reference(const tiny_model *t, const char *what) {
  ss_engine *e = make_engine(t, 2, 16);
  if (!e) return;
  int V = t->cfg.vocab;
  float *lg = malloc(V * sizeof(float));
  double *rl = malloc(V * sizeof(double));
  struct { int policy, S, C, n; } cases[] = {{SS_POLICY_STREAMING, 4, 12, 45}, {SS_POLICY_STREAMING, 2, 5, 30},
                                            {SS_POLICY_WINDOW, 0, 9, 40},     {SS_POLICY_DENSE, 0, 30, 30},
                                            {SS_POLICY_STREAMING, 4, 20, 2500}}; /* long stream: large angles */
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int32_t id = make_seq(e, cases[c].policy, cases[c].S, cases[c].C);
    ref_seq r;
    ref_init(&r, t, cases[c].policy, cases[c].S, cases[c].C);
    double worst = 0;
    uint64_t s = 99 + c;
    for (int i = 0; i < cases[c].n; i++) {
      int32_t tok = (int32_t)(tiny_rng(&s) % (uint64_t)V);
      int rc = feed(e, id, &tok, 1, lg);
      CHECK(rc == SS_OK, "feed: %s", ss_last_error());
      ref_feed(&r, tok, rl);
      double err = rel_err_d(lg, rl, V);
      if (err > worst) worst = err;
    }
    CHECK(worst < 1e-4, "%s %s S=%d C=%d: engine vs reference rel err %.3g", what, policy_name(cases[c].policy),
          cases[c].S, cases[c].C, worst);
    ref_free(&r);
    ss_seq_free(e, id);
  }
  free(lg);
  free(rl);
  ss_engine_free(e);
}

/* A long prompt (several times the capacity) fed in chunks of various sizes
 * equals feeding it token by token: logits after each chunk and cache indices. */
static void test_chunks(const tiny_model *t, int policy, int S, int C) {
  enum { N = 150 };
  ss_engine *e = make_engine(t, 2, 64);
  if (!e) return;
  int V = t->cfg.vocab;
  int32_t prompt[N];
  uint64_t s = 7;
  for (int i = 0; i < N; i++) prompt[i] = (int32_t)(tiny_rng(&s) % (uint64_t)V);

  /* token-by-token logits after every position */
  float *tbt = malloc((size_t)N * V * sizeof(float)), *lg = malloc(V * sizeof(float));
  int32_t a = make_seq(e, policy, S, C);
  for (int i = 0; i < N; i++) CHECK(feed(e, a, &prompt[i], 1, tbt + (size_t)i * V) == SS_OK, "tbt: %s", ss_last_error());

  const int patterns[][6] = {{1, 2, 3, 5, 8, 13}, {C - 1, C, C + 1, 2 * C + 3, 1, 4}, {64, 64, 22, 64, 64, 64},
                             {S + 1, 3 * C, 7, 2, 60, 9}};
  for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
    int32_t b = make_seq(e, policy, S, C);
    int pos = 0, k = 0;
    double worst = 0;
    int idx_same = 1;
    while (pos < N) {
      int n = patterns[p][k++ % 6];
      if (n > 64) n = 64;
      if (pos + n > N) n = N - pos;
      CHECK(feed(e, b, prompt + pos, n, lg) == SS_OK, "chunk: %s", ss_last_error());
      pos += n;
      double err = rel_err_f(lg, tbt + (size_t)(pos - 1) * V, V);
      if (err > worst) worst = err;
      /* a fresh token-by-token sequence at the same point has the same cache */
      int64_t ib[256], ia[256];
      int32_t nb = 0, na = 0;
      ss_seq_get_cache_indices(e, b, ib, 256, &nb);
      int32_t c2 = make_seq(e, policy, S, C);
      for (int i = 0; i < pos; i++) feed(e, c2, &prompt[i], 1, NULL);
      ss_seq_get_cache_indices(e, c2, ia, 256, &na);
      ss_seq_free(e, c2);
      idx_same &= na == nb && memcmp(ia, ib, (size_t)na * sizeof(int64_t)) == 0;
    }
    CHECK(worst <= 1e-5, "%s S=%d C=%d pattern %zu: chunked vs token-by-token rel err %.3g", policy_name(policy), S,
          C, p, worst);
    CHECK(idx_same, "%s S=%d C=%d pattern %zu: cache indices differ", policy_name(policy), S, C, p);
    ss_seq_free(e, b);
  }
  ss_seq_free(e, a);
  free(tbt);
  free(lg);
  ss_engine_free(e);
}

/* kernels the equivalence tests rely on */
static void test_kernels(void) {
  /* dot4 == four dots, bit for bit, for lengths around the lane width */
  uint64_t s = 5;
  float w[100], x[4][100];
  for (int i = 0; i < 100; i++) {
    w[i] = tiny_uniform(&s, 1.0f);
    for (int k = 0; k < 4; k++) x[k][i] = tiny_uniform(&s, 1.0f);
  }
  int same = 1;
  double worst = 0;
  for (int n = 0; n <= 100; n += 3) {
    float o[4];
    ss_dot4(o, w, x[0], x[1], x[2], x[3], n);
    for (int k = 0; k < 4; k++) {
      same &= o[k] == ss_dot(w, x[k], n);
      double ref = 0;
      for (int i = 0; i < n; i++) ref += (double)w[i] * x[k][i];
      if (fabs(o[k] - ref) > worst) worst = fabs(o[k] - ref);
    }
  }
  CHECK(same, "ss_dot4 and ss_dot agree bit for bit");
  CHECK(worst < 1e-4, "dot products accurate (%.3g)", worst);
  /* softmax exp: relative error against exp() over its range, -inf -> ~0 */
  float v[2000];
  for (int i = 0; i < 1999; i++) v[i] = -90.0f + 90.0f * i / 1998.0f;
  v[1999] = -INFINITY;
  float in[2000];
  memcpy(in, v, sizeof v);
  ss_softmax_exp(v, 0.0f, 2000);
  double rel = 0;
  for (int i = 0; i < 1999; i++) {
    if (in[i] < -87.0f) continue;
    double e = exp((double)in[i]), r = fabs(v[i] - e) / e;
    if (r > rel) rel = r;
  }
  CHECK(rel < 1e-6, "ss_softmax_exp relative error %.3g", rel);
  CHECK(v[1999] >= 0 && v[1999] < 1e-37, "exp(-inf) ~ 0 (%g)", v[1999]);
  CHECK(v[1998] == 1.0f, "exp(0) == 1 (%.9g)", v[1998]);
}

int main(void) {
  test_kernels();
  tiny_model t;
  if (tiny_model_init(&t, tiny_default_cfg()) != 0) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  test_geometry(&t);
  test_against_reference(&t, "llama");
  test_chunks(&t, SS_POLICY_STREAMING, 4, 16);
  test_chunks(&t, SS_POLICY_WINDOW, 0, 16);
  test_chunks(&t, SS_POLICY_STREAMING, 1, 9);
  tiny_model_free(&t);

  /* Qwen2-style biases, MHA (no GQA), wider heads, another theta */
  tiny_cfg cfg = tiny_default_cfg();
  cfg.bias = 1;
  cfg.n_heads = 2;
  cfg.n_kv_heads = 2;
  cfg.head_dim = 20;
  cfg.theta = 500.0f;
  cfg.seed = 77;
  if (tiny_model_init(&t, cfg) != 0) return 1;
  test_against_reference(&t, "qwen2-like");
  test_chunks(&t, SS_POLICY_STREAMING, 4, 16);
  tiny_model_free(&t);
  return test_summary("test_cache");
}
