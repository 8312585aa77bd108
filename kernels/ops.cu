/* ops.cu — element-wise and row kernels of the CUDA backend: weight conversion, embedding
 * gather, RMSNorm, RoPE tables, q/k/v split + RoPE at stream positions (with the query rotated
 * a second time for the sink keys), ring-slot commit, SwiGLU. */
#include "common.cuh"

template <typename T> __global__ void convert_kernel(T *dst, const float *src, size_t n) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = ssk_t<T>::from_f(src[i]);
}

extern "C" int ssk_convert_f32(int dtype, void *dst, const float *src, size_t n, cudaStream_t st) {
  if (n == 0) return 0;
  size_t blocks = (n + 255) / 256;
  if (blocks > 65535) blocks = 65535;
  SSK_DISPATCH(dtype, convert_kernel<T><<<(unsigned)blocks, 256, 0, st>>>((T *)dst, src, n));
  return ssk_launch_status();
}

template <typename T> __global__ void embed_kernel(float *x, const T *emb, const int32_t *tokens, int dim) {
  int t = blockIdx.x;
  const T *row = emb + (size_t)tokens[t] * dim;
  float *o = x + (size_t)t * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = ssk_t<T>::to_f(row[i]);
}

extern "C" int ssk_embed(int dtype, float *x, const void *emb, const int32_t *tokens, int n_tok, int dim,
                         cudaStream_t st) {
  SSK_DISPATCH(dtype, embed_kernel<T><<<n_tok, 256, 0, st>>>(x, (const T *)emb, tokens, dim));
  return ssk_launch_status();
}

/* One block per row. Same formula as the CPU backend: o = w * (scale * x). */
template <typename T>
__global__ void rmsnorm_kernel(T *out, const float *x, const float *w, const int32_t *rows, int dim, float eps) {
  int r = blockIdx.x;
  int src = rows ? rows[r] : r;
  const float *xr = x + (size_t)src * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  ss = ssk_block_sum(ss);
  float scale = 1.0f / sqrtf(ss / (float)dim + eps);
  T *o = out + (size_t)r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = ssk_t<T>::from_f(w[i] * (scale * xr[i]));
}

extern "C" int ssk_rmsnorm(int dtype, void *out, const float *x, const float *w, const int32_t *rows, int n_rows,
                           int dim, float eps, cudaStream_t st) {
  if (n_rows <= 0) return 0;
  int threads = dim >= 1024 ? 1024 : ((dim + 31) / 32) * 32;
  SSK_DISPATCH(dtype, rmsnorm_kernel<T><<<n_rows, threads, 0, st>>>((T *)out, x, w, rows, dim, eps));
  return ssk_launch_status();
}

/* tab[t][0][j] = cos(t w_j), [1] sin(t w_j), [2] cos((n(t)-1) w_j), [3] sin((n(t)-1) w_j):
 * angles in double because stream indices grow without bound (as the CPU backend). */
__global__ void rope_tables_kernel(float *tab, const ssk_item *items, const int32_t *tok_item,
                                   const double *inv_freq, int half) {
  int tok = blockIdx.x;
  const ssk_item it = items[tok_item[tok]];
  int64_t t = it.s0 + (tok - it.tok_off);
  int64_t n = ss_geom_n_visible(t, it.capacity);
  float *o = tab + (size_t)tok * 4 * half;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    double s, c;
    sincos((double)t * inv_freq[j], &s, &c);
    o[j] = (float)c;
    o[half + j] = (float)s;
    sincos((double)(n - 1) * inv_freq[j], &s, &c);
    o[2 * half + j] = (float)c;
    o[3 * half + j] = (float)s;
  }
}

extern "C" int ssk_rope_tables(float *tab, const ssk_item *items, const int32_t *tok_item, const double *inv_freq,
                               int n_tok, int half, cudaStream_t st) {
  int threads = half >= 128 ? 128 : ((half + 31) / 32) * 32;
  rope_tables_kernel<<<n_tok, threads, 0, st>>>(tab, items, tok_item, inv_freq, half);
  return ssk_launch_status();
}

/* One block per token. HF rotate-half: pairs (j, j + hd/2). */
template <typename T>
__global__ void qkv_rope_kernel(const float *qkv, const float *bias, const float *tab, float *q_rec, float *q_sink,
                                T *k_scr, T *v_scr, const ssk_item *items, const int32_t *tok_item, int layer,
                                ssk_shape sh) {
  int tok = blockIdx.x;
  const int hd = sh.head_dim, half = hd / 2, q_dim = sh.n_heads * hd, kv_dim = sh.kv_dim;
  const ssk_item it = items[tok_item[tok]];
  const bool direct = it.n_tokens == 1; /* decode: its own slot holds nothing it can still see */
  int32_t slot = 0;
  if (direct) slot = ss_geom_slot(it.s0, it.n_sinks, it.capacity);
  const float *row = qkv + (size_t)tok * (q_dim + 2 * kv_dim);
  const float *tb = tab + (size_t)tok * 4 * half;
  for (int idx = threadIdx.x; idx < sh.n_heads * half; idx += blockDim.x) {
    int h = idx / half, j = idx - h * half;
    int a = h * hd + j, b = a + half;
    float x0 = row[a], x1 = row[b];
    if (bias) {
      x0 += bias[a];
      x1 += bias[b];
    }
    float c = tb[j], s = tb[half + j];
    q_rec[(size_t)tok * q_dim + a] = x0 * c - x1 * s;
    q_rec[(size_t)tok * q_dim + b] = x1 * c + x0 * s;
    c = tb[2 * half + j];
    s = tb[3 * half + j];
    q_sink[(size_t)tok * q_dim + a] = x0 * c - x1 * s;
    q_sink[(size_t)tok * q_dim + b] = x1 * c + x0 * s;
  }
  T *kc = direct ? ssk_cache_row<T>(it, layer, 0, slot, kv_dim) : nullptr;
  T *vc = direct ? ssk_cache_row<T>(it, layer, 1, slot, kv_dim) : nullptr;
  for (int idx = threadIdx.x; idx < sh.n_kv_heads * half; idx += blockDim.x) {
    int h = idx / half, j = idx - h * half;
    int a = h * hd + j, b = a + half;
    float x0 = row[q_dim + a], x1 = row[q_dim + b];
    if (bias) {
      x0 += bias[q_dim + a];
      x1 += bias[q_dim + b];
    }
    float c = tb[j], s = tb[half + j];
    T k0 = ssk_t<T>::from_f(x0 * c - x1 * s), k1 = ssk_t<T>::from_f(x1 * c + x0 * s);
    k_scr[(size_t)tok * kv_dim + a] = k0;
    k_scr[(size_t)tok * kv_dim + b] = k1;
    if (direct) {
      kc[a] = k0;
      kc[b] = k1;
    }
  }
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    float v = row[q_dim + kv_dim + i];
    if (bias) v += bias[q_dim + kv_dim + i];
    T vv = ssk_t<T>::from_f(v);
    v_scr[(size_t)tok * kv_dim + i] = vv;
    if (direct) vc[i] = vv;
  }
}

extern "C" int ssk_qkv_rope(int dtype, const float *qkv, const float *bias, const float *tab, float *q_rec,
                            float *q_sink, void *k_scr, void *v_scr, const ssk_item *items, const int32_t *tok_item,
                            int layer, int n_tok, ssk_shape sh, cudaStream_t st) {
  SSK_DISPATCH(dtype, qkv_rope_kernel<T><<<n_tok, 256, 0, st>>>(qkv, bias, tab, q_rec, q_sink, (T *)k_scr,
                                                                (T *)v_scr, items, tok_item, layer, sh));
  return ssk_launch_status();
}

/* Chunk tokens that token-by-token feeding would leave in the cache (ss_geom_kept: the sinks and
 * the most recent R of the stream after the chunk). They map to distinct slots, so the order of
 * the writes does not matter. */
template <typename T>
__global__ void commit_kernel(const T *k_scr, const T *v_scr, const ssk_item *items, const int32_t *tok_item,
                              int layer, int kv_dim) {
  int tok = blockIdx.x;
  const ssk_item it = items[tok_item[tok]];
  if (it.n_tokens == 1) return; /* written in place by qkv_rope */
  const int32_t S = it.n_sinks, C = it.capacity;
  int64_t i = it.s0 + (tok - it.tok_off);
  if (!ss_geom_kept(i, it.s0 + it.n_tokens, S, C)) return;
  int32_t slot = ss_geom_slot(i, S, C);
  T *kc = ssk_cache_row<T>(it, layer, 0, slot, kv_dim);
  T *vc = ssk_cache_row<T>(it, layer, 1, slot, kv_dim);
  const T *ks = k_scr + (size_t)tok * kv_dim, *vs = v_scr + (size_t)tok * kv_dim;
  for (int d = threadIdx.x; d < kv_dim; d += blockDim.x) {
    kc[d] = ks[d];
    vc[d] = vs[d];
  }
}

extern "C" int ssk_commit(int dtype, const void *k_scr, const void *v_scr, const ssk_item *items,
                          const int32_t *tok_item, int layer, int n_tok, int kv_dim, cudaStream_t st) {
  SSK_DISPATCH(dtype, commit_kernel<T><<<n_tok, 128, 0, st>>>((const T *)k_scr, (const T *)v_scr, items, tok_item,
                                                              layer, kv_dim));
  return ssk_launch_status();
}

template <typename T> __global__ void swiglu_kernel(T *h, const float *gu, int n_tok, int hidden) {
  size_t n = (size_t)n_tok * hidden;
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    size_t t = idx / hidden, j = idx - t * hidden;
    float g = gu[t * 2 * hidden + j], u = gu[t * 2 * hidden + hidden + j];
    h[idx] = ssk_t<T>::from_f(g / (1.0f + expf(-g)) * u);
  }
}

extern "C" int ssk_swiglu(int dtype, void *h, const float *gu, int n_tok, int hidden, cudaStream_t st) {
  size_t n = (size_t)n_tok * hidden;
  size_t blocks = (n + 255) / 256;
  if (blocks > 65535) blocks = 65535;
  SSK_DISPATCH(dtype, swiglu_kernel<T><<<(unsigned)blocks, 256, 0, st>>>((T *)h, gu, n_tok, hidden));
  return ssk_launch_status();
}
