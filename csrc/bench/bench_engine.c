/*
 * bench_engine.c — the engine benchmarks of issue #2 §5 in one command.
 *
 *   build/bench_engine MODEL [--threads N] [--sinks S] [--window W] [--near P1] [--far P2]
 *                            [--chunk K] [--steps N] [--evict-seqs R]
 *
 * Defaults: 2 threads, 4 sinks, window (capacity) 1024, positions 1000 and
 * 100000, prefill chunks of 512 tokens, 24 timed decode steps, 6 sequences for
 * the eviction test. Prints one table:
 *
 * 1. Decode throughput at batch 1, 4, 16 (tok/s = batch / median step time;
 *    each sequence first gets a 128-token prompt, 4 untimed warm-up steps).
 *    Target: batch 16 >= 4x the aggregate tok/s of batch 1.
 * 2. Per-token decode latency at stream position P1 and P2 (median of N
 *    steps starting there, batch 1). One sequence is fast-fed to P2 in prefill
 *    chunks of K tokens through the streaming cache (chunks longer than the
 *    window are fine, docs/decisions.md D2; the prefill rate is reported),
 *    another to P1; their decode steps then alternate so that load from other
 *    processes affects both alike. Target: latency at P2 within 5% of P1.
 * 3. Eviction cost. A decode step at stream index W-1 is the last one that does
 *    not evict (it fills the last free slot) and already attends to W keys; the
 *    step at index W evicts and also attends to W keys, as does every later
 *    step. So comparing the step at W-1 with the step at W compares equal
 *    attention spans and equal matmul work: only eviction differs. R sequences
 *    are fed W-1 tokens, then for each, the non-evicting step (W-1) and the
 *    evicting step (W) are timed back to back; the table reports the medians
 *    and the median of the paired differences, plus the far-position steps of
 *    part 2 (also evicting, span W) as a second evicting sample.
 *    Target: evicting within 2% of non-evicting.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinkstream.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
  double *c = malloc((size_t)n * sizeof *c);
  if (!c || n < 1) {
    free(c);
    return 0.0;
  }
  memcpy(c, v, (size_t)n * sizeof *c);
  qsort(c, (size_t)n, sizeof *c, cmp_double);
  double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
  free(c);
  return m;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_engine: %s: %s: %s\n", what, ss_status_name(rc), ss_last_error());
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "bench_engine: out of memory\n");
    exit(1);
  }
  return p;
}

static uint64_t rng = 88172645463325252ull;
static int32_t rand_token(int vocab) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return 3 + (int32_t)(rng % (uint64_t)(vocab > 3 ? vocab - 3 : 1));
}

typedef struct bench {
  ss_engine *e;
  ss_model_info info;
  int max_tokens;
  int32_t *toks, *ids, *ntok, *flags, *out;
} bench;

/* Feed `n` random tokens to each of the sequences ids[0..n_seq), packing
 * chunks of several sequences into steps of up to max_tokens tokens. */
static double prefill(bench *b, const int32_t *ids, int n_seq, int64_t n) {
  int64_t *left = xmalloc((size_t)n_seq * sizeof *left);
  for (int s = 0; s < n_seq; s++) left[s] = n;
  double t0 = now_s();
  for (;;) {
    int n_items = 0, used = 0;
    for (int s = 0; s < n_seq && used < b->max_tokens; s++) {
      int64_t k = left[s] < b->max_tokens - used ? left[s] : b->max_tokens - used;
      if (k <= 0) continue;
      for (int64_t j = 0; j < k; j++) b->toks[used + j] = rand_token(b->info.vocab_size);
      b->ids[n_items] = ids[s];
      b->ntok[n_items] = (int32_t)k;
      b->flags[n_items] = 0;
      n_items++;
      used += (int)k;
      left[s] -= k;
    }
    if (n_items == 0) break;
    int rc = ss_engine_step(b->e, n_items, b->ids, b->ntok, b->toks, b->flags, NULL, NULL, NULL, NULL, NULL);
    if (rc) die("prefill", rc);
  }
  free(left);
  return now_s() - t0;
}

/* One greedy decode step of ids[0..n) (cur[] in, sampled tokens written back). */
static double decode_step(bench *b, const int32_t *ids, int n, int32_t *cur) {
  for (int i = 0; i < n; i++) {
    b->ntok[i] = 1;
    b->flags[i] = SS_STEP_SAMPLE;
  }
  double t0 = now_s();
  int rc = ss_engine_step(b->e, n, ids, b->ntok, cur, b->flags, NULL, b->out, NULL, NULL, NULL);
  double dt = now_s() - t0;
  if (rc) die("decode", rc);
  memcpy(cur, b->out, (size_t)n * sizeof *cur);
  return dt;
}

static int64_t seen_of(bench *b, int32_t id, int64_t *evicted) {
  ss_seq_stats st;
  int rc = ss_seq_get_stats(b->e, id, &st);
  if (rc) die("stats", rc);
  if (evicted) *evicted = st.n_evicted;
  return st.n_seen;
}

static int usage(void) {
  fprintf(stderr, "usage: bench_engine MODEL [--threads N] [--sinks S] [--window W] [--near P1] [--far P2]\n"
                  "                          [--chunk K] [--steps N] [--evict-seqs R]\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *path = argv[1];
  int threads = 2, S = 4, W = 1024, K = 512, N = 24, R = 6;
  int64_t near = 1000, far = 100000;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) return usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--threads")) threads = atoi(v);
    else if (!strcmp(a, "--sinks")) S = atoi(v);
    else if (!strcmp(a, "--window")) W = atoi(v);
    else if (!strcmp(a, "--near")) near = atoll(v);
    else if (!strcmp(a, "--far")) far = atoll(v);
    else if (!strcmp(a, "--chunk")) K = atoi(v);
    else if (!strcmp(a, "--steps")) N = atoi(v);
    else if (!strcmp(a, "--evict-seqs")) R = atoi(v);
    else return usage();
  }
  if (threads < 0 || S < 0 || W < S + 2 || K < 1 || N < 1 || R < 1 || near < 0 || far < near)
    return usage();

  ss_model *m = NULL;
  int rc = ss_model_load(path, NULL, &m, NULL, 0);
  if (rc) die(path, rc);
  bench b = {0};
  ss_model_get_info(m, &b.info);

  enum { MAXB = 16 };
  ss_engine_params ep = ss_engine_default_params();
  ep.n_threads = threads;
  ep.max_sequences = MAXB > R ? MAXB : R;
  ep.max_batch_tokens = K > MAXB ? K : MAXB;
  b.max_tokens = ep.max_batch_tokens;
  rc = ss_engine_create(m, &ep, &b.e, NULL, 0);
  if (rc) die("engine", rc);
  int maxn = ep.max_sequences > ep.max_batch_tokens ? ep.max_sequences : ep.max_batch_tokens;
  b.toks = xmalloc((size_t)maxn * sizeof(int32_t));
  b.ids = xmalloc((size_t)maxn * sizeof(int32_t));
  b.ntok = xmalloc((size_t)maxn * sizeof(int32_t));
  b.flags = xmalloc((size_t)maxn * sizeof(int32_t));
  b.out = xmalloc((size_t)maxn * sizeof(int32_t));
  double *lat = xmalloc((size_t)(N > R ? N : R) * sizeof(double));
  double *lat2 = xmalloc((size_t)(N > R ? N : R) * sizeof(double));
  double *diff = xmalloc((size_t)R * sizeof(double));
  int32_t ids[MAXB > 64 ? MAXB : 64], cur[MAXB > 64 ? MAXB : 64];
  if (R > 64) R = 64;

  ss_seq_params sp = ss_seq_default_params();
  sp.policy = SS_POLICY_STREAMING;
  sp.n_sinks = S;
  sp.capacity = W;

  printf("bench_engine: %s\n", path);
  printf("model: dim %d, hidden %d, layers %d, heads %d/%d (head_dim %d), vocab %d\n", b.info.dim,
         b.info.hidden_dim, b.info.n_layers, b.info.n_heads, b.info.n_kv_heads, b.info.head_dim,
         b.info.vocab_size);
  printf("engine: cpu, %d threads, streaming S=%d W=%d, prefill chunk %d, %d timed steps\n\n", threads, S, W, K, N);
  fflush(stdout);

  /* ---- 1. decode throughput ---- */
  static const int batches[3] = {1, 4, 16};
  double tps[3];
  printf("%-44s %12s %12s %s\n", "measurement", "value", "ms/step", "note");
  for (int bi = 0; bi < 3; bi++) {
    int B = batches[bi];
    for (int s = 0; s < B; s++) {
      rc = ss_seq_create(b.e, &sp, &ids[s]);
      if (rc) die("sequence", rc);
      cur[s] = b.info.bos_token_id >= 0 ? b.info.bos_token_id : 1;
    }
    prefill(&b, ids, B, 128);
    for (int s = 0; s < 4; s++) decode_step(&b, ids, B, cur);
    for (int s = 0; s < N; s++) lat[s] = decode_step(&b, ids, B, cur);
    double med = median(lat, N);
    tps[bi] = B / med;
    char name[64];
    snprintf(name, sizeof name, "decode tok/s, batch %d", B);
    printf("%-44s %12.1f %12.3f positions 132..%d\n", name, tps[bi], 1e3 * med, 131 + N);
    fflush(stdout);
    for (int s = 0; s < B; s++) ss_seq_free(b.e, ids[s]);
  }
  double ratio16 = tps[2] / tps[0];
  printf("%-44s %12.2fx %12s target >= 4x: %s\n", "batch 16 / batch 1 aggregate tok/s", ratio16, "",
         ratio16 >= 4.0 ? "MET" : "MISSED");
  fflush(stdout);

  /* ---- 2. latency at a near and a far stream position ----
   * Two sequences: one fed to `far`, one to `near`; then their decode steps
   * alternate (near, far, near, ...) so load from other processes hits both
   * samples alike. */
  int32_t idf, idn;
  rc = ss_seq_create(b.e, &sp, &idf);
  if (rc) die("sequence", rc);
  rc = ss_seq_create(b.e, &sp, &idn);
  if (rc) die("sequence", rc);
  int32_t tokf = b.info.bos_token_id >= 0 ? b.info.bos_token_id : 1, tokn = tokf;
  double t_pf = prefill(&b, &idf, 1, far);
  double pf_rate = (double)far / t_pf;
  prefill(&b, &idn, 1, near);
  int64_t ev0, ev1, evn0, evn1;
  seen_of(&b, idf, &ev0);
  seen_of(&b, idn, &evn0);
  for (int s = 0; s < N; s++) {
    lat[s] = decode_step(&b, &idn, 1, &tokn);
    lat2[s] = decode_step(&b, &idf, 1, &tokf);
  }
  seen_of(&b, idf, &ev1);
  seen_of(&b, idn, &evn1);
  double lat_near = median(lat, N), lat_far = median(lat2, N);
  double lat_ratio = lat_far / lat_near;
  char name[96];
  snprintf(name, sizeof name, "decode latency ms, position %lld", (long long)near);
  printf("%-44s %12.3f %12s batch 1, median of %d steps, %lld evictions\n", name, 1e3 * lat_near, "", N,
         (long long)(evn1 - evn0));
  snprintf(name, sizeof name, "decode latency ms, position %lld", (long long)far);
  printf("%-44s %12.3f %12s batch 1, median of %d steps, %lld evictions\n", name, 1e3 * lat_far, "", N,
         (long long)(ev1 - ev0));
  printf("%-44s %+11.1f%% %12s steps alternate; target within 5%%: %s\n", "far vs near latency",
         100.0 * (lat_ratio - 1.0), "", lat_ratio <= 1.05 && lat_ratio >= 0.95 ? "MET" : "MISSED");
  snprintf(name, sizeof name, "prefill tok/s to position %lld", (long long)far);
  printf("%-44s %12.1f %12s %lld tokens in %.1f s, chunks of %d\n", name, pf_rate, "", (long long)far, t_pf, K);
  fflush(stdout);
  ss_seq_free(b.e, idf);
  ss_seq_free(b.e, idn);

  /* ---- 3. evicting vs non-evicting step at equal attention span ---- */
  for (int s = 0; s < R; s++) {
    rc = ss_seq_create(b.e, &sp, &ids[s]);
    if (rc) die("sequence", rc);
    cur[s] = b.info.bos_token_id >= 0 ? b.info.bos_token_id : 1;
  }
  prefill(&b, ids, R, W - 1);
  int bad = 0;
  for (int s = 0; s < R; s++) {
    int64_t e0, e1, e2;
    seen_of(&b, ids[s], &e0);
    lat[s] = decode_step(&b, &ids[s], 1, &cur[s]); /* stream index W-1: fills the last slot */
    seen_of(&b, ids[s], &e1);
    lat2[s] = decode_step(&b, &ids[s], 1, &cur[s]); /* stream index W: evicts */
    seen_of(&b, ids[s], &e2);
    bad |= e1 != e0 || e2 != e1 + 1;
    diff[s] = lat2[s] - lat[s];
  }
  double med_ne = median(lat, R), med_ev = median(lat2, R), med_diff = median(diff, R);
  double ev_rel = med_diff / med_ne, far_rel = lat_far / med_ne - 1.0;
  snprintf(name, sizeof name, "non-evicting step ms (index %d, span %d)", W - 1, W);
  printf("%-44s %12.3f %12s median of %d sequences\n", name, 1e3 * med_ne, "", R);
  snprintf(name, sizeof name, "evicting step ms (index %d, span %d)", W, W);
  printf("%-44s %12.3f %12s median of %d sequences%s\n", name, 1e3 * med_ev, "", R,
         bad ? " (WARNING: eviction counters not as expected)" : "");
  printf("%-44s %+11.2f%% %12s paired median; target within 2%%: %s\n", "evicting - non-evicting", 100.0 * ev_rel, "",
         ev_rel <= 0.02 ? "MET" : "MISSED");
  snprintf(name, sizeof name, "far steps (index %lld+, span %d) vs non-evicting", (long long)far, W);
  printf("%-44s %+11.2f%% %12s second evicting sample (part 2)\n", name, 100.0 * far_rel, "");
  for (int s = 0; s < R; s++) ss_seq_free(b.e, ids[s]);

  free(b.toks);
  free(b.ids);
  free(b.ntok);
  free(b.flags);
  free(b.out);
  free(lat);
  free(lat2);
  free(diff);
  ss_engine_free(b.e);
  ss_model_free(m);
  return 0;
}
