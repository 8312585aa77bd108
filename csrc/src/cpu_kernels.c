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

#if defined(__AVX512F__)
#include <immintrin.h>

/* ss_reduce_lanes on a register: the same additions in the same order. */
static inline float hsum16(__m512 a) {
  __m256 lo = _mm512_castps512_ps256(a), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
  __m256 s8 = _mm256_add_ps(lo, hi);                                                     /* acc[k] + acc[k+8] */
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));     /* s8[k] + s8[k+4] */
  __m128 t = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));                                      /* s4[0]+s4[2], s4[1]+s4[3] */
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* Register-blocked micro-kernel: NT tokens x NR weight rows (NT, NR <= 4,
 * compile-time constants after inlining), one 16-lane accumulator per output
 * (up to 16 zmm), each weight vector loaded once for NT tokens and each token
 * vector once for NR rows. Every output is computed exactly as ss_dot does it
 * (lane k accumulates elements i = k mod 16 with FMA, ss_reduce_lanes order,
 * then the tail in sequence), so the result of a (token, row) pair does not
 * depend on the block it was computed in. */
static inline __attribute__((always_inline)) void mm_micro(const int NT, const int NR, float *restrict y,
                                                           const float *restrict x, const float *restrict w,
                                                           const float *b, int in, int out, int t0, int r0,
                                                           int accumulate) {
  __m512 acc[4][4];
  const float *xp[4], *wp[4];
  for (int k = 0; k < NT; k++) xp[k] = x + (int64_t)(t0 + k) * in;
  for (int r = 0; r < NR; r++) wp[r] = w + (int64_t)(r0 + r) * in;
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) acc[k][r] = _mm512_setzero_ps();
  int nfull = in & ~(SS_LANES - 1), i = 0;
  for (; i < nfull; i += SS_LANES) {
    __m512 xv[4];
    for (int k = 0; k < NT; k++) xv[k] = _mm512_loadu_ps(xp[k] + i);
    for (int r = 0; r < NR; r++) {
      __m512 wv = _mm512_loadu_ps(wp[r] + i);
      for (int k = 0; k < NT; k++) acc[k][r] = _mm512_fmadd_ps(wv, xv[k], acc[k][r]);
    }
  }
  for (int k = 0; k < NT; k++) {
    float *yo = y + (int64_t)(t0 + k) * out + r0;
    for (int r = 0; r < NR; r++) {
      float s = nfull ? hsum16(acc[k][r]) : 0.0f;
      for (int j = nfull; j < in; j++) s = SS_MADD(wp[r][j], xp[k][j], s);
      float bias = b ? b[r0 + r] : 0.0f;
      yo[r] = accumulate ? yo[r] + (s + bias) : s + bias;
    }
  }
}

void ss_matmul_rows(float *restrict y, const float *restrict x, const float *restrict w, const float *b, int T,
                    int in, int out, int r0, int r1, int accumulate) {
  /* Rows go in groups of ~64 KiB of weights: the group stays in L2 while every
   * block of 4 tokens streams past it, and a token block stays in L1 across
   * the rows of the group. */
  int group = 16384 / (in > 0 ? in : 1);
  group = group < 4 ? 4 : group > 32 ? 32 : group & ~3;
  for (int g0 = r0; g0 < r1; g0 += group) {
    int g1 = g0 + group < r1 ? g0 + group : r1;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
      int r = g0;
      for (; r + 4 <= g1; r += 4) mm_micro(4, 4, y, x, w, b, in, out, t, r, accumulate);
      for (; r < g1; r++) mm_micro(4, 1, y, x, w, b, in, out, t, r, accumulate);
    }
    for (; t < T; t++) {
      int r = g0;
      for (; r + 4 <= g1; r += 4) mm_micro(1, 4, y, x, w, b, in, out, t, r, accumulate);
      for (; r < g1; r++) mm_micro(1, 1, y, x, w, b, in, out, t, r, accumulate);
    }
  }
}

#else /* portable path: the same arithmetic through ss_dot4 / ss_dot */

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
#endif

/* ---- attention ---- */

#if defined(__AVX512F__)
/* NC = hd / 16 chunks, a compile-time constant after inlining: q and the
 * output stay in registers. */
static inline __attribute__((always_inline)) void scores_nc(const int NC, float *restrict s, const float *restrict q,
                                                            const float *restrict k, int64_t n, int stride,
                                                            float scale) {
  __m512 qv[8];
  for (int c = 0; c < NC; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
  for (int64_t j = 0; j < n; j++) {
    const float *kj = k + j * stride;
    __m512 acc = _mm512_setzero_ps();
    for (int c = 0; c < NC; c++) acc = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kj + 16 * c), acc);
    s[j] = hsum16(acc) * scale;
  }
}

static inline __attribute__((always_inline)) void pv_nc(const int NC, float *restrict out, const float *restrict p,
                                                        const float *const *vp, int n) {
  __m512 o[8];
  for (int c = 0; c < NC; c++) o[c] = _mm512_loadu_ps(out + 16 * c);
  for (int j = 0; j < n; j++) {
    __m512 pj = _mm512_set1_ps(p[j]);
    for (int c = 0; c < NC; c++) o[c] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vp[j] + 16 * c), o[c]);
  }
  for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + 16 * c, o[c]);
}
#endif

void ss_attn_scores(float *restrict s, const float *restrict q, const float *restrict k, int64_t n, int stride,
                    int hd, float scale) {
#if defined(__AVX512F__)
  switch (hd) {
  case 16: scores_nc(1, s, q, k, n, stride, scale); return;
  case 32: scores_nc(2, s, q, k, n, stride, scale); return;
  case 64: scores_nc(4, s, q, k, n, stride, scale); return;
  case 128: scores_nc(8, s, q, k, n, stride, scale); return;
  default: break;
  }
#endif
  if (hd < SS_LANES) {
    /* short heads (stories260K: 8): independent sequential chains, four keys
     * at a time so their FMA latencies overlap */
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const float *k0 = k + j * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      for (int i = 0; i < hd; i++) {
        a0 = SS_MADD(q[i], k0[i], a0);
        a1 = SS_MADD(q[i], k1[i], a1);
        a2 = SS_MADD(q[i], k2[i], a2);
        a3 = SS_MADD(q[i], k3[i], a3);
      }
      s[j] = a0 * scale;
      s[j + 1] = a1 * scale;
      s[j + 2] = a2 * scale;
      s[j + 3] = a3 * scale;
    }
    for (; j < n; j++) s[j] = ss_dot(q, k + j * stride, hd) * scale;
    return;
  }
  for (int64_t j = 0; j < n; j++) s[j] = ss_dot(q, k + j * stride, hd) * scale;
}

void ss_attn_pv(float *restrict out, const float *restrict p, const float *const *vp, int n, int hd) {
#if defined(__AVX512F__)
  switch (hd) {
  case 16: pv_nc(1, out, p, vp, n); return;
  case 32: pv_nc(2, out, p, vp, n); return;
  case 64: pv_nc(4, out, p, vp, n); return;
  case 128: pv_nc(8, out, p, vp, n); return;
  default: break;
  }
#endif
  /* element-outer: each output element is one sequential chain over j (the
   * same FMAs in the same order as ss_axpy per key), kept in a register */
  for (int d = 0; d < hd; d++) {
    float o = out[d];
    for (int j = 0; j < n; j++) o = SS_MADD(p[j], vp[j][d], o);
    out[d] = o;
  }
}

/* ---- grouped-query attention: G heads against one K/V row stream ---- */

#define GQA_SUB 32 /* keys per sub-block: 32 rows of K (or V) stay in L1 across the head tiles */

#if defined(__AVX512F__)
/* Head tile width for NC = hd / 16 chunks: q (or the output rows) of HT heads,
 * the key row and the accumulators fit the 32 zmm registers. */
#define GQA_HT(NC) ((NC) <= 2 ? 8 : (NC) == 4 ? 4 : 2)

/* HT heads x n keys: each key row loaded once (NC zmm) for the HT heads, whose
 * q stay in registers; per head and key the FMA chain and hsum16 of scores_nc. */
static inline __attribute__((always_inline)) void scores_tile(const int NC, const int HT, float *restrict s,
                                                              int s_stride, const float *restrict q, int hd,
                                                              const float *restrict k, int64_t n, int stride,
                                                              float scale) {
  __m512 qv[8][8];
  for (int h = 0; h < HT; h++)
    for (int c = 0; c < NC; c++) qv[h][c] = _mm512_loadu_ps(q + (int64_t)h * hd + 16 * c);
  for (int64_t j = 0; j < n; j++) {
    const float *kj = k + j * stride;
    __m512 kv[8];
    for (int c = 0; c < NC; c++) kv[c] = _mm512_loadu_ps(kj + 16 * c);
    for (int h = 0; h < HT; h++) {
      __m512 acc = _mm512_setzero_ps();
      for (int c = 0; c < NC; c++) acc = _mm512_fmadd_ps(qv[h][c], kv[c], acc);
      s[(int64_t)h * s_stride + j] = hsum16(acc) * scale;
    }
  }
}

static inline __attribute__((always_inline)) void scores_grp(const int NC, float *restrict s, int s_stride,
                                                             const float *restrict q, int G,
                                                             const float *restrict k, int64_t n, int stride,
                                                             float scale) {
  const int HT = GQA_HT(NC), hd = 16 * NC;
  for (int64_t j0 = 0; j0 < n; j0 += GQA_SUB) {
    int64_t nj = n - j0 < GQA_SUB ? n - j0 : GQA_SUB;
    const float *kb = k + j0 * stride;
    int g = 0;
    for (; g + HT <= G; g += HT)
      scores_tile(NC, HT, s + (int64_t)g * s_stride + j0, s_stride, q + (int64_t)g * hd, hd, kb, nj, stride, scale);
    for (; g < G; g++)
      scores_tile(NC, 1, s + (int64_t)g * s_stride + j0, s_stride, q + (int64_t)g * hd, hd, kb, nj, stride, scale);
  }
}

/* HT heads' output rows in registers; each value row loaded once for them;
 * per head the FMA sequence of pv_nc (j in order). */
static inline __attribute__((always_inline)) void pv_tile(const int NC, const int HT, float *restrict out, int hd,
                                                          const float *restrict p, int p_stride,
                                                          const float *const *vp, int n) {
  __m512 o[8][8];
  for (int h = 0; h < HT; h++)
    for (int c = 0; c < NC; c++) o[h][c] = _mm512_loadu_ps(out + (int64_t)h * hd + 16 * c);
  for (int j = 0; j < n; j++) {
    __m512 v[8];
    for (int c = 0; c < NC; c++) v[c] = _mm512_loadu_ps(vp[j] + 16 * c);
    for (int h = 0; h < HT; h++) {
      __m512 pj = _mm512_set1_ps(p[(int64_t)h * p_stride + j]);
      for (int c = 0; c < NC; c++) o[h][c] = _mm512_fmadd_ps(pj, v[c], o[h][c]);
    }
  }
  for (int h = 0; h < HT; h++)
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + (int64_t)h * hd + 16 * c, o[h][c]);
}

static inline __attribute__((always_inline)) void pv_grp(const int NC, float *restrict out, const float *restrict p,
                                                         int p_stride, int G, const float *const *vp, int n) {
  const int HT = GQA_HT(NC), hd = 16 * NC;
  /* the output rows go through memory between sub-blocks: exact, the order of
   * the FMAs per element is unchanged */
  for (int j0 = 0; j0 < n; j0 += GQA_SUB) {
    int nj = n - j0 < GQA_SUB ? n - j0 : GQA_SUB;
    int g = 0;
    for (; g + HT <= G; g += HT)
      pv_tile(NC, HT, out + (int64_t)g * hd, hd, p + (int64_t)g * p_stride + j0, p_stride, vp + j0, nj);
    for (; g < G; g++) pv_tile(NC, 1, out + (int64_t)g * hd, hd, p + (int64_t)g * p_stride + j0, p_stride, vp + j0, nj);
  }
}
#endif

void ss_attn_scores_g(float *restrict s, int s_stride, const float *restrict q, int G, const float *restrict k,
                      int64_t n, int stride, int hd, float scale) {
#if defined(__AVX512F__)
  switch (hd) {
  case 16: scores_grp(1, s, s_stride, q, G, k, n, stride, scale); return;
  case 32: scores_grp(2, s, s_stride, q, G, k, n, stride, scale); return;
  case 64: scores_grp(4, s, s_stride, q, G, k, n, stride, scale); return;
  case 128: scores_grp(8, s, s_stride, q, G, k, n, stride, scale); return;
  default: break;
  }
#endif
  /* one head at a time over a sub-block of keys (still in L1 for the next head) */
  for (int64_t j0 = 0; j0 < n; j0 += GQA_SUB) {
    int64_t nj = n - j0 < GQA_SUB ? n - j0 : GQA_SUB;
    for (int g = 0; g < G; g++)
      ss_attn_scores(s + (int64_t)g * s_stride + j0, q + (int64_t)g * hd, k + j0 * stride, nj, stride, hd, scale);
  }
}

void ss_attn_pv_g(float *restrict out, const float *restrict p, int p_stride, int G, const float *const *vp, int n,
                  int hd) {
#if defined(__AVX512F__)
  switch (hd) {
  case 16: pv_grp(1, out, p, p_stride, G, vp, n); return;
  case 32: pv_grp(2, out, p, p_stride, G, vp, n); return;
  case 64: pv_grp(4, out, p, p_stride, G, vp, n); return;
  case 128: pv_grp(8, out, p, p_stride, G, vp, n); return;
  default: break;
  }
#endif
  for (int j0 = 0; j0 < n; j0 += GQA_SUB) {
    int nj = n - j0 < GQA_SUB ? n - j0 : GQA_SUB;
    for (int g = 0; g < G; g++) ss_attn_pv(out + (int64_t)g * hd, p + (int64_t)g * p_stride + j0, vp + j0, nj, hd);
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

void ss_rope_rotate_adjacent(float *restrict x, const float *restrict cos_tab, const float *restrict sin_tab,
                             int hd) {
  for (int j = 0; j < hd / 2; j++) {
    float x0 = x[2 * j], x1 = x[2 * j + 1];
    x[2 * j] = x0 * cos_tab[j] - x1 * sin_tab[j];
    x[2 * j + 1] = x1 * cos_tab[j] + x0 * sin_tab[j];
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
