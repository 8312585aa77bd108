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

/* sum_i a[i] * b[i] */
float ss_dot(const float *restrict a, const float *restrict b, int n);
/* out[k] = sum_i w[i] * x_k[i], k = 0..3 (w read once for the four vectors) */
void ss_dot4(float out[4], const float *restrict w, const float *restrict x0, const float *restrict x1,
             const float *restrict x2, const float *restrict x3, int n);

/* y[T, out] (=|+=) x[T, in] . W[out, in]^T (+ b[out]) for output rows [r0, r1).
 * Token rows are processed four at a time so each weight row is read once per
 * four tokens. accumulate != 0 adds into y (residual connections). */
void ss_matmul_rows(float *restrict y, const float *restrict x, const float *restrict w, const float *b, int T,
                    int in, int out, int r0, int r1, int accumulate);

/* o[n] = x[n] * w[n] / sqrt(mean(x^2) + eps) */
void ss_rmsnorm(float *restrict o, const float *restrict x, const float *restrict w, int n, float eps);

/* HF rotate-half RoPE of one head vector x[hd] in place, with the tables of one
 * position: cos[hd/2], sin[hd/2]. Pairs (d, d + hd/2). */
void ss_rope_rotate(float *restrict x, const float *restrict cos_tab, const float *restrict sin_tab, int hd);

/* inv_freq[hd/2]: inv_freq_j = theta^(-2j/hd), in double. */
void ss_rope_inv_freq(double *inv_freq, double theta, int hd);
/* cos_tab/sin_tab[hd/2] for stream position pos: angle_j = pos * inv_freq_j,
 * computed in double (positions grow without bound), then rounded to float. */
void ss_rope_tables(float *restrict cos_tab, float *restrict sin_tab, int64_t pos, const double *inv_freq, int hd);

/* y[n] += a * x[n] */
void ss_axpy(float *restrict y, float a, const float *restrict x, int n);

#endif /* SS_CPU_KERNELS_H */
