/* sampler.c — greedy / temperature / top-k / top-p sampling; see sampler.h. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

void ss_rng_seed(ss_rng *rng, uint64_t seed) { rng->state = seed; }

uint64_t ss_rng_next(ss_rng *rng) {
  uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double ss_rng_uniform(ss_rng *rng) { return (double)(ss_rng_next(rng) >> 11) * 0x1.0p-53; }

int32_t ss_argmax(const float *logits, int32_t n) {
  int32_t best = 0;
  float bv = -INFINITY;
  int found = 0;
  for (int32_t i = 0; i < n; i++) {
    float v = logits[i];
    if (isnan(v)) continue;
    if (!found || v > bv) {
      bv = v;
      best = i;
      found = 1;
    }
  }
  return best;
}

int32_t ss_mask_count(const uint32_t *mask, int32_t n) {
  if (!mask) return n;
  int32_t count = 0, full = n >> 5;
  for (int32_t w = 0; w < full; w++) count += __builtin_popcount(mask[w]);
  if (n & 31) count += __builtin_popcount(mask[full] & ((1u << (n & 31)) - 1u));
  return count;
}

/* argmax over the allowed tokens; the first allowed one when all of them are NaN */
static int32_t argmax_masked(const float *logits, int32_t n, const uint32_t *mask) {
  int32_t best = -1, first = -1;
  float bv = -INFINITY;
  for (int32_t i = 0; i < n; i++) {
    if (!ss_mask_allows(mask, i)) continue;
    if (first < 0) first = i;
    float v = logits[i];
    if (isnan(v)) continue;
    if (best < 0 || v > bv) {
      bv = v;
      best = i;
    }
  }
  return best >= 0 ? best : first >= 0 ? first : 0;
}

double ss_log_softmax_at(const float *logits, int32_t n, int32_t target) {
  double m = -INFINITY;
  for (int32_t i = 0; i < n; i++) m = logits[i] > m ? logits[i] : m;
  double sum = 0.0;
  for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - m);
  return ((double)logits[target] - m) - log(sum);
}

/* a ranks before b: larger logit first, then lower id */
static inline int better(const ss_candidate *a, const ss_candidate *b) {
  return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_candidates(const void *pa, const void *pb) {
  const ss_candidate *a = pa, *b = pb;
  return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* min-heap on `better` (the root is the worst of the kept candidates) */
static void heap_sift_down(ss_candidate *h, int32_t n, int32_t i) {
  for (;;) {
    int32_t l = 2 * i + 1, r = l + 1, w = i;
    if (l < n && better(&h[w], &h[l])) w = l;
    if (r < n && better(&h[w], &h[r])) w = r;
    if (w == i) return;
    ss_candidate tmp = h[i];
    h[i] = h[w];
    h[w] = tmp;
    i = w;
  }
}

/* Keep the k best of c[n] in c[0..k) (any order). */
static void select_top_k(ss_candidate *c, int32_t n, int32_t k) {
  for (int32_t i = k / 2 - 1; i >= 0; i--) heap_sift_down(c, k, i);
  for (int32_t i = k; i < n; i++) {
    if (better(&c[i], &c[0])) {
      c[0] = c[i];
      heap_sift_down(c, k, 0);
    }
  }
}

int32_t ss_sample(const ss_sampling *s, ss_rng *rng, const float *logits, int32_t n, const uint32_t *mask,
                  ss_candidate *c) {
  if (n <= 0) return 0;
  int32_t greedy = mask ? argmax_masked(logits, n, mask) : ss_argmax(logits, n);
  if (!(s->temperature > 0.0f)) return greedy;
  double inv_t = 1.0 / (double)s->temperature;
  double m = logits[greedy];

  /* candidates: every allowed token with a non-NaN logit */
  int32_t nc = 0;
  for (int32_t i = 0; i < n; i++)
    if (!isnan(logits[i]) && ss_mask_allows(mask, i)) c[nc++] = (ss_candidate){logits[i], i};
  if (nc == 0) return greedy;

  int reduced = 0;
  if (s->top_k > 0 && s->top_k < nc) {
    select_top_k(c, nc, s->top_k);
    nc = s->top_k;
    reduced = 1;
  }
  if (s->top_p < 1.0f) {
    double total = 0.0;
    for (int32_t i = 0; i < nc; i++) total += exp(((double)c[i].logit - m) * inv_t);
    if (!reduced) {
      /* Tokens with p < (1 - top_p) / (nc - 1) cannot be in the nucleus (all of them
       * together weigh less than 1 - top_p); drop them before sorting (keeping
       * the argmax, which is always in it). */
      double cut = nc > 1 ? (1.0 - (double)s->top_p) / (double)(nc - 1) * total : 0.0;
      int32_t k = 0;
      for (int32_t i = 0; i < nc; i++)
        if (c[i].id == greedy || exp(((double)c[i].logit - m) * inv_t) >= cut) c[k++] = c[i];
      nc = k;
    }
    qsort(c, (size_t)nc, sizeof *c, cmp_candidates);
    double cum = 0.0, target = (double)s->top_p * total;
    int32_t keep = nc;
    for (int32_t i = 0; i < nc; i++) {
      cum += exp(((double)c[i].logit - m) * inv_t);
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
    nc = keep;
  }

  /* the candidate order (id order, heap order or sorted) is a pure function of
   * the logits, so the draw is reproducible */
  double sum = 0.0;
  for (int32_t i = 0; i < nc; i++) sum += exp(((double)c[i].logit - m) * inv_t);
  if (!(sum > 0.0) || !isfinite(sum)) return greedy;
  double u = ss_rng_uniform(rng) * sum, cum = 0.0;
  for (int32_t i = 0; i < nc; i++) {
    cum += exp(((double)c[i].logit - m) * inv_t);
    if (u < cum) return c[i].id;
  }
  return c[nc - 1].id;
}
