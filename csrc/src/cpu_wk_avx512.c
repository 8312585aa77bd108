/* cpu_wk_avx512.c — the AVX-512 table of cpu_wkernels.h (F, BW, VL, VNNI; compiled for them whatever
 * -march says). Same arithmetic as the portable table, lane for lane: a 16-lane sum is one zmm (the
 * layout of ss_dot); a block-type dot product one ymm of 8 int32 lanes, the 4-product lane sums from
 * vpdpbusd (u8 x s8, summed exactly in int32: |w| <= 128, |x| <= 127; Q4_0 as nibbles n with
 * sum (n - 8) x = sum n x - 8 sum x). 32 vector registers: 4 x 4 tiles for every type.
 * Not the default choice yet (ss_wkernels_select: SS_CPU_ISA=avx512 picks it): it was written on a
 * machine without AVX-512 and has not run; tests/test_wkernels.c and test_weight_types.c check it bit
 * for bit against the portable table wherever the CPU has these instructions. */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")
#endif
#include "cpu_wk_isa.h"

/* ss_reduce_lanes on a register: acc[k] + acc[k+8], then + [k+4], then the fixed pairs. */
AI float hsum16(__m512 a) {
  __m256 lo = _mm512_castps512_ps256(a), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
  __m256 s8 = _mm256_add_ps(lo, hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  __m128 t = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* 16 weights of a float type from p (element 0), widened exactly. */
AI __m512 load16(const int DT, const uint8_t *p) {
  if (DT == SS_DTYPE_F32) return _mm512_loadu_ps((const float *)(const void *)p);
  __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
  if (DT == SS_DTYPE_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

/* NT tokens x NR rows of a float type, one zmm accumulator per output. */
AI void fmicro(const int DT, const int NT, const int NR, float *restrict y, const float *restrict x,
               const uint8_t *w, size_t rb, const float *b, int in, int out, int t0, int r0, int accumulate) {
  const size_t es = DT == SS_DTYPE_F32 ? 4 : 2;
  __m512 acc[4][4];
  const float *xp[4];
  const uint8_t *wp[4];
  for (int k = 0; k < NT; k++) xp[k] = x + (size_t)(t0 + k) * in;
  for (int r = 0; r < NR; r++) wp[r] = w + (size_t)(r0 + r) * rb;
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) acc[k][r] = _mm512_setzero_ps();
  int nfull = in & ~(SS_LANES - 1), i = 0;
  for (; i < nfull; i += SS_LANES) {
    __m512 xv[4];
    for (int k = 0; k < NT; k++) xv[k] = _mm512_loadu_ps(xp[k] + i);
    for (int r = 0; r < NR; r++) {
      __m512 wv = load16(DT, wp[r] + (size_t)i * es);
      for (int k = 0; k < NT; k++) acc[k][r] = _mm512_fmadd_ps(wv, xv[k], acc[k][r]);
    }
  }
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) {
      float s = hsum16(acc[k][r]);
      for (int j = nfull; j < in; j++) s = __builtin_fmaf(ss_wk_load1(DT, wp[r], j), xp[k][j], s);
      ss_wk_store(y + (size_t)(t0 + k) * out + r0 + r, s, b, r0 + r, accumulate);
    }
}

AI void fmatmul(const int DT, float *restrict y, const float *restrict x, const ss_weight *w, const float *b,
                int T, int r0, int r1, int accumulate) {
  int in = w->cols, out = w->rows;
  size_t rb = ss_dtype_row_bytes(DT, in);
  const uint8_t *wd = w->data;
#define TILE(nt, nr, t, r) fmicro(DT, nt, nr, y, x, wd, rb, b, in, out, t, r, accumulate)
  SS_WK_WALK(4, 4, TILE);
#undef TILE
}


/* ---- Q8_0 / Q4_0 ---- */

/* Block k of a row: Q8_0 as |w| (unsigned) and w (for the signs of x); Q4_0 as its nibbles (unsigned). */
AI __m256i qblock(const int DT, const uint8_t *row, int k, float *d, __m256i *signs) {
  if (DT == SS_DTYPE_Q8_0) {
    const ss_block_q8_0 *bl = (const ss_block_q8_0 *)(const void *)row + k;
    *d = _cvtsh_ss(bl->d);
    __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)bl->q);
    *signs = w;
    return _mm256_abs_epi8(w);
  }
  const ss_block_q4_0 *bl = (const ss_block_q4_0 *)(const void *)row + k;
  *d = _cvtsh_ss(bl->d);
  __m128i v = _mm_loadu_si128((const __m128i *)(const void *)bl->qs), m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

AI void qmicro(const int DT, const int NT, const int NR, float *restrict y, const ss_act_q8 *xq, const uint8_t *w,
               size_t rb, const float *b, int in, int out, int t0, int r0, int accumulate) {
  int nb = in / SS_QBLOCK;
  __m256 acc[4][4];
  for (int k = 0; k < NT; k++)
    for (int r = 0; r < NR; r++) acc[k][r] = _mm256_setzero_ps();
  const int8_t *xp[4];
  const float *dx[4];
  const __m256i zero = _mm256_setzero_si256(), eight = _mm256_set1_epi8(8);
  for (int k = 0; k < NT; k++) xp[k] = xq->q + (size_t)(t0 + k) * in, dx[k] = xq->d + (size_t)(t0 + k) * nb;
  for (int kb = 0; kb < nb; kb++) {
    __m256i xv[4], x8[4];
    __m256 dxv[4];
    for (int k = 0; k < NT; k++) {
      xv[k] = _mm256_loadu_si256((const __m256i *)(const void *)(xp[k] + kb * SS_QBLOCK));
      dxv[k] = _mm256_broadcast_ss(dx[k] + kb);
      if (DT == SS_DTYPE_Q4_0) x8[k] = _mm256_dpbusd_epi32(zero, eight, xv[k]); /* 8 sum x per lane */
    }
    for (int r = 0; r < NR; r++) {
      float dw;
      __m256i sg = zero, u = qblock(DT, w + (size_t)(r0 + r) * rb, kb, &dw, &sg);
      __m256 dwv = _mm256_set1_ps(dw);
      for (int k = 0; k < NT; k++) {
        __m256i s = DT == SS_DTYPE_Q8_0 ? _mm256_dpbusd_epi32(zero, u, _mm256_sign_epi8(xv[k], sg))
                                        : _mm256_sub_epi32(_mm256_dpbusd_epi32(zero, u, xv[k]), x8[k]);
        acc[k][r] = _mm256_fmadd_ps(_mm256_mul_ps(dwv, dxv[k]), _mm256_cvtepi32_ps(s), acc[k][r]);
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
  SS_WK_WALK(4, 4, TILE);
#undef TILE
}


static void f16_to_f32(float *restrict dst, const uint16_t *restrict src, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
  for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void f32_to_f16(uint16_t *restrict dst, const float *restrict src, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

SS_WK_TABLE(ss_wkernels_avx512_table, "avx512")

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else /* not x86 */
#include <stddef.h>

#include "cpu_wkernels.h"
const ss_wkernels *ss_wkernels_avx512_table(void) { return NULL; }
#endif
