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
#include "cpu_wk_isa.h"

/* ss_reduce_lanes of lanes lo (0-7) and hi (8-15): the same additions in the same order. */
AI float hsum16(__m256 lo, __m256 hi) {
  __m256 s8 = _mm256_add_ps(lo, hi);                                                  /* acc[k] + acc[k+8] */
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)); /* s8[k] + s8[k+4] */
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
      for (int j = nfull; j < in; j++) s = __builtin_fmaf(ss_wk_load1(DT, wp[r], j), xp[k][j], s);
      ss_wk_store(y + (size_t)(t0 + k) * out + r0 + r, s, b, r0 + r, accumulate);
    }
}

/* Float weights: 2-token x 3-row tiles in the walk of SS_WK_WALK (16 ymm: 12 accumulators, 2 x, 1 w). */
AI void fmatmul(const int DT, float *restrict y, const float *restrict x, const ss_weight *w, const float *b,
                int T, int r0, int r1, int accumulate) {
  int in = w->cols, out = w->rows;
  size_t rb = ss_dtype_row_bytes(DT, in);
  const uint8_t *wd = w->data;
#define TILE(nt, nr, t, r) fmicro(DT, nt, nr, y, x, wd, rb, b, in, out, t, r, accumulate)
  SS_WK_WALK(2, 3, TILE);
#undef TILE
}


/* ---- Q8_0 / Q4_0 ---- */

/* The 32 weights of Q8_0 block k and its scale. */
AI __m256i qweights(const int DT, const uint8_t *row, int k, float *d) {
  const ss_block_q8_0 *bl = (const ss_block_q8_0 *)(const void *)row + k;
  *d = _cvtsh_ss(bl->d);
  return _mm256_loadu_si256((const __m256i *)(const void *)bl->q);
}

/* 8 int32 lanes: lane j = sum of the products of elements 4j..4j+3 (exact: no int16 saturation, since
 * |w| <= 128 and |x| <= 127). aw = |w|, w gives the signs. */
AI __m256 qdot(__m256i aw, __m256i w, __m256i x) {
  __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* The 32 nibbles of Q4_0 block k as unsigned bytes 0..15 (elements 0-15 low nibbles, 16-31 high). */
AI __m256i q4_nibbles(const uint8_t *row, int k, float *d) {
  const ss_block_q4_0 *bl = (const ss_block_q4_0 *)(const void *)row + k;
  *d = _cvtsh_ss(bl->d);
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)bl->qs), m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/* NT tokens x NR rows, 8 float lanes per output. The scale of a (token, row) pair is the product of the
 * two broadcast scales, computed in the vector unit (the same f32 product as dw * dx in scalars).
 * Q4_0 takes the nibbles n as the unsigned operand: sum (n - 8) x = sum n x - 8 sum x, the second term
 * once per token and block (exact integers: the same lanes as with n - 8). */
AI void qmicro(const int DT, const int NT, const int NR, float *restrict y, const ss_act_q8 *xq, const uint8_t *w,
               size_t rb, const float *b, int in, int out, int t0, int r0, int accumulate) {
  int nb = in / SS_QBLOCK;
  __m256 acc[4][4];
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) acc[k][r] = _mm256_setzero_ps();
  const int8_t *xp[4];
  const float *dx[4];
  const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);
  for (int k = 0; k < NT; k++) xp[k] = xq->q + (size_t)(t0 + k) * in, dx[k] = xq->d + (size_t)(t0 + k) * nb;
  for (int kb = 0; kb < nb; kb++) {
    __m256i xv[4], x8[4];
    __m256 dxv[4];
    for (int k = 0; k < NT; k++) {
      xv[k] = _mm256_loadu_si256((const __m256i *)(const void *)(xp[k] + kb * SS_QBLOCK));
      dxv[k] = _mm256_broadcast_ss(dx[k] + kb);
      if (DT == SS_DTYPE_Q4_0) x8[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, xv[k]), ones); /* 8 sum x */
    }
    for (int r = 0; r < NR; r++) {
      float dw;
      const uint8_t *row = w + (size_t)(r0 + r) * rb;
      if (DT == SS_DTYPE_Q4_0) {
        __m256i n = q4_nibbles(row, kb, &dw);
        __m256 dwv = _mm256_set1_ps(dw);
        for (int k = 0; k < NT; k++) {
          __m256i s = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(n, xv[k]), ones), x8[k]);
          acc[k][r] = _mm256_fmadd_ps(_mm256_mul_ps(dwv, dxv[k]), _mm256_cvtepi32_ps(s), acc[k][r]);
        }
      } else {
        __m256i wv = qweights(DT, row, kb, &dw), aw = _mm256_sign_epi8(wv, wv);
        __m256 dwv = _mm256_set1_ps(dw);
        for (int k = 0; k < NT; k++)
          acc[k][r] = _mm256_fmadd_ps(_mm256_mul_ps(dwv, dxv[k]), qdot(aw, wv, xv[k]), acc[k][r]);
      }
    }
  }
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) ss_wk_store(y + (size_t)(t0 + k) * out + r0 + r, ss_wk_hsum8(acc[k][r]), b, r0 + r, accumulate);
}

AI void qmatmul(const int DT, float *restrict y, const ss_act_q8 *xq, const ss_weight *w, const float *b, int T,
                int r0, int r1, int accumulate) {
  int in = w->cols, out = w->rows;
  size_t rb = ss_dtype_row_bytes(DT, in);
  const uint8_t *wd = w->data;
#define TILE(nt, nr, t, r) qmicro(DT, nt, nr, y, xq, wd, rb, b, in, out, t, r, accumulate)
  SS_WK_WALK(2, 2, TILE);
#undef TILE
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

SS_WK_TABLE(ss_wkernels_avx2_table, "avx2")

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else /* not x86 */
#include "cpu_wkernels.h"
const ss_wkernels *ss_wkernels_avx2_table(void) { return NULL; }
#endif
