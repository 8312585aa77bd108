/*
 * ss_kernels.h — C interface of the CUDA kernels (kernels/ folder) used by
 * csrc/src/backend_cuda.c. Every launcher returns a cudaError_t as int
 * (0 = cudaSuccess): the launch error from cudaGetLastError(), so the host
 * code can turn it into SS_ERR_BACKEND with a message. Nothing here aborts.
 *
 * Element type `dtype` (SSK_F16 / SSK_BF16) is the type of the weights, of
 * the activations fed to matmuls and of the KV cache; accumulation is always
 * fp32, the residual stream is fp32.
 *
 * KV storage of a sequence: one allocation laid out [n_layers][2 (K, V)][cap_alloc][kv_dim];
 * keys stored rotated at their stream index (geometry: csrc/src/cache_geometry.h).
 */
#ifndef SS_KERNELS_H
#define SS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { SSK_F16 = 0, SSK_BF16 = 1 };

/* One item (sequence) of a step, as the kernels see it (device memory). */
typedef struct ssk_item {
  int64_t s0;        /* stream index of the item's first token in this step */
  int32_t n_tokens;  /* tokens of the item in this step */
  int32_t tok_off;   /* index of its first token among the step's tokens */
  int32_t n_sinks;   /* S */
  int32_t capacity;  /* C */
  int32_t cap_alloc; /* slots allocated in kv */
  int32_t pad_;
  void *kv;          /* [n_layers][2][cap_alloc][kv_dim] elements of dtype */
} ssk_item;          /* 40 bytes */

/* Model shape the per-layer kernels need. */
typedef struct ssk_shape {
  int32_t n_heads, n_kv_heads, head_dim, kv_dim; /* kv_dim = n_kv_heads * head_dim */
} ssk_shape;

/* dst[n] = (dtype) src[n] (weights upload). */
int ssk_convert_f32(int dtype, void *dst, const float *src, size_t n, cudaStream_t st);

/* x[t, :] = emb[tokens[t], :] as fp32. */
int ssk_embed(int dtype, float *x, const void *emb, const int32_t *tokens, int n_tok, int dim, cudaStream_t st);

/* out[r, :] = w * x[row(r), :] / sqrt(mean(x^2) + eps), row(r) = rows ? rows[r] : r. */
int ssk_rmsnorm(int dtype, void *out, const float *x, const float *w, const int32_t *rows, int n_rows, int dim,
                float eps, cudaStream_t st);

/* RoPE tables of the step, tab[t][4][hd/2] = cos(t), sin(t), cos(n(t)-1), sin(n(t)-1), angles
 * computed in double: angle_j = pos * inv_freq[j]. */
int ssk_rope_tables(float *tab, const ssk_item *items, const int32_t *tok_item, const double *inv_freq, int n_tok,
                    int half, cudaStream_t st);

/* Split qkv[t][q_dim + 2 kv_dim] (fp32, + bias when bias != NULL): q rotated at t -> q_rec,
 * at n(t)-1 -> q_sink (fp32 [t][q_dim]); k rotated at t and v -> scratch k_scr/v_scr ([t][kv_dim]);
 * for items of one token, also straight into their cache slot of `layer`. */
int ssk_qkv_rope(int dtype, const float *qkv, const float *bias, const float *tab, float *q_rec, float *q_sink,
                 void *k_scr, void *v_scr, const ssk_item *items, const int32_t *tok_item, int layer, int n_tok,
                 ssk_shape sh, cudaStream_t st);

/* Attention of every step token over its visible keys (sinks + recent window; keys before the
 * item's chunk from the cache, keys of the chunk from scratch), split over the key range in
 * n_splits parts of split_len keys (flash-decoding), then combined. part: workspace of
 * n_tok * n_heads * n_splits * (head_dim + 2) floats. out: [t][n_heads * head_dim] dtype. */
int ssk_attention(int dtype, const float *q_rec, const float *q_sink, const void *k_scr, const void *v_scr,
                  const ssk_item *items, const int32_t *tok_item, int layer, int n_tok, ssk_shape sh, int n_splits,
                  int split_len, float *part, void *out, cudaStream_t st);

/* Write the scratch K/V of chunk tokens (items of more than one token) that survive the chunk
 * into their ring slots of `layer`. */
int ssk_commit(int dtype, const void *k_scr, const void *v_scr, const ssk_item *items, const int32_t *tok_item,
               int layer, int n_tok, int kv_dim, cudaStream_t st);

/* h[t][j] = silu(gu[t][j]) * gu[t][hidden + j] */
int ssk_swiglu(int dtype, void *h, const float *gu, int n_tok, int hidden, cudaStream_t st);

/* y[M][N] (=|+=) x[M][K] . w[N][K]^T, fp32 out. Small M (<= 8): a bandwidth-bound GEMV kernel;
 * otherwise a tensor-core (wmma) tiled kernel. */
int ssk_gemm(int dtype, float *y, const void *x, const void *w, int M, int N, int K, int accumulate,
             cudaStream_t st);
int ssk_gemv(int dtype, float *y, const void *x, const void *w, int M, int N, int K, int accumulate,
             cudaStream_t st);
#define SSK_GEMV_MAX_M 8

/* Device sampling, one row of logits per item (see kernels/sampling.cu). temperature <= 0:
 * argmax (lowest index among equal maxima). Otherwise softmax(logits / temperature) restricted
 * to the top_k largest (top_k <= 0: all), then to the smallest prefix, in decreasing
 * probability, whose mass reaches top_p (>= 1: all); the token is drawn with the uniform
 * number u in [0, 1) by inverse CDF in token-id order over the kept set. masks: NULL, or one
 * row of SS_MASK_WORDS(vocab) words per row of logits (device memory; bit t % 32 of word t / 32 =
 * token t allowed): only allowed tokens take part; a row allowing none gives -1. */
typedef struct ssk_sample_params {
  float temperature;
  int32_t top_k;
  float top_p;
  float u;
} ssk_sample_params;
int ssk_sample(const float *logits, int rows, int vocab, const ssk_sample_params *params, const uint32_t *masks,
               int32_t *out, cudaStream_t st);

#ifdef __cplusplus
}
#endif
#endif /* SS_KERNELS_H */
