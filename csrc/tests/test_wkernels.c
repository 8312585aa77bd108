/*
 * test_wkernels.c — the matmul kernels of every weight type (cpu_wkernels.h), in every kernel table
 * this CPU runs, against scalar references written here:
 * - F32 / F16 / BF16: bit for bit the ss_dot arithmetic on the weights widened to f32 (bound 0), and the
 *   F32 kernels bit for bit ss_matmul_rows (the F32 path before weight types existed);
 * - Q8_0 / Q4_0: bit for bit the block arithmetic of cpu_wkernels.h computed one output at a time, and
 *   within 2^-20 * sum |w x| of the double-precision dot product of the dequantized values;
 * - the formats: quantization codes of known blocks (llama.cpp's reference rounding), per-weight error
 *   within the format's bound (Q8_0: 0.57 d, Q4_0: 1.01 |d|), activations within 0.56 d, and a whole
 *   matmul within the bound those imply;
 * - f16 row conversion of every table = ss_f32_to_f16 / ss_f16_to_f32.
 * Shapes cover ragged tails (cols % 16 != 0), odd token counts, sub-ranges of rows, bias, accumulate.
 * The bit-for-bit claims need FMA (SS_MADD fused); without it those checks are skipped.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "cpu_wkernels.h"
#include "model_util.h"
#include "test_util.h"
#include "weights.h"

static uint64_t g_rng = 0x1234abcdull;
static float frand(float a) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)(((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0) * a);
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* A random matrix stored as dtype; *wide gets its exact f32 values. */
static ss_weight make_weight(int32_t dtype, int rows, int cols, float **wide, void **store) {
  size_t rb = ss_dtype_row_bytes(dtype, cols);
  float *src = malloc((size_t)rows * cols * sizeof(float));
  uint8_t *q = malloc((size_t)rows * rb + 1);
  *wide = malloc((size_t)rows * cols * sizeof(float));
  for (int i = 0; i < rows * cols; i++) src[i] = frand(1.0f) * (i % 7 == 0 ? 4.0f : 1.0f);
  for (int r = 0; r < rows; r++) ss_quantize_row(dtype, src + (size_t)r * cols, q + (size_t)r * rb, cols);
  ss_weight w = ss_weight_make(q, dtype, rows, cols);
  for (int r = 0; r < rows; r++) ss_weight_row_f32(&w, r, *wide + (size_t)r * cols);
  free(src);
  *store = q;
  return w;
}

/* The block arithmetic of cpu_wkernels.h for one output (written independently of the kernels). */
static float ref_qdot(const ss_weight *w, int r, const int8_t *xq, const float *xd, int in) {
  float acc[8] = {0};
  size_t rb = ss_dtype_row_bytes(w->dtype, in);
  const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
  for (int b = 0; b < in / 32; b++) {
    int8_t q[32];
    float dw;
    if (w->dtype == SS_DTYPE_Q8_0) {
      ss_block_q8_0 bl;
      memcpy(&bl, row + (size_t)b * sizeof bl, sizeof bl);
      dw = ss_f16_to_f32(bl.d);
      memcpy(q, bl.q, 32);
    } else {
      ss_block_q4_0 bl;
      memcpy(&bl, row + (size_t)b * sizeof bl, sizeof bl);
      dw = ss_f16_to_f32(bl.d);
      for (int i = 0; i < 16; i++) q[i] = (int8_t)((bl.qs[i] & 15) - 8), q[i + 16] = (int8_t)((bl.qs[i] >> 4) - 8);
    }
    for (int j = 0; j < 8; j++) {
      int s = 0;
      for (int e = 0; e < 4; e++) s += q[4 * j + e] * xq[b * 32 + 4 * j + e];
      acc[j] = SS_MADD(dw * xd[b], (float)s, acc[j]);
    }
  }
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

static const ss_wkernels *g_tables[3];
static int g_n_tables;

static void test_matmul_case(const ss_wkernels *k, int32_t dtype, int T, int in, int out, int r0, int r1,
                             int bias, int accumulate) {
  float *wf;
  void *store;
  ss_weight w = make_weight(dtype, out, in, &wf, &store);
  float *x = malloc((size_t)T * in * sizeof(float)), *b = malloc((size_t)out * sizeof(float));
  float *y = malloc((size_t)T * out * sizeof(float)), *y0 = malloc((size_t)T * out * sizeof(float));
  int8_t *xq = malloc((size_t)T * in);
  float *xd = malloc((size_t)T * (in / 32 + 1) * sizeof(float));
  for (int i = 0; i < T * in; i++) x[i] = frand(2.0f);
  for (int i = 0; i < out; i++) b[i] = frand(0.5f);
  for (int i = 0; i < T * out; i++) y0[i] = frand(1.0f);
  memcpy(y, y0, (size_t)T * out * sizeof(float));
  int quant = ss_wkernel_needs_q8(dtype);
  if (quant)
    for (int t = 0; t < T; t++) ss_quantize_act(xq + (size_t)t * in, xd + (size_t)t * (in / 32), x + (size_t)t * in, in);
  ss_act_q8 view = {xq, xd, in};
  k->mm[dtype](y, x, quant ? &view : NULL, &w, bias ? b : NULL, T, r0, r1, accumulate);

  int bad_exact = 0, bad_bound = 0, touched = 0;
  for (int t = 0; t < T; t++)
    for (int r = 0; r < out; r++) {
      float got = y[(size_t)t * out + r], before = y0[(size_t)t * out + r];
      if (r < r0 || r >= r1) {
        touched += bits(got) != bits(before);
        continue;
      }
      float bb = bias ? b[r] : 0.0f, s;
      const float *wr = wf + (size_t)r * in;
      if (!quant) {
        s = ss_dot(wr, x + (size_t)t * in, in);
      } else {
        s = ref_qdot(&w, r, xq + (size_t)t * in, xd + (size_t)t * (in / 32), in);
        /* the f32 block sums against the exact dot of the dequantized values */
        double exact = 0, mag = 0;
        for (int i = 0; i < in; i++) {
          double xv = (double)xq[(size_t)t * in + i] * xd[(size_t)t * (in / 32) + i / 32];
          exact += (double)wr[i] * xv;
          mag += fabs((double)wr[i] * xv);
        }
        if (fabs((double)s - exact) > ldexp(1.0, -20) * mag + 1e-30) bad_bound++;
      }
      float want = accumulate ? before + (s + bb) : s + bb;
#ifdef __FMA__
      if (bits(got) != bits(want)) bad_exact++;
#else
      if (fabsf(got - want) > 1e-5f * (fabsf(want) + 1.0f)) bad_exact++;
#endif
    }
  CHECK(bad_exact == 0 && bad_bound == 0 && touched == 0,
        "%s %s T=%d in=%d out=%d rows [%d,%d) bias %d acc %d: %d outputs differ from the reference, %d outside "
        "the bound, %d rows outside the range written",
        k->isa, ss_dtype_name(dtype), T, in, out, r0, r1, bias, accumulate, bad_exact, bad_bound, touched);

  if (dtype == SS_DTYPE_F32) { /* the F32 path as it was: ss_matmul_rows */
    float *y2 = malloc((size_t)T * out * sizeof(float));
    memcpy(y2, y0, (size_t)T * out * sizeof(float));
    ss_matmul_rows(y2, x, wf, bias ? b : NULL, T, in, out, r0, r1, accumulate);
    int diff = 0;
    for (int i = 0; i < T * out; i++) diff += bits(y2[i]) != bits(y[i]);
#ifdef __FMA__
    CHECK(diff == 0, "%s F32 T=%d in=%d out=%d: %d outputs differ from ss_matmul_rows", k->isa, T, in, out, diff);
#endif
    free(y2);
  }
  free(x), free(b), free(y), free(y0), free(xq), free(xd), free(wf), free(store);
}

static void test_matmuls(void) {
  static const int ins_f[] = {8, 16, 40, 64, 100, 172, 256};
  static const int ins_q[] = {32, 64, 96, 256};
  static const int Ts[] = {1, 2, 3, 5, 8};
  static const int outs[] = {1, 3, 7, 13, 40};
  for (int ti = 0; ti < g_n_tables; ti++) {
    const ss_wkernels *k = g_tables[ti];
    for (int32_t dt = 0; dt < SS_N_DTYPES; dt++) {
      int quant = ss_wkernel_needs_q8(dt);
      const int *ins = quant ? ins_q : ins_f;
      int n_in = quant ? 4 : 7;
      for (int a = 0; a < n_in; a++)
        for (size_t b = 0; b < sizeof Ts / sizeof Ts[0]; b++)
          for (size_t c = 0; c < sizeof outs / sizeof outs[0]; c++) {
            int out = outs[c], in = ins[a], T = Ts[b];
            test_matmul_case(k, dt, T, in, out, 0, out, (a + c) % 2, (b + c) % 2);
            if (out > 4) test_matmul_case(k, dt, T, in, out, 1, out - 2, 1, 1);
          }
    }
  }
}

/* Quantization codes of known blocks (llama.cpp's reference: quantize_row_q8_0_ref / q4_0_ref). */
static void test_formats(void) {
  float x[32];
  for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * 0.25f; /* -4 .. 3.75, max |x| = 4 at i = 0 */
  ss_block_q8_0 q8;
  ss_quantize_row(SS_DTYPE_Q8_0, x, &q8, 32);
  CHECK(ss_f16_to_f32(q8.d) == ss_f16_to_f32(ss_f32_to_f16(4.0f / 127.0f)), "q8 scale");
  CHECK(q8.q[0] == -127 && q8.q[16] == 0 && q8.q[31] == 119 && q8.q[17] == 8, "q8 codes %d %d %d %d", q8.q[0],
        q8.q[16], q8.q[31], q8.q[17]);
  ss_block_q4_0 q4;
  ss_quantize_row(SS_DTYPE_Q4_0, x, &q4, 32);
  /* max = -4 (first of largest |x|), d = 0.5; n = trunc(x / 0.5 + 8.5) clamped: x=-4 -> 0, x=0 -> 8 */
  CHECK(ss_f16_to_f32(q4.d) == 0.5f, "q4 scale %g", (double)ss_f16_to_f32(q4.d));
  CHECK((q4.qs[0] & 15) == 0 && (q4.qs[0] >> 4) == 8 && (q4.qs[15] >> 4) == 15 && (q4.qs[1] & 15) == 1 && (q4.qs[15] & 15) == 8,
        "q4 codes %02x %02x %02x", q4.qs[0], q4.qs[15], q4.qs[1]);
  /* non-finite input is clamped, never undefined */
  x[3] = NAN;
  x[4] = INFINITY;
  ss_quantize_row(SS_DTYPE_Q8_0, x, &q8, 32);
  ss_quantize_row(SS_DTYPE_Q4_0, x, &q4, 32);
  CHECK(ss_dtype_row_bytes(SS_DTYPE_Q8_0, 64) == 68 && ss_dtype_row_bytes(SS_DTYPE_Q4_0, 64) == 36 &&
            ss_dtype_row_bytes(SS_DTYPE_Q8_0, 40) == 0 && ss_dtype_row_bytes(SS_DTYPE_BF16, 3) == 6,
        "row bytes");
  CHECK(ss_storage_dtype(SS_DTYPE_Q4_0, 172) == SS_DTYPE_F16 && ss_storage_dtype(SS_DTYPE_Q8_0, 64) == SS_DTYPE_Q8_0 &&
            ss_storage_dtype(SS_DTYPE_BF16, 172) == SS_DTYPE_BF16,
        "storage rule");

  /* per-weight error bounds on random rows */
  int bad8 = 0, bad4 = 0, bada = 0;
  for (int rep = 0; rep < 200; rep++) {
    float v[64], back[64];
    for (int i = 0; i < 64; i++) v[i] = frand(rep % 2 ? 10.0f : 0.01f) * (i % 5 == 0 ? 3.0f : 1.0f);
    uint8_t buf[128];
    ss_weight w8 = ss_weight_make(buf, SS_DTYPE_Q8_0, 1, 64), w4 = ss_weight_make(buf, SS_DTYPE_Q4_0, 1, 64);
    ss_quantize_row(SS_DTYPE_Q8_0, v, buf, 64);
    ss_weight_row_f32(&w8, 0, back);
    for (int b = 0; b < 2; b++) {
      float amax = 0;
      for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[b * 32 + i]));
      for (int i = 0; i < 32; i++) bad8 += fabsf(back[b * 32 + i] - v[b * 32 + i]) > 0.57f * amax / 127.0f;
    }
    ss_quantize_row(SS_DTYPE_Q4_0, v, buf, 64);
    ss_weight_row_f32(&w4, 0, back);
    for (int b = 0; b < 2; b++) {
      float amax = 0;
      for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[b * 32 + i]));
      for (int i = 0; i < 32; i++) bad4 += fabsf(back[b * 32 + i] - v[b * 32 + i]) > 1.01f * amax / 8.0f;
    }
    int8_t q[64];
    float d[2];
    ss_quantize_act(q, d, v, 64);
    for (int i = 0; i < 64; i++)
      bada += fabsf((float)q[i] * d[i / 32] - v[i]) > (0.5f + 127.0f / 2048.0f) * d[i / 32] * (1 + 1e-3f) || q[i] < -127;
  }
  CHECK(bad8 == 0 && bad4 == 0 && bada == 0, "format bounds: q8 %d, q4 %d, activations %d", bad8, bad4, bada);
}

/* A whole quantized matmul against the f32 matmul of the original values, within the format's bound:
 * |y_q - y| <= sum_b (e_w,b * sum|x| + d_x,b / 2 * sum|w'|) + rounding. */
static void test_matmul_error_bound(void) {
  enum { T = 3, IN = 256, OUT = 24 };
  for (int ti = 0; ti < g_n_tables; ti++)
    for (int32_t dt = SS_DTYPE_Q8_0; dt <= SS_DTYPE_Q4_0; dt++) {
      static float wsrc[OUT * IN], x[T * IN], y[T * OUT], deq[IN];
      static int8_t xq[T * IN];
      static float xd[T * IN / 32];
      uint8_t *store = malloc((size_t)OUT * ss_dtype_row_bytes(dt, IN));
      for (int i = 0; i < OUT * IN; i++) wsrc[i] = frand(0.05f);
      for (int i = 0; i < T * IN; i++) x[i] = frand(3.0f);
      size_t rb = ss_dtype_row_bytes(dt, IN);
      for (int r = 0; r < OUT; r++) ss_quantize_row(dt, wsrc + r * IN, store + r * rb, IN);
      for (int t = 0; t < T; t++) ss_quantize_act(xq + t * IN, xd + t * (IN / 32), x + t * IN, IN);
      ss_weight w = ss_weight_make(store, dt, OUT, IN);
      ss_act_q8 view = {xq, xd, IN};
      g_tables[ti]->mm[dt](y, x, &view, &w, NULL, T, 0, OUT, 0);
      int bad = 0;
      for (int r = 0; r < OUT; r++) {
        ss_weight_row_f32(&w, r, deq);
        for (int t = 0; t < T; t++) {
          double exact = 0, bound = 0;
          for (int b = 0; b < IN / 32; b++) {
            double amax = 0, sx = 0, sw = 0;
            for (int i = b * 32; i < b * 32 + 32; i++) {
              amax = fmax(amax, fabs(wsrc[r * IN + i]));
              sx += fabs(x[t * IN + i]);
              sw += fabs(deq[i]);
              exact += (double)wsrc[r * IN + i] * x[t * IN + i];
            }
            double ew = dt == SS_DTYPE_Q8_0 ? 0.57 * amax / 127 : 1.01 * amax / 8;
            bound += ew * sx + (0.5 + 127.0 / 2048) * xd[t * (IN / 32) + b] * sw;
          }
          bound = bound * (1 + 1e-5) + 1e-6;
          bad += fabs((double)y[t * OUT + r] - exact) > bound;
        }
      }
      CHECK(bad == 0, "%s %s: %d outputs outside the format's error bound", g_tables[ti]->isa, ss_dtype_name(dt), bad);
      free(store);
    }
}

static void test_half_rows(void) {
  enum { N = 1000 };
  float src[N], back[N], ref[N];
  uint16_t h[N], hr[N];
  for (int i = 0; i < N; i++) src[i] = frand(i % 3 == 0 ? 70000.0f : i % 3 == 1 ? 1.0f : 1e-6f);
  src[0] = 65519.0f, src[1] = 65520.0f, src[2] = -0.0f, src[3] = 5.96e-8f, src[4] = 2.98e-8f, src[5] = INFINITY;
  for (int i = 0; i < N; i++) hr[i] = ss_f32_to_f16(src[i]), ref[i] = ss_f16_to_f32(hr[i]);
  for (int ti = 0; ti < g_n_tables; ti++) {
    g_tables[ti]->f32_to_f16(h, src, N);
    g_tables[ti]->f16_to_f32(back, h, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += h[i] != hr[i] || bits(back[i]) != bits(ref[i]);
    CHECK(bad == 0, "%s: %d half conversions differ from ss_f32_to_f16 / ss_f16_to_f32", g_tables[ti]->isa, bad);
  }
  CHECK(hr[0] == 0x7bff && hr[1] == 0x7c00 && hr[2] == 0x8000 && hr[3] == 1 && hr[4] == 0, "edge conversions");
  /* every f16 value survives f16 -> f32 -> f16 */
  int bad = 0;
  for (uint32_t v = 0; v < 65536; v++) {
    uint16_t x = (uint16_t)v;
    if ((x & 0x7c00) == 0x7c00 && (x & 0x3ff)) continue; /* NaN payloads are quieted */
    bad += ss_f32_to_f16(ss_f16_to_f32(x)) != x;
  }
  CHECK(bad == 0, "%d f16 values do not round-trip", bad);
  CHECK(ss_f32_to_bf16(1.0f) == 0x3f80 && ss_f32_to_bf16(1.00390625f) == 0x3f80 && ss_f32_to_bf16(1.01171875f) == 0x3f82,
        "bf16 rounding");
}

int main(void) {
  const ss_wkernels *all[3] = {ss_wkernels_portable(), ss_wkernels_avx2(), ss_wkernels_avx512()};
  const char *names[3] = {"portable", "avx2", "avx512"};
  for (int i = 0; i < 3; i++) {
    if (all[i])
      g_tables[g_n_tables++] = all[i];
    else
      printf("test_wkernels: the %s table cannot run on this CPU (or is not built): skipped\n", names[i]);
  }
  CHECK(ss_wkernels_select("bogus") == NULL && ss_wkernels_select(NULL) != NULL, "selection by name");
  CHECK(ss_wkernels_select("portable") == ss_wkernels_portable(), "portable by name");
  test_formats();
  test_half_rows();
  test_matmuls();
  test_matmul_error_bound();
  return test_summary("test_wkernels");
}
