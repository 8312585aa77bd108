/*
 * cpu_wk_isa.h — what the per-instruction-set kernel files (cpu_wk_avx2.c, cpu_wk_avx512.c) share: the
 * scalar tail load, the output store, the 8-lane reduction, and the table of entry points. Include it
 * after the file's target pragma and after its fmatmul / qmatmul walks and its f16_to_f32 / f32_to_f16
 * row conversions (SS_WK_TABLE refers to them), so that everything inlines into code of that target.
 */
#ifndef SS_CPU_WK_ISA_H
#define SS_CPU_WK_ISA_H

#include <immintrin.h>
#include <string.h>

#include "cpu_kernels.h"
#include "cpu_wkernels.h"

#define AI static inline __attribute__((always_inline))

/* ss_reduce_q_lanes of 8 lanes: a[k] + a[k+4], then the fixed pairs. */
AI float ss_wk_hsum8(__m256 a) {
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  __m128 t = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* Weight i of a row of a float type, widened exactly (the tails of the 16-lane loops). */
AI float ss_wk_load1(const int DT, const uint8_t *row, int i) {
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

/* y = s + bias, or y += s + bias. */
AI void ss_wk_store(float *yo, float s, const float *b, int r, int accumulate) {
  float bias = b ? b[r] : 0.0f;
  *yo = accumulate ? *yo + (s + bias) : s + bias;
}

/* The row-group walk of every matmul (ss_matmul_rows' order): rows [r0, r1) in groups of ~64 KiB of
 * f32-equivalent weights (a multiple of 12 rows), each group kept in L2 while the token tiles stream past
 * it: NT x NR tiles (NT x 1 for the group's last rows), then each remaining token in 1 x 4 and 1 x 1 tiles.
 * TILE(nt, nr, t, r) computes one tile; in, r0, r1 and T are the walk's inputs. The arithmetic of an
 * output does not depend on the tile it lands in. */
#define SS_WK_WALK(NT, NR, TILE)                                                                            \
  do {                                                                                                     \
    int group_ = 16384 / (in > 0 ? in : 1);                                                                \
    group_ = group_ < 12 ? 12 : group_ > 36 ? 36 : group_ - group_ % 12;                                   \
    for (int g0 = r0; g0 < r1; g0 += group_) {                                                             \
      int g1 = g0 + group_ < r1 ? g0 + group_ : r1, t = 0;                                                 \
      for (; t + NT <= T; t += NT) {                                                                       \
        int r = g0;                                                                                        \
        for (; r + NR <= g1; r += NR) TILE(NT, NR, t, r);                                                  \
        for (; r < g1; r++) TILE(NT, 1, t, r);                                                             \
      }                                                                                                    \
      for (; t < T; t++) {                                                                                 \
        int r = g0;                                                                                        \
        for (; r + 4 <= g1; r += 4) TILE(1, 4, t, r);                                                      \
        for (; r < g1; r++) TILE(1, 1, t, r);                                                              \
      }                                                                                                    \
    }                                                                                                      \
  } while (0)

/* The five matmul entry points over the file's fmatmul / qmatmul, and the table `getter` returns. */
#define SS_WK_MM(name, DT, walk, xarg)                                                                     \
  static void name(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,     \
                   const float *b, int T, int r0, int r1, int accumulate) {                               \
    (void)x, (void)xq;                                                                                     \
    walk(DT, y, xarg, w, b, T, r0, r1, accumulate);                                                        \
  }
#define SS_WK_TABLE(getter, isa_name)                                                                      \
  SS_WK_MM(mm_f32, SS_DTYPE_F32, fmatmul, x)                                                               \
  SS_WK_MM(mm_f16, SS_DTYPE_F16, fmatmul, x)                                                               \
  SS_WK_MM(mm_bf16, SS_DTYPE_BF16, fmatmul, x)                                                             \
  SS_WK_MM(mm_q8_0, SS_DTYPE_Q8_0, qmatmul, xq)                                                            \
  SS_WK_MM(mm_q4_0, SS_DTYPE_Q4_0, qmatmul, xq)                                                            \
  static const ss_wkernels table = {                                                                       \
      .isa = isa_name,                                                                                     \
      .mm = {[SS_DTYPE_F32] = mm_f32, [SS_DTYPE_F16] = mm_f16, [SS_DTYPE_BF16] = mm_bf16,                  \
             [SS_DTYPE_Q8_0] = mm_q8_0, [SS_DTYPE_Q4_0] = mm_q4_0},                                        \
      .f16_to_f32 = f16_to_f32,                                                                            \
      .f32_to_f16 = f32_to_f16,                                                                            \
  };                                                                                                       \
  const ss_wkernels *getter(void) { return &table; }

#endif /* SS_CPU_WK_ISA_H */
