/*
 * cpu_kernels.h — small float32 kernels of the CPU backend (output first).
 *
 * The dot products use a fixed lane structure (SS_LANES independent partial
 * sums, reduced in a fixed order, then the tail) so that dot() and dot4() give
 * bit-identical results: a token's output does not depend on how many tokens
 * were batched with it, nor on the thread count.
 */
#ifndef SS_CPU_KERNELS_H
#define SS_CPU_KERNELS_H

#include <stdint.h>

#define SS_LANES 16

/* Explicit fused multiply-add where the target has it (the build uses
 * -std=c11, which disables automatic contraction); the choice is fixed at
 * compile time so every kernel rounds the same way. */
#ifdef __FMA__
#define SS_MADD(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define SS_MADD(a, b, c) ((a) * (b) + (c))
#endif

/* Fixed-order reduction of the lane sums. */
static inline float ss_reduce_lanes(const float *acc) {
  float s8[8];
  for (int k = 0; k < 8; k++) s8[k] = acc[k] + acc[k + 8];
  float s4[4];
  for (int k = 0; k < 4; k++) s4[k] = s8[k] + s8[k + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* sum_i a[i] * b[i]: SS_LANES partial sums, reduced in a fixed order, then the
 * tail in sequence. (For n < SS_LANES that is just the sequential sum.) Inline:
 * the attention loops call it with short head vectors. */
static inline float ss_dot(const float *restrict a, const float *restrict b, int n) {
  int i = 0;
  float s = 0.0f;
  if (n >= SS_LANES) {
    float acc[SS_LANES] = {0};
    for (; i + SS_LANES <= n; i += SS_LANES)
      for (int k = 0; k < SS_LANES; k++) acc[k] = SS_MADD(a[i + k], b[i + k], acc[k]);
    s = ss_reduce_lanes(acc);
  }
  for (; i < n; i++) s = SS_MADD(a[i], b[i], s);
  return s;
}

/* y[n] += a * x[n] */
static inline void ss_axpy(float *restrict y, float a, const float *restrict x, int n) {
  for (int i = 0; i < n; i++) y[i] = SS_MADD(a, x[i], y[i]);
}
/* out[k] = sum_i w[i] * x_k[i], k = 0..3 (w read once for the four vectors) */
void ss_dot4(float out[4], const float *restrict w, const float *restrict x0, const float *restrict x1,
             const float *restrict x2, const float *restrict x3, int n);

/* y[T, out] (=|+=) x[T, in] . W[out, in]^T (+ b[out]) for output rows [r0, r1).
 * Token rows are processed four at a time so each weight row is read once per
 * four tokens. accumulate != 0 adds into y (residual connections). */
void ss_matmul_rows(float *restrict y, const float *restrict x, const float *restrict w, const float *b, int T,
                    int in, int out, int r0, int r1, int accumulate);

/* Attention inner loops, arithmetic identical to the scalar definitions:
 * s[j] = ss_dot(q, k + j * stride, hd) * scale, j in [0, n);
 * out[hd] += p[j] * vp[j][hd] (ss_axpy), j = 0, 1, ..., n-1 in order. */
void ss_attn_scores(float *restrict s, const float *restrict q, const float *restrict k, int64_t n, int stride,
                    int hd, float scale);
void ss_attn_pv(float *restrict out, const float *restrict p, const float *const *vp, int n, int hd);

/* The same two kernels for G query heads that share one K/V head (grouped-query
 * attention): each key / value row is loaded once for all G heads (heads in
 * register tiles, keys in L1-sized sub-blocks) and every head gets exactly the
 * arithmetic of the one-head kernels above (bit-identical per head):
 * s[g * s_stride + j] = ss_dot(q + g * hd, k + j * stride, hd) * scale;
 * out[g * hd + d] += p[g * p_stride + j] * vp[j][d], j = 0, 1, ..., n-1 in order. */
void ss_attn_scores_g(float *restrict s, int s_stride, const float *restrict q, int G, const float *restrict k,
                      int64_t n, int stride, int hd, float scale);
void ss_attn_pv_g(float *restrict out, const float *restrict p, int p_stride, int G, const float *const *vp, int n,
                  int hd);

/* o[n] = x[n] * w[n] / sqrt(mean(x^2) + eps) */
void ss_rmsnorm(float *restrict o, const float *restrict x, const float *restrict w, int n, float eps);

/* HF rotate-half RoPE of one head vector x[hd] in place, with the tables of one
 * position: cos[hd/2], sin[hd/2]. Pairs (d, d + hd/2). */
void ss_rope_rotate(float *restrict x, const float *restrict cos_tab, const float *restrict sin_tab, int hd);

/* The same rotation for Q/K rows in Meta's adjacent-pair layout (GGUF): pairs (2j, 2j + 1). */
void ss_rope_rotate_adjacent(float *restrict x, const float *restrict cos_tab, const float *restrict sin_tab,
                             int hd);

/* inv_freq[hd/2]: inv_freq_j = theta^(-2j/hd), in double. */
void ss_rope_inv_freq(double *inv_freq, double theta, int hd);
/* cos_tab/sin_tab[hd/2] for stream position pos: angle_j = pos * inv_freq_j,
 * computed in double (positions grow without bound), then rounded to float. */
void ss_rope_tables(float *restrict cos_tab, float *restrict sin_tab, int64_t pos, const double *inv_freq, int hd);

/* s[j] = exp(s[j] - m) in place, for s[j] <= m (scores -> softmax weights).
 * A branch-free polynomial exp (relative error ~2e-7) that vectorises;
 * results below exp(-87) flush to ~1e-38. */
void ss_softmax_exp(float *s, float m, int n);

#endif /* SS_CPU_KERNELS_H */
