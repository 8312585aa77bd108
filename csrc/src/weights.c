/* weights.c — block formats, quantization and dequantization of weight rows (see weights.h). */
#include "weights.h"

#include <math.h>
#include <string.h>

#include "model_util.h"

int ss_dtype_valid(int32_t dtype) { return dtype >= 0 && dtype < SS_N_DTYPES; }

int ss_dtype_block(int32_t dtype) { return dtype == SS_DTYPE_Q8_0 || dtype == SS_DTYPE_Q4_0 ? SS_QBLOCK : 1; }

size_t ss_dtype_row_bytes(int32_t dtype, int64_t cols) {
  if (cols < 0 || cols % ss_dtype_block(dtype) != 0) return 0;
  size_t n = (size_t)cols;
  switch (dtype) {
    case SS_DTYPE_F32: return n * 4;
    case SS_DTYPE_F16:
    case SS_DTYPE_BF16: return n * 2;
    case SS_DTYPE_Q8_0: return n / SS_QBLOCK * sizeof(ss_block_q8_0);
    case SS_DTYPE_Q4_0: return n / SS_QBLOCK * sizeof(ss_block_q4_0);
    default: return 0;
  }
}

int32_t ss_storage_dtype(int32_t want, int64_t cols) {
  return ss_dtype_block(want) > 1 && cols % ss_dtype_block(want) != 0 ? SS_DTYPE_F16 : want;
}

size_t ss_dtype_align(int32_t dtype) { return dtype == SS_DTYPE_F32 ? 4 : 2; }

size_t ss_weight_bytes(const ss_weight *w) { return (size_t)w->rows * ss_dtype_row_bytes(w->dtype, w->cols); }

void ss_weight_row_f32(const ss_weight *w, int64_t row, float *dst) {
  size_t rb = ss_dtype_row_bytes(w->dtype, w->cols), n = (size_t)w->cols;
  const uint8_t *src = (const uint8_t *)w->data + (size_t)row * rb;
  switch (w->dtype) {
    case SS_DTYPE_F32:
    case SS_DTYPE_F16:
    case SS_DTYPE_BF16: ss_convert_to_f32(dst, src, n, w->dtype); break;
    case SS_DTYPE_Q8_0: {
      const ss_block_q8_0 *b = (const ss_block_q8_0 *)(const void *)src;
      for (size_t k = 0; k < n / SS_QBLOCK; k++) {
        float d = ss_f16_to_f32(b[k].d);
        for (int i = 0; i < SS_QBLOCK; i++) dst[k * SS_QBLOCK + i] = d * (float)b[k].q[i];
      }
      break;
    }
    case SS_DTYPE_Q4_0: {
      const ss_block_q4_0 *b = (const ss_block_q4_0 *)(const void *)src;
      for (size_t k = 0; k < n / SS_QBLOCK; k++) {
        float d = ss_f16_to_f32(b[k].d), *o = dst + k * SS_QBLOCK;
        for (int i = 0; i < SS_QBLOCK / 2; i++) {
          o[i] = d * (float)((b[k].qs[i] & 0x0f) - 8);
          o[i + SS_QBLOCK / 2] = d * (float)((b[k].qs[i] >> 4) - 8);
        }
      }
      break;
    }
    default: break;
  }
}

/* round-half-away of v clamped to [lo, hi]; NaN -> 0 */
static int clamp_round(float v, int lo, int hi) {
  if (!(v == v)) return 0;
  float r = roundf(v);
  return r < (float)lo ? lo : r > (float)hi ? hi : (int)r;
}

static void quantize_q8_0(const float *x, ss_block_q8_0 *b) {
  float amax = 0.0f;
  for (int i = 0; i < SS_QBLOCK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
  float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  b->d = ss_f32_to_f16(d);
  for (int i = 0; i < SS_QBLOCK; i++) b->q[i] = (int8_t)clamp_round(x[i] * id, -127, 127);
}

/* trunc(v + 8.5) clamped to the nibble range [0, 15]; NaN -> 0 */
static uint8_t q4_code(float v) {
  float t = v + 8.5f;
  if (!(t >= 0.0f)) return 0;
  return t >= 15.0f ? 15 : (uint8_t)t;
}

static void quantize_q4_0(const float *x, ss_block_q4_0 *b) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < SS_QBLOCK; i++)
    if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
  float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  b->d = ss_f32_to_f16(d);
  for (int i = 0; i < SS_QBLOCK / 2; i++)
    b->qs[i] = (uint8_t)(q4_code(x[i] * id) | q4_code(x[i + SS_QBLOCK / 2] * id) << 4);
}

void ss_quantize_row(int32_t dtype, const float *src, void *dst, int64_t cols) {
  size_t n = (size_t)cols;
  uint8_t *o = dst;
  switch (dtype) {
    case SS_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case SS_DTYPE_F16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h = ss_f32_to_f16(src[i]);
        memcpy(o + 2 * i, &h, 2);
      }
      break;
    case SS_DTYPE_BF16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h = ss_f32_to_bf16(src[i]);
        memcpy(o + 2 * i, &h, 2);
      }
      break;
    case SS_DTYPE_Q8_0:
      for (size_t k = 0; k < n / SS_QBLOCK; k++) quantize_q8_0(src + k * SS_QBLOCK, (ss_block_q8_0 *)dst + k);
      break;
    case SS_DTYPE_Q4_0:
      for (size_t k = 0; k < n / SS_QBLOCK; k++) quantize_q4_0(src + k * SS_QBLOCK, (ss_block_q4_0 *)dst + k);
      break;
    default: break;
  }
}

void ss_quantize_act(int8_t *q, float *d, const float *x, int n) {
  for (int k = 0; k < n / SS_QBLOCK; k++) {
    const float *xb = x + k * SS_QBLOCK;
    float amax = 0.0f;
    for (int i = 0; i < SS_QBLOCK; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    d[k] = ss_f16_to_f32(ss_f32_to_f16(amax / 127.0f)); /* the scale as ggml's Q8_0 blocks hold it */
    for (int i = 0; i < SS_QBLOCK; i++) {
      float v = rintf(xb[i] * id); /* |v| <= 127 for finite input; NaN -> 0 */
      v = v > 127.0f ? 127.0f : v;
      v = v >= -127.0f ? v : 0.0f;
      q[k * SS_QBLOCK + i] = (int8_t)v;
    }
  }
}
