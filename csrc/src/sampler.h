/*
 * sampler.h — host-side token sampling from one row of logits.
 *
 * temperature == 0: greedy argmax (lowest index on ties).
 * temperature > 0 : p ~ softmax(logits / temperature), restricted to the
 *                   top_k most likely tokens (top_k > 0), then to the smallest
 *                   prefix of those (most likely first) whose probability
 *                   reaches top_p (top_p < 1), renormalised, then drawn with
 *                   the sequence's RNG. Same seed => same tokens.
 * A token mask (NULL = none; SS_MASK_WORDS(n) words, bit t % 32 of word t / 32
 * set = token t allowed) removes the other tokens before all of this: they get
 * probability 0 and top_k / top_p apply to the allowed tokens alone. Without a
 * mask the code path and the draws are exactly those of an unmasked sampler.
 */
#ifndef SS_SAMPLER_H
#define SS_SAMPLER_H

#include <stdint.h>

/* splitmix64 generator */
typedef struct ss_rng {
  uint64_t state;
} ss_rng;

void ss_rng_seed(ss_rng *rng, uint64_t seed);
uint64_t ss_rng_next(ss_rng *rng);
/* uniform double in [0, 1) */
double ss_rng_uniform(ss_rng *rng);

typedef struct ss_sampling {
  float temperature; /* >= 0 */
  int32_t top_k;     /* >= 0, 0 = off */
  float top_p;       /* (0, 1], 1 = off */
} ss_sampling;

/* Candidate scratch for ss_sample: one per vocab entry. */
typedef struct ss_candidate {
  float logit;
  int32_t id;
} ss_candidate;

/* index of the largest logit (lowest index on ties; NaNs are skipped) */
int32_t ss_argmax(const float *logits, int32_t n);
/* Whether mask (NULL: every token) allows token t. */
static inline int ss_mask_allows(const uint32_t *mask, int32_t t) {
  return !mask || ((mask[t >> 5] >> (t & 31)) & 1u);
}
/* Number of tokens < n that mask allows. */
int32_t ss_mask_count(const uint32_t *mask, int32_t n);
/* Draw a token from logits[n] among those `mask` allows (NULL: all; the mask must allow at least one
 * token < n, see ss_mask_count). `scratch` holds n candidates (unused when greedy and unmasked). */
int32_t ss_sample(const ss_sampling *s, ss_rng *rng, const float *logits, int32_t n, const uint32_t *mask,
                  ss_candidate *scratch);
/* log softmax(logits)[target], computed in double with the max subtracted. */
double ss_log_softmax_at(const float *logits, int32_t n, int32_t target);

#endif /* SS_SAMPLER_H */
