/*
 * cpu_wkernels.h — the CPU backend's matmul kernels for every weight type, one table per instruction
 * set, the table chosen at run time (ss_wkernels_select): AVX2 (+ FMA, F16C) when the CPU has it, else
 * portable C; AVX-512 (F, BW, VL, VNNI) when SS_CPU_ISA=avx512 asks for it (not the default yet: it has
 * not run on a machine with AVX-512).
 *
 *   y[T, w->rows] (= or +=) x[T, w->cols] . W^T (+ b)   for output rows [r0, r1)
 *
 * Arithmetic, the same in every table (so a token's output depends neither on the instruction set
 * nor on the batch, the thread count or the tile it was computed in):
 * - F32 / F16 / BF16: every weight widened exactly to f32, then the lane structure of ss_dot
 *   (cpu_kernels.h): 16 lane sums of FMAs, ss_reduce_lanes, the tail in sequence, + bias. F16 and BF16
 *   weights therefore give bit for bit the result of the same weights widened to F32.
 * - Q8_0 / Q4_0: x quantized per block (ss_quantize_act, passed in xq); per block b the exact int32
 *   sums of 4 consecutive products, lane j = elements 4j..4j+3, go into 8 float lanes
 *   acc[j] = fma(dw_b * dx_b, (float)isum_bj, acc[j]) (dw_b the block's f16 scale widened, dx_b the
 *   activation scale, their product rounded to f32), blocks in order; then
 *   ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)), + bias.
 *   Relative to the f32 product of the dequantized weights and activations this is exact up to f32
 *   rounding of the block sums; the quantization of x adds at most sum_b 0.56 dx_b * sum |w| per block.
 *   This is ggml's Q8_0 x Q8_0 / Q4_0 x Q8_0 dot product (AVX2 path), lane for lane.
 * These equalities hold in builds with FMA (SS_MADD); tests/test_wkernels.c checks them per table.
 */
#ifndef SS_CPU_WKERNELS_H
#define SS_CPU_WKERNELS_H

#include <stdint.h>

#include "weights.h"

/* One matmul kernel. xq: x quantized (ss_quantize_act) when w is Q8_0 / Q4_0, else unused (may be NULL). */
typedef void (*ss_wmm_fn)(float *restrict y, const float *restrict x, const ss_act_q8 *xq, const ss_weight *w,
                          const float *b, int T, int r0, int r1, int accumulate);

typedef struct ss_wkernels {
  const char *isa;            /* "avx512", "avx2", "portable" */
  ss_wmm_fn mm[SS_N_DTYPES];  /* by ss_dtype */
  /* IEEE half rows (the f16 KV cache): widening is exact, narrowing rounds to nearest even */
  void (*f16_to_f32)(float *restrict dst, const uint16_t *restrict src, int n);
  void (*f32_to_f16)(uint16_t *restrict dst, const float *restrict src, int n);
} ss_wkernels;

/* The tables compiled into this library; NULL when this CPU cannot run it. */
const ss_wkernels *ss_wkernels_portable(void);
const ss_wkernels *ss_wkernels_avx2(void);
const ss_wkernels *ss_wkernels_avx512(void);

/* The default table for this CPU (NULL or "": AVX2 or portable), or the one named by `isa` ("portable",
 * "avx2", "avx512"): NULL when that one cannot run here or the name is unknown. */
const ss_wkernels *ss_wkernels_select(const char *isa);

/* The fixed reduction of the 8 lanes of a block-type dot product (see the arithmetic above). */
static inline float ss_reduce_q_lanes(const float a[8]) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Whether weights of this type need x quantized (xq) for the kernel. */
static inline int ss_wkernel_needs_q8(int32_t dtype) { return dtype == SS_DTYPE_Q8_0 || dtype == SS_DTYPE_Q4_0; }

#endif /* SS_CPU_WKERNELS_H */
