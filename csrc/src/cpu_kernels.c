/* cpu_kernels.c — see cpu_kernels.h. Written so that gcc -O3 -march=native
 * vectorises the inner loops (independent lanes, restrict pointers). */
#include "cpu_kernels.h"

#include <math.h>

#define SS_LANES 16

/* Explicit fused multiply-add where the target has it (the build uses
 * -std=c11, which disables automatic contraction); the choice is fixed at
 * compile time so every kernel rounds the same way. */
#ifdef __FMA__
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* Fixed-order reduction of the lane sums. */
static inline float reduce_lanes(const float *acc) {
  float s8[8];
  for (int k = 0; k < 8; k++) s8[k] = acc[k] + acc[k + 8];
  float s4[4];
  for (int k = 0; k < 4; k++) s4[k] = s8[k] + s8[k + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

float ss_dot(const float *restrict a, const float *restrict b, int n) {
  float acc[SS_LANES] = {0};
  int i = 0;
  for (; i + SS_LANES <= n; i += SS_LANES)
    for (int k = 0; k < SS_LANES; k++) acc[k] = MADD(a[i + k], b[i + k], acc[k]);
  float s = reduce_lanes(acc);
  for (; i < n; i++) s = MADD(a[i], b[i], s);
  return s;
}

void ss_dot4(float out[4], const float *restrict w, const float *restrict x0, const float *restrict x1,
             const float *restrict x2, const float *restrict x3, int n) {
  float a0[SS_LANES] = {0}, a1[SS_LANES] = {0}, a2[SS_LANES] = {0}, a3[SS_LANES] = {0};
  int i = 0;
  for (; i + SS_LANES <= n; i += SS_LANES) {
    for (int k = 0; k < SS_LANES; k++) {
      float wk = w[i + k];
      a0[k] = MADD(wk, x0[i + k], a0[k]);
      a1[k] = MADD(wk, x1[i + k], a1[k]);
      a2[k] = MADD(wk, x2[i + k], a2[k]);
      a3[k] = MADD(wk, x3[i + k], a3[k]);
    }
  }
  float s0 = reduce_lanes(a0), s1 = reduce_lanes(a1), s2 = reduce_lanes(a2), s3 = reduce_lanes(a3);
  for (; i < n; i++) {
    s0 = MADD(w[i], x0[i], s0);
    s1 = MADD(w[i], x1[i], s1);
    s2 = MADD(w[i], x2[i], s2);
    s3 = MADD(w[i], x3[i], s3);
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

void ss_matmul_rows(float *restrict y, const float *restrict x, const float *restrict w, const float *b, int T,
                    int in, int out, int r0, int r1, int accumulate) {
  for (int r = r0; r < r1; r++) {
    const float *wr = w + (int64_t)r * in;
    float bias = b ? b[r] : 0.0f;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
      float s[4];
      const float *xt = x + (int64_t)t * in;
      ss_dot4(s, wr, xt, xt + in, xt + 2 * (int64_t)in, xt + 3 * (int64_t)in, in);
      for (int k = 0; k < 4; k++) {
        float *yo = y + (int64_t)(t + k) * out + r;
        *yo = accumulate ? *yo + (s[k] + bias) : s[k] + bias;
      }
    }
    for (; t < T; t++) {
      float s = ss_dot(wr, x + (int64_t)t * in, in);
      float *yo = y + (int64_t)t * out + r;
      *yo = accumulate ? *yo + (s + bias) : s + bias;
    }
  }
}

void ss_rmsnorm(float *restrict o, const float *restrict x, const float *restrict w, int n, float eps) {
  float ss = ss_dot(x, x, n);
  float scale = 1.0f / sqrtf(ss / (float)n + eps);
  for (int i = 0; i < n; i++) o[i] = w[i] * (scale * x[i]);
}

void ss_rope_rotate(float *restrict x, const float *restrict cos_tab, const float *restrict sin_tab, int hd) {
  int half = hd / 2;
  for (int j = 0; j < half; j++) {
    float x0 = x[j], x1 = x[j + half];
    x[j] = x0 * cos_tab[j] - x1 * sin_tab[j];
    x[j + half] = x1 * cos_tab[j] + x0 * sin_tab[j];
  }
}

void ss_rope_inv_freq(double *inv_freq, double theta, int hd) {
  for (int j = 0; j < hd / 2; j++) inv_freq[j] = pow(theta, -2.0 * (double)j / (double)hd);
}

void ss_rope_tables(float *restrict cos_tab, float *restrict sin_tab, int64_t pos, const double *inv_freq, int hd) {
  int half = hd / 2;
  for (int j = 0; j < half; j++) {
    double angle = (double)pos * inv_freq[j];
    cos_tab[j] = (float)cos(angle);
    sin_tab[j] = (float)sin(angle);
  }
}

void ss_axpy(float *restrict y, float a, const float *restrict x, int n) {
  for (int i = 0; i < n; i++) y[i] = MADD(a, x[i], y[i]);
}
