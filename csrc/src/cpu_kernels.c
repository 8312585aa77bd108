/* cpu_kernels.c — see cpu_kernels.h. Written so that gcc -O3 -march=native
 * vectorises the inner loops (independent lanes, restrict pointers). */
#include "cpu_kernels.h"

#include <math.h>

void ss_dot4(float out[4], const float *restrict w, const float *restrict x0, const float *restrict x1,
             const float *restrict x2, const float *restrict x3, int n) {
  float a0[SS_LANES] = {0}, a1[SS_LANES] = {0}, a2[SS_LANES] = {0}, a3[SS_LANES] = {0};
  int i = 0;
  for (; i + SS_LANES <= n; i += SS_LANES) {
    for (int k = 0; k < SS_LANES; k++) {
      float wk = w[i + k];
      a0[k] = SS_MADD(wk, x0[i + k], a0[k]);
      a1[k] = SS_MADD(wk, x1[i + k], a1[k]);
      a2[k] = SS_MADD(wk, x2[i + k], a2[k]);
      a3[k] = SS_MADD(wk, x3[i + k], a3[k]);
    }
  }
  float s0 = ss_reduce_lanes(a0), s1 = ss_reduce_lanes(a1), s2 = ss_reduce_lanes(a2), s3 = ss_reduce_lanes(a3);
  for (; i < n; i++) {
    s0 = SS_MADD(w[i], x0[i], s0);
    s1 = SS_MADD(w[i], x1[i], s1);
    s2 = SS_MADD(w[i], x2[i], s2);
    s3 = SS_MADD(w[i], x3[i], s3);
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

void ss_matmul_rows(float *restrict y, const float *restrict x, const float *restrict w, const float *b, int T,
                    int in, int out, int r0, int r1, int accumulate) {
  /* Rows go in groups of ~64 KiB of weights: the group stays in L2 while every
   * block of 4 tokens streams past it, and a token block stays in L1 across
   * the rows of the group. */
  int group = 16384 / (in > 0 ? in : 1);
  group = group < 1 ? 1 : group > 32 ? 32 : group;
  for (int g0 = r0; g0 < r1; g0 += group) {
    int g1 = g0 + group < r1 ? g0 + group : r1;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
      const float *xt = x + (int64_t)t * in;
      for (int r = g0; r < g1; r++) {
        float s[4], bias = b ? b[r] : 0.0f;
        ss_dot4(s, w + (int64_t)r * in, xt, xt + in, xt + 2 * (int64_t)in, xt + 3 * (int64_t)in, in);
        for (int k = 0; k < 4; k++) {
          float *yo = y + (int64_t)(t + k) * out + r;
          *yo = accumulate ? *yo + (s[k] + bias) : s[k] + bias;
        }
      }
    }
    for (; t < T; t++) {
      const float *xt = x + (int64_t)t * in;
      for (int r = g0; r < g1; r++) {
        float s = ss_dot(w + (int64_t)r * in, xt, in) + (b ? b[r] : 0.0f);
        float *yo = y + (int64_t)t * out + r;
        *yo = accumulate ? *yo + s : s;
      }
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


/* exp(x) for x in [-87, 0]: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
 * Taylor/Horner polynomial, 2^n put into the exponent bits. */
static inline float exp_neg(float x) {
  int32_t n = (int32_t)(x * 1.44269504088896341f - 0.5f); /* round(x / ln2) for x <= 0 */
  float nf = (float)n;
  float r = x - nf * 0.693359375f; /* ln2 split in two so n * hi is exact */
  r = r - nf * -2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = SS_MADD(p, r, 1.0f / 120.0f);
  p = SS_MADD(p, r, 1.0f / 24.0f);
  p = SS_MADD(p, r, 1.0f / 6.0f);
  p = SS_MADD(p, r, 0.5f);
  p = SS_MADD(p, r, 1.0f);
  p = SS_MADD(p, r, 1.0f);
  union {
    int32_t i;
    float f;
  } scale = {.i = (n + 127) * (1 << 23)}; /* n in [-126, 0]: a normal power of two */
  return p * scale.f;
}

void ss_softmax_exp(float *s, float m, int n) {
  /* two loops: gcc vectorises neither when the clamp and the float -> int
   * conversion share one */
  for (int j = 0; j < n; j++) {
    float x = s[j] - m;
    s[j] = x >= -87.0f ? x : -87.0f; /* keeps the conversion below defined (-inf, NaN) */
  }
  for (int j = 0; j < n; j++) s[j] = exp_neg(s[j]);
}
