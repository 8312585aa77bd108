/* test_sampler.c — greedy, temperature, top-k, top-p, RNG, log-softmax. */
#include <math.h>

#include "sampler.h"
#include "test_util.h"

static void test_greedy(void) {
  float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, NAN};
  CHECK(ss_argmax(l, 6) == 1, "argmax picks the lowest index on ties (got %d)", ss_argmax(l, 6));
  ss_sampling g = {0.0f, 0, 1.0f};
  ss_candidate c[6];
  ss_rng r;
  ss_rng_seed(&r, 1);
  uint64_t before = r.state;
  CHECK(ss_sample(&g, &r, l, 6, NULL, c) == 1, "temperature 0 is greedy");
  CHECK(r.state == before, "greedy does not consume randomness");
  /* top-k = 1 and a tiny top-p are greedy, whatever the temperature and seed */
  for (uint64_t seed = 0; seed < 50; seed++) {
    ss_rng_seed(&r, seed);
    ss_sampling k1 = {1.5f, 1, 1.0f}, p0 = {1.5f, 0, 1e-6f}, kp = {2.0f, 3, 1e-6f};
    CHECK(ss_sample(&k1, &r, l, 5, NULL, c) == 1, "top_k 1 == greedy (seed %llu)", (unsigned long long)seed);
    CHECK(ss_sample(&p0, &r, l, 5, NULL, c) == 1, "tiny top_p == greedy (seed %llu)", (unsigned long long)seed);
    CHECK(ss_sample(&kp, &r, l, 5, NULL, c) == 1, "top_k 3 + tiny top_p == greedy (seed %llu)", (unsigned long long)seed);
  }
}

static void test_rng(void) {
  ss_rng a, b, c;
  ss_rng_seed(&a, 42);
  ss_rng_seed(&b, 42);
  ss_rng_seed(&c, 43);
  int same = 1, differ = 0;
  for (int i = 0; i < 100; i++) {
    uint64_t x = ss_rng_next(&a), y = ss_rng_next(&b), z = ss_rng_next(&c);
    same &= x == y;
    differ += x != z;
  }
  CHECK(same, "same seed, same stream");
  CHECK(differ > 95, "different seeds, different streams");
  double lo = 1, hi = 0, sum = 0;
  for (int i = 0; i < 10000; i++) {
    double u = ss_rng_uniform(&a);
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
    sum += u;
  }
  CHECK(lo >= 0 && hi < 1 && fabs(sum / 10000 - 0.5) < 0.02, "uniform in [0,1): min %g max %g mean %g", lo, hi,
        sum / 10000);
}

/* sample `n` draws among the tokens `mask` allows (NULL: all); counts[V] */
static void draw(const ss_sampling *s, uint64_t seed, const float *l, int V, const uint32_t *mask, int n,
                 int *counts) {
  ss_rng r;
  ss_rng_seed(&r, seed);
  ss_candidate c[64];
  memset(counts, 0, (size_t)V * sizeof(int));
  for (int i = 0; i < n; i++) {
    int32_t tok = ss_sample(s, &r, l, V, mask, c);
    if (tok >= 0 && tok < V) counts[tok]++;
  }
}

/* chi-square of counts against probabilities p (cells with p == 0 must be empty) */
static double chi2(const int *counts, const double *p, int V, int n, int *impossible) {
  double x = 0;
  *impossible = 0;
  for (int i = 0; i < V; i++) {
    if (p[i] == 0) {
      *impossible += counts[i];
      continue;
    }
    double e = p[i] * n;
    x += (counts[i] - e) * (counts[i] - e) / e;
  }
  return x;
}

static void test_distributions(void) {
  enum { V = 6, N = 40000 };
  const float l[V] = {1.0f, 0.2f, 2.0f, -0.5f, 1.5f, 0.0f};
  int counts[V], bad;
  double p[V];

  /* temperature only: p = softmax(l / T) */
  ss_sampling s = {0.8f, 0, 1.0f};
  double z = 0;
  for (int i = 0; i < V; i++) z += (p[i] = exp(l[i] / 0.8));
  for (int i = 0; i < V; i++) p[i] /= z;
  draw(&s, 12345, l, V, NULL, N, counts);
  double x = chi2(counts, p, V, N, &bad);
  CHECK(x < 25.0, "temperature 0.8: chi-square %.2f (5 dof) too large", x); /* p ~ 1e-4 */
  CHECK(x > 0.05, "temperature 0.8: chi-square %.3f suspiciously small", x);

  /* top-k 3: only {2, 4, 0}, renormalised */
  ss_sampling k = {1.0f, 3, 1.0f};
  z = 0;
  for (int i = 0; i < V; i++) p[i] = (i == 2 || i == 4 || i == 0) ? exp(l[i]) : 0, z += p[i];
  for (int i = 0; i < V; i++) p[i] /= z;
  draw(&k, 7, l, V, NULL, N, counts);
  x = chi2(counts, p, V, N, &bad);
  CHECK(bad == 0 && x < 20.0, "top_k 3: chi-square %.2f (2 dof), %d draws outside the top 3", x, bad);

  /* top-p 0.6 at T=1: probabilities sorted 2 (.39), 4 (.24), 0 (.14)...; the nucleus
   * is the smallest prefix reaching 0.6 -> {2, 4} */
  ss_sampling tp = {1.0f, 0, 0.6f};
  z = 0;
  double full = 0;
  for (int i = 0; i < V; i++) full += exp(l[i]);
  CHECK(exp(l[2]) / full < 0.6 && (exp(l[2]) + exp(l[4])) / full >= 0.6, "test premise: nucleus is {2, 4}");
  for (int i = 0; i < V; i++) p[i] = (i == 2 || i == 4) ? exp(l[i]) : 0, z += p[i];
  for (int i = 0; i < V; i++) p[i] /= z;
  draw(&tp, 99, l, V, NULL, N, counts);
  x = chi2(counts, p, V, N, &bad);
  CHECK(bad == 0 && x < 15.0, "top_p 0.6: chi-square %.2f (1 dof), %d draws outside the nucleus", x, bad);

  /* same seed, same tokens; another seed, another sequence */
  int a[200], b[200], c2[200];
  ss_rng r1, r2, r3;
  ss_rng_seed(&r1, 5);
  ss_rng_seed(&r2, 5);
  ss_rng_seed(&r3, 6);
  ss_candidate cand[V];
  int same = 1, diff = 0;
  for (int i = 0; i < 200; i++) {
    a[i] = ss_sample(&s, &r1, l, V, NULL, cand);
    b[i] = ss_sample(&s, &r2, l, V, NULL, cand);
    c2[i] = ss_sample(&s, &r3, l, V, NULL, cand);
    same &= a[i] == b[i];
    diff += a[i] != c2[i];
  }
  CHECK(same, "same seed => same tokens");
  CHECK(diff > 20, "different seed => different tokens (%d of 200 differ)", diff);
}

static void test_log_softmax(void) {
  float l[4] = {1000.0f, 999.0f, -1000.0f, 1000.0f};
  double z = 2 + exp(-1.0) + exp(-2000.0);
  CHECK(fabs(ss_log_softmax_at(l, 4, 0) - (-log(z))) < 1e-12, "stable log-softmax at 0: %g",
        ss_log_softmax_at(l, 4, 0));
  CHECK(fabs(ss_log_softmax_at(l, 4, 1) - (-1 - log(z))) < 1e-12, "stable log-softmax at 1");
  CHECK(isfinite(ss_log_softmax_at(l, 4, 2)) && ss_log_softmax_at(l, 4, 2) < -1999, "tiny probability stays finite");
  float u[3] = {0, 0, 0};
  CHECK(fabs(ss_log_softmax_at(u, 3, 2) + log(3.0)) < 1e-12, "uniform: -log 3");
}

static int cmp_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x > y ? -1 : x < y;
}

/* large vocab: draws stay inside the nucleus computed the naive way (sort everything) */
static void test_nucleus_large(void) {
  enum { V = 1000, N = 3000 };
  static float l[V];
  static double p[V], sorted[V];
  static ss_candidate c[V];
  uint64_t st = 3;
  ss_rng g;
  ss_rng_seed(&g, 11);
  for (int i = 0; i < V; i++) l[i] = (float)(4.0 * ss_rng_uniform(&g));
  for (int trial = 0; trial < 2; trial++) {
    float top_p = trial ? 0.9f : 0.3f;
    int top_k = trial ? 50 : 0;
    /* naive nucleus threshold: probability of the last member */
    double z = 0;
    for (int i = 0; i < V; i++) z += (p[i] = exp(l[i]));
    for (int i = 0; i < V; i++) sorted[i] = (p[i] /= z);
    qsort(sorted, V, sizeof(double), cmp_desc);
    int k = top_k ? top_k : V;
    double zk = 0, cum = 0, last = 0;
    for (int i = 0; i < k; i++) zk += sorted[i];
    int members = 0;
    for (int i = 0; i < k; i++) {
      cum += sorted[i] / zk;
      last = sorted[i];
      members++;
      if (cum >= top_p) break;
    }
    ss_sampling sp = {1.0f, top_k, top_p};
    ss_rng r;
    ss_rng_seed(&r, st++);
    int outside = 0, seen[V] = {0}, distinct = 0;
    for (int n = 0; n < N; n++) {
      int32_t t = ss_sample(&sp, &r, l, V, NULL, c);
      if (t < 0 || t >= V || p[t] < last * (1 - 1e-9)) outside++;
      else if (!seen[t]++) distinct++;
    }
    CHECK(outside == 0, "top_k %d top_p %.1f: %d draws outside the nucleus of %d", top_k, top_p, outside, members);
    CHECK(distinct > members / 2, "top_k %d top_p %.1f: only %d of %d nucleus tokens drawn", top_k, top_p, distinct,
          members);
  }
}

/* A token mask: disallowed tokens are never drawn, the rest keep their renormalised probabilities
 * (top_k / top_p over the allowed tokens), greedy is the best allowed token, an all-ones mask changes
 * nothing (same draws as no mask), and bits past the vocabulary do not count. */
static void test_mask(void) {
  enum { V = 6, N = 40000 };
  const float l[V] = {1.0f, 0.2f, 2.0f, -0.5f, 1.5f, 0.0f};
  const uint32_t no2 = 0x3bu; /* {0, 1, 3, 4, 5}: the argmax 2 is forbidden */
  ss_candidate c[V];
  ss_rng r;
  ss_rng_seed(&r, 1);
  ss_sampling g = {0.0f, 0, 1.0f};
  CHECK(ss_sample(&g, &r, l, V, &no2, c) == 4, "greedy under a mask picks the best allowed token (4)");
  const uint32_t tie = 0x22u; /* {1, 5} with equal logits below */
  const float eq[V] = {9.0f, 3.0f, 9.0f, 0.0f, 0.0f, 3.0f};
  CHECK(ss_sample(&g, &r, eq, V, &tie, c) == 1, "masked greedy: lowest allowed index on ties");
  const uint32_t only3 = 0x8u;
  ss_sampling hot = {1.5f, 2, 0.5f};
  int ok = 1;
  for (int i = 0; i < 200; i++) ok &= ss_sample(&hot, &r, l, V, &only3, c) == 3;
  CHECK(ok, "a mask of one token always gives that token, with top_k and top_p set");

  int counts[V], bad;
  double p[V], z = 0;
  ss_sampling t = {1.0f, 0, 1.0f};
  for (int i = 0; i < V; i++) z += (p[i] = ss_mask_allows(&no2, i) ? exp(l[i]) : 0);
  for (int i = 0; i < V; i++) p[i] /= z;
  draw(&t, 321, l, V, &no2, N, counts);
  double x = chi2(counts, p, V, N, &bad);
  CHECK(bad == 0 && x < 25.0, "masked temperature 1: chi-square %.2f (4 dof), %d draws of token 2", x, bad);

  /* top_k 2 among the allowed {0, 1, 3, 4, 5}: {4, 0} */
  ss_sampling k = {1.0f, 2, 1.0f};
  z = 0;
  for (int i = 0; i < V; i++) z += (p[i] = (i == 4 || i == 0) ? exp(l[i]) : 0);
  for (int i = 0; i < V; i++) p[i] /= z;
  draw(&k, 77, l, V, &no2, N, counts);
  x = chi2(counts, p, V, N, &bad);
  CHECK(bad == 0 && x < 20.0, "masked top_k 2: chi-square %.2f (1 dof), %d draws outside {0, 4}", x, bad);

  /* top_p 0.5 of the allowed mass: 4 (.45 of it) alone is short, {4, 0} reaches it */
  ss_sampling tp = {1.0f, 0, 0.5f};
  double allowed = 0;
  for (int i = 0; i < V; i++) allowed += ss_mask_allows(&no2, i) ? exp(l[i]) : 0;
  CHECK(exp(l[4]) / allowed < 0.5 && (exp(l[4]) + exp(l[0])) / allowed >= 0.5, "test premise: nucleus {4, 0}");
  draw(&tp, 78, l, V, &no2, N, counts);
  x = chi2(counts, p, V, N, &bad);
  CHECK(bad == 0 && x < 20.0, "masked top_p 0.5: chi-square %.2f (1 dof), %d draws outside {0, 4}", x, bad);

  /* all allowed = no mask, draw for draw */
  const uint32_t all = 0xffffffffu;
  ss_rng r1, r2;
  ss_rng_seed(&r1, 9);
  ss_rng_seed(&r2, 9);
  ss_sampling mix = {0.9f, 4, 0.8f};
  int same = 1;
  for (int i = 0; i < 500; i++) same &= ss_sample(&mix, &r1, l, V, &all, c) == ss_sample(&mix, &r2, l, V, NULL, c);
  CHECK(same, "an all-ones mask draws exactly what no mask draws");

  CHECK(ss_mask_count(NULL, 70) == 70, "no mask: every token");
  const uint32_t words[3] = {0xffffffffu, 0x1u, 0xffffffc0u}; /* 32 + 1 + bits 70.. of a 70-token vocab */
  CHECK(ss_mask_count(words, 70) == 33, "mask count ignores bits past the vocabulary (got %d)",
        ss_mask_count(words, 70));
  const uint32_t past[2] = {0, 0xfffffff0u}; /* only ids 36.. set, vocab 36 */
  CHECK(ss_mask_count(past, 36) == 0, "a mask with only ids past the vocabulary allows nothing");
}

int main(void) {
  test_mask();
  test_nucleus_large();
  test_greedy();
  test_rng();
  test_distributions();
  test_log_softmax();
  return test_summary("test_sampler");
}
