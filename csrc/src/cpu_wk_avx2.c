/* cpu_wk_avx2.c — the AVX2 + FMA + F16C table of cpu_wkernels.h (compiled for those instructions
 * whatever -march says; chosen at run time only on CPUs that have them). Same arithmetic as the
 * portable table, lane for lane: a 16-lane sum is two ymm (lanes 0-7, 8-15), a block-type dot product
 * one ymm of 8 int32 / float lanes. */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <string.h>

#include "cpu_kernels.h"
#include "cpu_wkernels.h"

#define AI static inline __attribute__((always_inline))

/* ss_reduce_lanes of lanes lo (0-7) and hi (8-15): the same additions in the same order. */
AI float hsum16(__m256 lo, __m256 hi) {
  __m256 s8 = _mm256_add_ps(lo, hi);                                                  /* acc[k] + acc[k+8] */
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)); /* s8[k] + s8[k+4] */
  __m128 t = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* ss_reduce_q_lanes of 8 lanes. */
AI float hsum8(__m256 a) {
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); /* a[k] + a[k+4] */
  __m128 t = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* 8 weights of a float type from p (element 0), widened exactly. */
AI __m256 load8(const int DT, const uint8_t *p) {
  if (DT == SS_DTYPE_F32) return _mm256_loadu_ps((const float *)(const void *)p);
  __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
  if (DT == SS_DTYPE_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

AI float load1(const int DT, const uint8_t *row, int i) {
  if (DT == SS_DTYPE_F32) {
    float f;
    memcpy(&f, row + 4 * (size_t)i, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, row + 2 * (size_t)i, 2);
  if (DT == SS_DTYPE_BF16) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  return _cvtsh_ss(h);
}

AI void store(float *yo, float s, const float *b, int r, int accumulate) {
  float bias = b ? b[r] : 0.0f;
  *yo = accumulate ? *yo + (s + bias) : s + bias;
}

/* NT tokens x NR rows of a float type; 2 * NT * NR accumulators (lanes 0-7 pass, then lanes 8-15). */
AI void fmicro(const int DT, const int NT, const int NR, float *restrict y, const float *restrict x,
               const uint8_t *w, size_t rb, const float *b, int in, int out, int t0, int r0, int accumulate) {
  const size_t es = DT == SS_DTYPE_F32 ? 4 : 2;
  __m256 lo[4][4], hi[4][4];
  const float *xp[4];
  const uint8_t *wp[4];
  for (int k = 0; k < NT; k++) xp[k] = x + (size_t)(t0 + k) * in;
  for (int r = 0; r < NR; r++) wp[r] = w + (size_t)(r0 + r) * rb;
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) lo[k][r] = hi[k][r] = _mm256_setzero_ps();
  int nfull = in & ~(SS_LANES - 1), i = 0;
  for (; i < nfull; i += SS_LANES) {
    __m256 xv[4];
    for (int k = 0; k < NT; k++) xv[k] = _mm256_loadu_ps(xp[k] + i);
    for (int r = 0; r < NR; r++) {
      __m256 wv = load8(DT, wp[r] + (size_t)i * es);
      for (int k = 0; k < NT; k++) lo[k][r] = _mm256_fmadd_ps(wv, xv[k], lo[k][r]);
    }
    for (int k = 0; k < NT; k++) xv[k] = _mm256_loadu_ps(xp[k] + i + 8);
    for (int r = 0; r < NR; r++) {
      __m256 wv = load8(DT, wp[r] + (size_t)(i + 8) * es);
      for (int k = 0; k < NT; k++) hi[k][r] = _mm256_fmadd_ps(wv, xv[k], hi[k][r]);
    }
  }
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) {
      float s = hsum16(lo[k][r], hi[k][r]);
      for (int j = nfull; j < in; j++) s = __builtin_fmaf(load1(DT, wp[r], j), xp[k][j], s);
      store(y + (size_t)(t0 + k) * out + r0 + r, s, b, r0 + r, accumulate);
    }
}

/* The row-group walk of ss_matmul_rows: ~64 KiB of f32-equivalent weights per group, every token
 * tile streams past it; tiles 2 tokens x 3 rows, 1 token x 4 rows for the last odd token. */
AI void fmatmul(const int DT, float *restrict y, const float *restrict x, const ss_weight *w, const float *b,
                int T, int r0, int r1, int accumulate) {
  int in = w->cols, out = w->rows;
  size_t rb = ss_dtype_row_bytes(DT, in);
  const uint8_t *wd = w->data;
  int group = 16384 / (in > 0 ? in : 1);
  group = group < 12 ? 12 : group > 36 ? 36 : group - group % 12;
  for (int g0 = r0; g0 < r1; g0 += group) {
    int g1 = g0 + group < r1 ? g0 + group : r1, t = 0;
    for (; t + 2 <= T; t += 2) {
      int r = g0;
      for (; r + 3 <= g1; r += 3) fmicro(DT, 2, 3, y, x, wd, rb, b, in, out, t, r, accumulate);
      for (; r < g1; r++) fmicro(DT, 2, 1, y, x, wd, rb, b, in, out, t, r, accumulate);
    }
    for (; t < T; t++) {
      int r = g0;
      for (; r + 4 <= g1; r += 4) fmicro(DT, 1, 4, y, x, wd, rb, b, in, out, t, r, accumulate);
      for (; r < g1; r++) fmicro(DT, 1, 1, y, x, wd, rb, b, in, out, t, r, accumulate);
    }
  }
}

static void mm_f32(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                   const float *b, int T, int r0, int r1, int accumulate) {
  fmatmul(SS_DTYPE_F32, y, x, w, b, T, r0, r1, accumulate);
}
static void mm_f16(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                   const float *b, int T, int r0, int r1, int accumulate) {
  fmatmul(SS_DTYPE_F16, y, x, w, b, T, r0, r1, accumulate);
}
static void mm_bf16(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                    const float *b, int T, int r0, int r1, int accumulate) {
  fmatmul(SS_DTYPE_BF16, y, x, w, b, T, r0, r1, accumulate);
}

/* ---- Q8_0 / Q4_0 ---- */

/* The 32 weights of block k as int8 (Q4_0: nibbles - 8; elements 0-15 low nibbles, 16-31 high). */
AI __m256i qweights(const int DT, const uint8_t *row, int k, float *d) {
  if (DT == SS_DTYPE_Q8_0) {
    const ss_block_q8_0 *bl = (const ss_block_q8_0 *)(const void *)row + k;
    *d = _cvtsh_ss(bl->d);
    return _mm256_loadu_si256((const __m256i *)(const void *)bl->q);
  }
  const ss_block_q4_0 *bl = (const ss_block_q4_0 *)(const void *)row + k;
  *d = _cvtsh_ss(bl->d);
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)bl->qs), m = _mm_set1_epi8(0x0f);
  __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
  return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

/* 8 int32 lanes: lane j = sum of the products of elements 4j..4j+3 (exact: no int16 saturation, since
 * |w| <= 128 and |x| <= 127). aw = |w|, w gives the signs. */
AI __m256 qdot(__m256i aw, __m256i w, __m256i x) {
  __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* NT tokens x NR rows, 8 float lanes per output. */
AI void qmicro(const int DT, const int NT, const int NR, float *restrict y, const ss_act_q8 *xq, const uint8_t *w,
               size_t rb, const float *b, int in, int out, int t0, int r0, int accumulate) {
  int nb = in / SS_QBLOCK;
  __m256 acc[4][4];
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) acc[k][r] = _mm256_setzero_ps();
  const int8_t *xp[4];
  const float *dx[4];
  for (int k = 0; k < NT; k++) xp[k] = xq->q + (size_t)(t0 + k) * in, dx[k] = xq->d + (size_t)(t0 + k) * nb;
  for (int kb = 0; kb < nb; kb++) {
    __m256i xv[4];
    for (int k = 0; k < NT; k++) xv[k] = _mm256_loadu_si256((const __m256i *)(const void *)(xp[k] + kb * SS_QBLOCK));
    for (int r = 0; r < NR; r++) {
      float dw;
      __m256i wv = qweights(DT, w + (size_t)(r0 + r) * rb, kb, &dw), aw = _mm256_sign_epi8(wv, wv);
      for (int k = 0; k < NT; k++)
        acc[k][r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[k][kb]), qdot(aw, wv, xv[k]), acc[k][r]);
    }
  }
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) store(y + (size_t)(t0 + k) * out + r0 + r, hsum8(acc[k][r]), b, r0 + r, accumulate);
}

AI void qmatmul(const int DT, float *restrict y, const ss_act_q8 *xq, const ss_weight *w, const float *b, int T,
                int r0, int r1, int accumulate) {
  int in = w->cols, out = w->rows;
  size_t rb = ss_dtype_row_bytes(DT, in);
  const uint8_t *wd = w->data;
  int group = 16384 / (in > 0 ? in : 1);
  group = group < 4 ? 4 : group > 32 ? 32 : group & ~3;
  for (int g0 = r0; g0 < r1; g0 += group) {
    int g1 = g0 + group < r1 ? g0 + group : r1, t = 0;
    for (; t + 2 <= T; t += 2) {
      int r = g0;
      for (; r + 2 <= g1; r += 2) qmicro(DT, 2, 2, y, xq, wd, rb, b, in, out, t, r, accumulate);
      for (; r < g1; r++) qmicro(DT, 2, 1, y, xq, wd, rb, b, in, out, t, r, accumulate);
    }
    for (; t < T; t++) {
      int r = g0;
      for (; r + 4 <= g1; r += 4) qmicro(DT, 1, 4, y, xq, wd, rb, b, in, out, t, r, accumulate);
      for (; r < g1; r++) qmicro(DT, 1, 1, y, xq, wd, rb, b, in, out, t, r, accumulate);
    }
  }
}

static void mm_q8_0(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                    const float *b, int T, int r0, int r1, int accumulate) {
  qmatmul(SS_DTYPE_Q8_0, y, xq, w, b, T, r0, r1, accumulate);
}
static void mm_q4_0(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                    const float *b, int T, int r0, int r1, int accumulate) {
  qmatmul(SS_DTYPE_Q4_0, y, xq, w, b, T, r0, r1, accumulate);
}

static void f16_to_f32(float *restrict dst, const uint16_t *restrict src, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void f32_to_f16(uint16_t *restrict dst, const float *restrict src, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

static const ss_wkernels table = {
    .isa = "avx2",
    .mm = {[SS_DTYPE_F32] = mm_f32, [SS_DTYPE_F16] = mm_f16, [SS_DTYPE_BF16] = mm_bf16,
           [SS_DTYPE_Q8_0] = mm_q8_0, [SS_DTYPE_Q4_0] = mm_q4_0},
    .f16_to_f32 = f16_to_f32,
    .f32_to_f16 = f32_to_f16,
};

const ss_wkernels *ss_wkernels_avx2_table(void) { return &table; }

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else /* not x86 */
#include "cpu_wkernels.h"
const ss_wkernels *ss_wkernels_avx2_table(void) { return NULL; }
#endif
