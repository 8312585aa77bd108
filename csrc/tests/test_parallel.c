/* test_parallel.c — thread pool protocol (every item exactly once, joins and
 * closes under stress), the register-blocked matmul and attention kernels
 * against their scalar definitions bit for bit, and thread-count invariance
 * of the engine with the pool forced on for every op (SS_CPU_PAR_MIN_WORK=0)
 * and with the default inline threshold, at head sizes 8, 16 and 64, and
 * invariance under the number of query heads per GQA attention task
 * (SS_CPU_ATTN_HEADS; 1 is the one-task-per-head structure). */
#include <math.h>
#include <stdatomic.h>
#include <time.h>

#include "cpu_kernels.h"
#include "test_util.h"
#include "threadpool.h"
#include "tiny_model.h"

/* ---- thread pool ---- */

typedef struct count_job {
  atomic_int *hits;
  atomic_int bad_tid;
  int n_threads;
  int spin; /* busy work per item */
} count_job;

static void count_task(void *ctx, int64_t b, int64_t e, int tid) {
  count_job *j = ctx;
  if (tid < 0 || tid >= j->n_threads) atomic_store(&j->bad_tid, 1);
  for (int64_t i = b; i < e; i++) {
    volatile int x = 0;
    for (int k = 0; k < j->spin; k++) x += k;
    atomic_fetch_add_explicit(&j->hits[i], 1, memory_order_relaxed);
  }
}

static void test_pool(void) {
  enum { NMAX = 257 };
  atomic_int hits[NMAX];
  for (int nt = 1; nt <= 3; nt++) {
    ss_threadpool *p = ss_threadpool_create(nt);
    CHECK(p && ss_threadpool_size(p) == nt, "pool of %d", nt);
    if (!p) continue;
    int wrong = 0, bad_tid = 0;
    for (int iter = 0; iter < 4000; iter++) {
      int n = 1 + (iter * 37) % NMAX, grain = 1 + (iter % 5);
      for (int i = 0; i < n; i++) atomic_init(&hits[i], 0);
      count_job j = {.hits = hits, .n_threads = nt, .spin = (iter % 7 == 0) ? 200 : 0};
      atomic_init(&j.bad_tid, 0);
      /* every few hundred jobs, let the workers fall asleep */
      if (iter % 500 == 499) {
        struct timespec ts = {0, 300000};
        nanosleep(&ts, NULL);
      }
      ss_threadpool_run(p, n, grain, count_task, &j);
      for (int i = 0; i < n; i++) wrong += atomic_load(&hits[i]) != 1;
      bad_tid |= atomic_load(&j.bad_tid);
    }
    CHECK(wrong == 0, "%d threads: %d items not run exactly once", nt, wrong);
    CHECK(!bad_tid, "%d threads: tid out of range", nt);
    ss_threadpool_free(p);
  }
  ss_threadpool_free(NULL);
}

/* ---- kernels ---- */

static uint64_t rs = 42;
static float frand(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_matmul_bits(void) {
  static const int ins[] = {8, 17, 64, 172, 768};
  int mismatches = 0, cases = 0;
  for (size_t ii = 0; ii < sizeof ins / sizeof ins[0]; ii++) {
    int in = ins[ii], out = 23;
    float *x = malloc((size_t)9 * in * sizeof(float)), *w = malloc((size_t)out * in * sizeof(float));
    float *b = malloc((size_t)out * sizeof(float)), *y = malloc((size_t)9 * out * sizeof(float));
    float *y0 = malloc((size_t)9 * out * sizeof(float));
    for (int i = 0; i < 9 * in; i++) x[i] = frand();
    for (int i = 0; i < out * in; i++) w[i] = frand();
    for (int i = 0; i < out; i++) b[i] = frand();
    for (int T = 1; T <= 9; T++)
      for (int acc = 0; acc < 2; acc++)
        for (int bias = 0; bias < 2; bias++) {
          for (int i = 0; i < T * out; i++) y[i] = y0[i] = frand();
          int r0 = 2, r1 = out - 1; /* rows not aligned to the 4-row blocks */
          ss_matmul_rows(y, x, w, bias ? b : NULL, T, in, out, r0, r1, acc);
          for (int t = 0; t < T; t++)
            for (int r = 0; r < out; r++) {
              float e = y0[t * out + r];
              if (r >= r0 && r < r1) {
                float s = ss_dot(w + (int64_t)r * in, x + (int64_t)t * in, in) + (bias ? b[r] : 0.0f);
                e = acc ? e + s : s;
              }
              mismatches += memcmp(&e, &y[t * out + r], sizeof e) != 0;
            }
          cases++;
        }
    free(x);
    free(w);
    free(b);
    free(y);
    free(y0);
  }
  CHECK(mismatches == 0, "ss_matmul_rows == ss_dot per element, bit for bit (%d mismatches in %d cases)",
        mismatches, cases);
}

static void test_attention_bits(void) {
  static const int hds[] = {4, 8, 12, 16, 32, 64, 80, 128};
  int bad_s = 0, bad_o = 0;
  for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
    int hd = hds[hi], stride = 3 * hd + 5, n = 131;
    float *q = malloc((size_t)hd * sizeof(float)), *k = malloc((size_t)n * stride * sizeof(float));
    float *s = malloc((size_t)n * sizeof(float)), *o = malloc((size_t)hd * sizeof(float));
    float *o2 = malloc((size_t)hd * sizeof(float));
    const float **vp = malloc((size_t)n * sizeof(float *));
    for (int i = 0; i < hd; i++) q[i] = frand();
    for (int i = 0; i < n * stride; i++) k[i] = frand();
    ss_attn_scores(s, q, k, n, stride, hd, 0.37f);
    for (int j = 0; j < n; j++) {
      float e = ss_dot(q, k + (int64_t)j * stride, hd) * 0.37f;
      bad_s += memcmp(&e, &s[j], sizeof e) != 0;
      vp[j] = k + (int64_t)((j * 7) % n) * stride + 1;
      s[j] = fabsf(s[j]);
    }
    for (int d = 0; d < hd; d++) o[d] = o2[d] = frand();
    ss_attn_pv(o, s, vp, n, hd);
    for (int j = 0; j < n; j++) ss_axpy(o2, s[j], vp[j], hd);
    bad_o += memcmp(o, o2, (size_t)hd * sizeof(float)) != 0;
    free(q);
    free(k);
    free(s);
    free(o);
    free(o2);
    free(vp);
  }
  CHECK(bad_s == 0, "ss_attn_scores == ss_dot * scale bit for bit (%d mismatches)", bad_s);
  CHECK(bad_o == 0, "ss_attn_pv == sequential ss_axpy bit for bit (%d head sizes differ)", bad_o);
}

/* The grouped (GQA) kernels give every head exactly the one-head arithmetic:
 * group sizes across the register tiles and their remainders, key counts
 * across the L1 sub-blocks. */
static void test_attention_group_bits(void) {
  static const int hds[] = {8, 12, 16, 32, 64, 80, 128};
  static const int gs[] = {1, 2, 3, 4, 5, 8, 11};
  static const int ns[] = {1, 31, 33, 128};
  int bad_s = 0, bad_o = 0, cases = 0;
  enum { SST = 131 }; /* score row stride */
  for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
      for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        int hd = hds[hi], G = gs[gi], n = ns[ni], stride = 3 * hd + 5;
        float *q = malloc((size_t)G * hd * sizeof(float)), *k = malloc((size_t)n * stride * sizeof(float));
        float *s = malloc((size_t)G * SST * sizeof(float)), *e1 = malloc((size_t)n * sizeof(float));
        float *o = malloc((size_t)G * hd * sizeof(float)), *o2 = malloc((size_t)G * hd * sizeof(float));
        const float **vp = malloc((size_t)n * sizeof(float *));
        for (int i = 0; i < G * hd; i++) q[i] = frand();
        for (int i = 0; i < n * stride; i++) k[i] = frand();
        for (int i = 0; i < G * SST; i++) s[i] = 7.0f; /* beyond n: must stay untouched */
        ss_attn_scores_g(s, SST, q, G, k, n, stride, hd, 0.37f);
        for (int g = 0; g < G; g++) {
          ss_attn_scores(e1, q + g * hd, k, n, stride, hd, 0.37f);
          bad_s += memcmp(e1, s + g * SST, (size_t)n * sizeof(float)) != 0;
          for (int j = n; j < SST; j++) bad_s += s[g * SST + j] != 7.0f;
          for (int j = 0; j < n; j++) s[g * SST + j] = fabsf(s[g * SST + j]);
        }
        for (int j = 0; j < n; j++) vp[j] = k + (int64_t)((j * 7) % n) * stride + 1;
        for (int i = 0; i < G * hd; i++) o[i] = o2[i] = frand();
        ss_attn_pv_g(o, s, SST, G, vp, n, hd);
        for (int g = 0; g < G; g++)
          for (int j = 0; j < n; j++) ss_axpy(o2 + g * hd, s[g * SST + j], vp[j], hd);
        bad_o += memcmp(o, o2, (size_t)G * hd * sizeof(float)) != 0;
        cases++;
        free(q);
        free(k);
        free(s);
        free(e1);
        free(o);
        free(o2);
        free(vp);
      }
  CHECK(bad_s == 0, "ss_attn_scores_g == ss_attn_scores per head bit for bit (%d mismatches, %d cases)", bad_s,
        cases);
  CHECK(bad_o == 0, "ss_attn_pv_g == sequential ss_axpy per head bit for bit (%d cases differ of %d)", bad_o,
        cases);
}

/* ---- engine: thread count and inline threshold do not change a bit ---- */

static int run_logits(const tiny_model *t, int n_threads, float *logits) {
  ss_engine_params ep = ss_engine_default_params();
  ep.n_threads = n_threads;
  ep.max_batch_tokens = 64;
  ep.max_sequences = 4;
  ss_engine *e = NULL;
  if (ss_engine_create(&t->m, &ep, &e, NULL, 0) != SS_OK) return -1;
  int32_t ids[3];
  int pol[3] = {SS_POLICY_STREAMING, SS_POLICY_WINDOW, SS_POLICY_DENSE}, sinks[3] = {4, 0, 0}, cap[3] = {20, 10, 60};
  for (int i = 0; i < 3; i++) {
    ss_seq_params sp = ss_seq_default_params();
    sp.policy = pol[i];
    sp.n_sinks = sinks[i];
    sp.capacity = cap[i];
    if (ss_seq_create(e, &sp, &ids[i]) != SS_OK) return -1;
  }
  int V = t->cfg.vocab;
  int32_t n[3] = {20, 13, 9}, toks[42], fl[3] = {SS_STEP_LOGITS, SS_STEP_LOGITS, SS_STEP_LOGITS};
  for (int i = 0; i < 42; i++) toks[i] = (i * 11 + 2) % V;
  int rc = 0;
  for (int k = 0; k < 3 && !rc; k++) rc = ss_engine_step(e, 3, ids, n, toks, fl, NULL, NULL, logits, NULL, NULL);
  /* then a few one-token decode steps */
  int32_t one[3] = {1, 1, 1};
  for (int k = 0; k < 5 && !rc; k++)
    rc = ss_engine_step(e, 3, ids, one, toks + k * 3, fl, NULL, NULL, logits + (size_t)3 * V, NULL, NULL);
  ss_engine_free(e);
  return rc;
}

static void test_engine_invariance(void) {
  enum { NCFG = 4 };
  tiny_cfg cfgs[NCFG] = {tiny_default_cfg(), tiny_default_cfg(), tiny_default_cfg(), tiny_default_cfg()};
  cfgs[1].dim = 64, cfgs[1].hidden = 96, cfgs[1].head_dim = 16, cfgs[1].n_heads = 4, cfgs[1].n_kv_heads = 2;
  cfgs[2].dim = 128, cfgs[2].hidden = 160, cfgs[2].head_dim = 64, cfgs[2].n_heads = 2, cfgs[2].n_kv_heads = 1;
  /* TinyLlama-like GQA: 8 query heads per K/V head, head_dim 64 */
  cfgs[3].dim = 128, cfgs[3].hidden = 160, cfgs[3].head_dim = 64, cfgs[3].n_heads = 16, cfgs[3].n_kv_heads = 2;
  for (int ci = 0; ci < NCFG; ci++) {
    tiny_model t;
    if (tiny_model_init(&t, cfgs[ci]) != 0) {
      CHECK(0, "tiny model %d", ci);
      continue;
    }
    size_t nl = (size_t)6 * t.cfg.vocab;
    float *ref = calloc(nl, sizeof(float)), *got = calloc(nl, sizeof(float));
    unsetenv("SS_CPU_PAR_MIN_WORK");
    CHECK(run_logits(&t, 1, ref) == 0, "hd %d: 1 thread runs", t.cfg.head_dim);
    static const char *thr[2] = {"0", NULL};
    for (int ti = 0; ti < 2; ti++) {
      if (thr[ti]) setenv("SS_CPU_PAR_MIN_WORK", thr[ti], 1);
      else unsetenv("SS_CPU_PAR_MIN_WORK");
      for (int nt = 2; nt <= 3; nt++) {
        memset(got, 0, nl * sizeof(float));
        CHECK(run_logits(&t, nt, got) == 0, "hd %d: %d threads run", t.cfg.head_dim, nt);
        CHECK(memcmp(ref, got, nl * sizeof(float)) == 0,
              "hd %d: %d threads (threshold %s) bit-identical to 1 thread", t.cfg.head_dim, nt,
              thr[ti] ? thr[ti] : "default");
      }
    }
    /* query heads per attention task (1 = the one-head-per-task structure,
     * 3 -> the largest divisor of the group not above 3) change no bit */
    static const char *ahs[3] = {"1", "3", "2"};
    for (int ai = 0; ai < 3; ai++) {
      setenv("SS_CPU_ATTN_HEADS", ahs[ai], 1);
      for (int nt = 1; nt <= 3; nt += 2) {
        if (nt == 3) setenv("SS_CPU_PAR_MIN_WORK", "0", 1); /* the tasks spread over the threads */
        else unsetenv("SS_CPU_PAR_MIN_WORK");
        memset(got, 0, nl * sizeof(float));
        CHECK(run_logits(&t, nt, got) == 0, "hd %d: %d threads run", t.cfg.head_dim, nt);
        CHECK(memcmp(ref, got, nl * sizeof(float)) == 0,
              "hd %d, group %d: %s heads per attention task, %d threads: bit-identical", t.cfg.head_dim,
              t.cfg.n_heads / t.cfg.n_kv_heads, ahs[ai], nt);
      }
    }
    unsetenv("SS_CPU_ATTN_HEADS");
    unsetenv("SS_CPU_PAR_MIN_WORK");
    free(ref);
    free(got);
    tiny_model_free(&t);
  }
}

int main(void) {
  test_pool();
  test_matmul_bits();
  test_attention_bits();
  test_attention_group_bits();
  test_engine_invariance();
  return test_summary("test_parallel");
}
