/*
 * model_util.h — helpers shared by the model loaders (llama2.c, Hugging Face):
 * read-only file views, checked size arithmetic, half-precision conversion,
 * ownership bookkeeping of struct ss_model and shape validation.
 * Internal to the library.
 */
#ifndef SS_MODEL_UTIL_H
#define SS_MODEL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sinkstream loaders assume a little-endian host (model files are little-endian)"
#endif

/* Limits a sane model stays far below; anything above is treated as a
 * corrupt file rather than an allocation to attempt. */
#define SS_MAX_DIM (1 << 20)        /* hidden / FFN size */
#define SS_MAX_LAYERS 4096
#define SS_MAX_HEADS 16384
#define SS_MAX_HEAD_DIM 4096
#define SS_MAX_VOCAB (1 << 24)
#define SS_MAX_SEQ_LEN (1 << 30)

/* ---- checked size arithmetic (return 1 when the result fits) ----------- */
static inline int ss_mul_ok(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return 0;
  *out = a * b;
  return 1;
}
static inline int ss_add_ok(size_t a, size_t b, size_t *out) {
  if (b > SIZE_MAX - a) return 0;
  *out = a + b;
  return 1;
}

/* ---- read-only view of a whole file ------------------------------------ */
typedef struct ss_file {
  const uint8_t *data; /* file bytes (NULL for an empty file) */
  size_t size;
  int mapped;          /* 1: data is an mmap of the file; 0: a malloc'd copy */
  int kept;            /* 1: handed to a model (ss_file_close then leaves it alone) */
} ss_file;

/* Open `path` (a regular file) and view all of it: mmap, or read() when the
 * file cannot be mapped. SS_ERR_IO with a message naming the path on failure. */
int ss_file_open(const char *path, ss_file *f);
/* Release the view (only forgets it when it was kept by a model). */
void ss_file_close(ss_file *f);
/* Hand the view to `m` so it lives as long as the model (a mapping goes to
 * map_base/map_size, a malloc'd copy to the owned list) and mark it kept; its
 * data stays readable. *kept = 1 when kept (or already), 0 when the model has
 * no mapping slot left (view untouched: copy the data instead). Returns
 * SS_OK or SS_ERR_OUT_OF_MEMORY. */
int ss_model_keep_file(ss_model *m, ss_file *f, int *kept);

/* ---- ownership --------------------------------------------------------- */
/* New zeroed model remembering `path`. */
int ss_model_new(const char *path, ss_model **out);
/* Take ownership of `buf` (freed by ss_model_free). On failure `buf` is freed. */
int ss_model_own(ss_model *m, void *buf);
/* Allocate n floats owned by the model. `what` and the model path go into
 * the out-of-memory message. */
int ss_model_alloc_f32(ss_model *m, size_t n, const char *what, float **out);

/* ---- dtype conversion -------------------------------------------------- */
float ss_f16_to_f32(uint16_t h);
float ss_bf16_to_f32(uint16_t b);
/* f32 -> f16 / bf16 bits, round to nearest even (overflow -> inf, NaN stays a quiet NaN). */
uint16_t ss_f32_to_f16(float f);
uint16_t ss_f32_to_bf16(float f);
/* Convert n little-endian half values at src (any alignment) to dst. */
void ss_convert_to_f32(float *dst, const void *src, size_t n, int32_t dtype);
/* Bytes per element of F32 / F16 / BF16 (0 for the block types and unknown values). */
size_t ss_dtype_size(int32_t dtype);
const char *ss_dtype_name(int32_t dtype);

/* ---- validation -------------------------------------------------------- */
/* Check the shape fields of info (positive, within the limits above, heads
 * divisible, even head_dim, every weight size representable in size_t).
 * `path` and `source` (e.g. "header", "config.json") go into the message. */
int ss_validate_info(const char *path, const char *source, const ss_model_info *info);

/* Fixed shapes of a layer's weights, in scalars. */
typedef struct ss_weight_sizes {
  size_t q_dim, kv_dim;     /* n_heads * head_dim, n_kv_heads * head_dim */
  size_t embed;             /* vocab * dim */
  size_t wq, wk, wo, w_ffn; /* q_dim*dim, kv_dim*dim, dim*q_dim, hidden*dim */
} ss_weight_sizes;
/* Valid only after ss_validate_info succeeded (which proves no overflow). */
ss_weight_sizes ss_weight_sizes_of(const ss_model_info *info);

/* ---- loaders (dispatched by ss_model_load in model_load.c) ------------ */
/* llama2.c checkpoint file (load_llama2c.c). */
int ss_load_llama2c(const char *path, const ss_model_params *params, ss_model **out);
/* Hugging Face folder (load_hf.c). */
int ss_load_hf(const char *dir, const ss_model_params *params, ss_model **out);
/* GGUF file (load_gguf.c). */
int ss_load_gguf(const char *path, const ss_model_params *params, ss_model **out);

#endif /* SS_MODEL_UTIL_H */
