/*
 * weights.h — weight matrices kept in their own element type, and the arithmetic of each type: the
 * one owner of the block formats, of quantization (at load, in the GGUF export, of activations for
 * the integer dot products) and of dequantization.
 *
 * A matrix is row-major [rows, cols]; row r starts at data + r * ss_dtype_row_bytes(dtype, cols):
 *   F32, F16, BF16  cols little-endian elements
 *   Q8_0            cols / 32 blocks {f16 d; int8 q[32]}:    weight i of a block = d * q[i]
 *   Q4_0            cols / 32 blocks {f16 d; uint8 qs[16]}:  weight i = d * (n_i - 8), n_i the low nibble
 *                   of qs[i] for i < 16, the high nibble of qs[i - 16] for i >= 16
 * These are ggml's / GGUF's layouts, so GGUF files map without repacking.
 *
 * Quantization (llama.cpp's reference rounding, so our files and theirs agree):
 *   Q8_0: d = max|x| / 127, q = round-half-away(x / d)
 *   Q4_0: m = the x of largest |x| (first one), d = m / -8, n = min(15, trunc(x / d + 8.5))
 *   (non-finite inputs are clamped to the code range instead of being undefined behaviour).
 * Activations for the integer dot products (ss_quantize_act): per block of 32, q = round-half-even(x *
 * 127 / max|x|) and d = max|x| / 127 rounded to f16, as ggml quantizes activations for its Q8_0 / Q4_0
 * dot products (so our block sums equal llama.cpp's): |x - d q| <= (1/2 + 127 * 2^-11) d.
 */
#ifndef SS_WEIGHTS_H
#define SS_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "../include/sinkstream.h"

#define SS_N_DTYPES 5 /* ss_dtype values 0 .. SS_N_DTYPES-1 */
#define SS_QBLOCK 32  /* weights per Q8_0 / Q4_0 block */

typedef struct ss_block_q8_0 {
  uint16_t d; /* f16 scale */
  int8_t q[SS_QBLOCK];
} ss_block_q8_0;

typedef struct ss_block_q4_0 {
  uint16_t d; /* f16 scale */
  uint8_t qs[SS_QBLOCK / 2];
} ss_block_q4_0;

_Static_assert(sizeof(ss_block_q8_0) == 34, "Q8_0 block is 34 bytes (GGUF)");
_Static_assert(sizeof(ss_block_q4_0) == 18, "Q4_0 block is 18 bytes (GGUF)");

/* A weight matrix [rows, cols] in its own type. data is aligned for the type (2 bytes for the
 * half and block types, 4 for F32). */
typedef struct ss_weight {
  const void *data;
  int32_t dtype; /* ss_dtype */
  int32_t rows, cols;
} ss_weight;

static inline ss_weight ss_weight_make(const void *data, int32_t dtype, int64_t rows, int64_t cols) {
  ss_weight w = {data, dtype, (int32_t)rows, (int32_t)cols};
  return w;
}

/* Whether `dtype` is a known ss_dtype. */
int ss_dtype_valid(int32_t dtype);
/* Weights per block: 1 for F32/F16/BF16, 32 for Q8_0/Q4_0. */
int ss_dtype_block(int32_t dtype);
/* Bytes of a row of `cols` weights; 0 when cols is not a whole number of blocks (or dtype unknown). */
size_t ss_dtype_row_bytes(int32_t dtype, int64_t cols);
/* The type a matrix with rows of `cols` gets when `want` is asked for: want, or F16 when want is a
 * block type and cols is not a multiple of 32 (llama.cpp's quantizer does the same). */
int32_t ss_storage_dtype(int32_t want, int64_t cols);
/* Required alignment of a matrix's data in bytes. */
size_t ss_dtype_align(int32_t dtype);

/* Bytes of the whole matrix. */
size_t ss_weight_bytes(const ss_weight *w);
/* Dequantize row `row` of w into dst[cols] (exact for F32/F16/BF16). */
void ss_weight_row_f32(const ss_weight *w, int64_t row, float *dst);

/* One row of f32 values (cols a whole number of blocks) into `dtype` (rounding as described above;
 * F16 / BF16 round to nearest even). */
void ss_quantize_row(int32_t dtype, const float *src, void *dst, int64_t cols);

/* Activations quantized per block of 32 for the integer dot products: q[t * in + i], d[t * nb + b]. */
typedef struct ss_act_q8 {
  int8_t *q;
  float *d;
  int in; /* elements per token row (a multiple of 32) */
} ss_act_q8;

/* x[n] (n a multiple of 32) into q[n], d[n / 32]. */
void ss_quantize_act(int8_t *q, float *d, const float *x, int n);

#endif /* SS_WEIGHTS_H */
