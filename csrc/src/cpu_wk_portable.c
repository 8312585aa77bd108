/* cpu_wk_portable.c — the portable C table of cpu_wkernels.h (any CPU; the reference arithmetic). */
#include <string.h>

#include "cpu_kernels.h"
#include "cpu_wkernels.h"
#include "model_util.h"

/* Weight i of a row of a float type, widened exactly. */
static inline float fweight(int32_t dtype, const uint8_t *row, int i) {
  if (dtype == SS_DTYPE_F32) {
    float f;
    memcpy(&f, row + 4 * (size_t)i, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, row + 2 * (size_t)i, 2);
  return dtype == SS_DTYPE_F16 ? ss_f16_to_f32(h) : ss_bf16_to_f32(h);
}

static inline void store(float *yo, float s, const float *b, int r, int accumulate) {
  float bias = b ? b[r] : 0.0f;
  *yo = accumulate ? *yo + (s + bias) : s + bias;
}

/* F16 / BF16: four tokens per pass over a row, 16 lane sums each (ss_dot's structure). */
static void mm_half(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                    const float *b, int T, int r0, int r1, int accumulate) {
  int in = w->cols, out = w->rows;
  size_t rb = ss_dtype_row_bytes(w->dtype, in);
  for (int r = r0; r < r1; r++) {
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
    for (int t0 = 0; t0 < T; t0 += 4) {
      int nt = T - t0 < 4 ? T - t0 : 4;
      float acc[4][SS_LANES] = {{0}}, s[4];
      int i = 0;
      for (; i + SS_LANES <= in; i += SS_LANES) {
        float wv[SS_LANES];
        for (int l = 0; l < SS_LANES; l++) wv[l] = fweight(w->dtype, row, i + l);
        for (int k = 0; k < nt; k++) {
          const float *xk = x + (size_t)(t0 + k) * in + i;
          for (int l = 0; l < SS_LANES; l++) acc[k][l] = SS_MADD(wv[l], xk[l], acc[k][l]);
        }
      }
      for (int k = 0; k < nt; k++) s[k] = ss_reduce_lanes(acc[k]);
      for (; i < in; i++) {
        float wi = fweight(w->dtype, row, i);
        for (int k = 0; k < nt; k++) s[k] = SS_MADD(wi, x[(size_t)(t0 + k) * in + i], s[k]);
      }
      for (int k = 0; k < nt; k++) store(y + (size_t)(t0 + k) * out + r, s[k], b, r, accumulate);
    }
  }
}

static void mm_f32(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                   const float *b, int T, int r0, int r1, int accumulate) {
  ss_matmul_rows(y, x, w->data, b, T, w->cols, w->rows, r0, r1, accumulate);
}

/* Block k of a Q8_0 / Q4_0 row as 32 int8 weights and its scale. */
static inline float qblock(int32_t dtype, const uint8_t *row, int k, int8_t v[SS_QBLOCK]) {
  if (dtype == SS_DTYPE_Q8_0) {
    const ss_block_q8_0 *bl = (const ss_block_q8_0 *)(const void *)row + k;
    memcpy(v, bl->q, SS_QBLOCK);
    return ss_f16_to_f32(bl->d);
  }
  const ss_block_q4_0 *bl = (const ss_block_q4_0 *)(const void *)row + k;
  for (int i = 0; i < SS_QBLOCK / 2; i++) {
    v[i] = (int8_t)((bl->qs[i] & 0x0f) - 8);
    v[i + SS_QBLOCK / 2] = (int8_t)((bl->qs[i] >> 4) - 8);
  }
  return ss_f16_to_f32(bl->d);
}

/* Q8_0 / Q4_0 against quantized activations: four tokens per pass over a row, 8 lanes each. */
static void mm_quant(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                     const float *b, int T, int r0, int r1, int accumulate) {
  int in = w->cols, out = w->rows, nb = in / SS_QBLOCK;
  size_t rb = ss_dtype_row_bytes(w->dtype, in);
  for (int r = r0; r < r1; r++) {
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
    for (int t0 = 0; t0 < T; t0 += 4) {
      int nt = T - t0 < 4 ? T - t0 : 4;
      float acc[4][8] = {{0}};
      for (int k = 0; k < nb; k++) {
        int8_t wv[SS_QBLOCK];
        float dw = qblock(w->dtype, row, k, wv);
        for (int t = 0; t < nt; t++) {
          const int8_t *xv = xq->q + (size_t)(t0 + t) * in + (size_t)k * SS_QBLOCK;
          float scale = dw * xq->d[(size_t)(t0 + t) * nb + k];
          for (int j = 0; j < 8; j++) {
            int32_t isum = 0;
            for (int e = 4 * j; e < 4 * j + 4; e++) isum += (int32_t)wv[e] * (int32_t)xv[e];
            acc[t][j] = SS_MADD(scale, (float)isum, acc[t][j]);
          }
        }
      }
      for (int t = 0; t < nt; t++) store(y + (size_t)(t0 + t) * out + r, ss_reduce_q_lanes(acc[t]), b, r, accumulate);
    }
  }
}

static void f16_to_f32(float *restrict dst, const uint16_t *restrict src, int n) {
  for (int i = 0; i < n; i++) dst[i] = ss_f16_to_f32(src[i]);
}

static void f32_to_f16(uint16_t *restrict dst, const float *restrict src, int n) {
  for (int i = 0; i < n; i++) dst[i] = ss_f32_to_f16(src[i]);
}

static const ss_wkernels table = {
    .isa = "portable",
    .mm = {[SS_DTYPE_F32] = mm_f32, [SS_DTYPE_F16] = mm_half, [SS_DTYPE_BF16] = mm_half,
           [SS_DTYPE_Q8_0] = mm_quant, [SS_DTYPE_Q4_0] = mm_quant},
    .f16_to_f32 = f16_to_f32,
    .f32_to_f16 = f32_to_f16,
};

const ss_wkernels *ss_wkernels_portable(void) { return &table; }
