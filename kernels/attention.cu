/* attention.cu — fused attention over a sequence's sink + ring-buffer cache.
 *
 * One block per (key split, query head, step token). For query stream index t of an item
 * (start s0, S sinks, capacity C, R = C - S) the visible keys, in virtual order j:
 *   j <  ns = min(S, t+1):  sink i = j                scored with q rotated at n(t)-1 (q_sink)
 *   j >= ns:                 recent i = lo + (j - ns)  scored with q rotated at t    (q_rec)
 * with lo = max(S, t-R+1), n(t) = min(t+1, C) keys in all. Key i is read from the step's
 * scratch when i >= s0 (a token of the item's own chunk) and from ring slot(i) otherwise, so a
 * chunk sees exactly what token-by-token feeding would (csrc/src/cache_geometry.h, docs/decisions.md).
 * Keys are stored rotated at their stream index; rotating the query twice applies StreamingLLM's
 * re-indexed positions on the fly: nothing in the cache is moved or re-rotated on eviction.
 *
 * Inside a block, each warp takes KPW = 32/LPK keys at a time, LPK lanes per key, 8 head dims
 * per lane (16-byte loads); online softmax in fp32 (exp2 with log2(e) folded into the query
 * scale); warps and then splits are merged by log-sum-exp (flash-decoding). GQA: head h reads
 * kv head h / (n_heads / n_kv_heads). Any head_dim that is a multiple of 8 up to 256. */
#include <math.h>

#include "common.cuh"

#define ATT_WARPS 4

template <typename T>
__device__ __forceinline__ const T *att_key_ptr(const ssk_item &it, int layer, int which, int64_t i, const T *scr,
                                                int kv_dim, int kv_off, int32_t slot) {
  if (i >= it.s0) return scr + (size_t)(it.tok_off + (int32_t)(i - it.s0)) * kv_dim + kv_off;
  return ssk_cache_row<T>(it, layer, which, slot, kv_dim) + kv_off;
}

template <typename T, int LPK>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attn_split_kernel(const float *__restrict__ q_rec, const float *__restrict__ q_sink, const T *__restrict__ k_scr,
                      const T *__restrict__ v_scr, const ssk_item *__restrict__ items,
                      const int32_t *__restrict__ tok_item, int layer, ssk_shape sh, int n_splits, int split_len,
                      float *__restrict__ part) {
  constexpr int KPW = 32 / LPK;
  const int split = blockIdx.x, tok = blockIdx.y, h = blockIdx.z;
  const int hd = sh.head_dim, kv_dim = sh.kv_dim;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane / LPK, sub = lane % LPK;
  const int d0 = sub * 8;
  const bool dim_ok = d0 < hd;

  const ssk_item it = items[tok_item[tok]];
  const int32_t S = it.n_sinks, C = it.capacity;
  const int64_t t = it.s0 + (tok - it.tok_off);
  const int32_t n = ss_geom_n_visible(t, C);
  const int32_t ns = ss_geom_n_sinks_visible(t, S);
  const int64_t lo = ss_geom_recent_lo(t, S, C);
  /* slot of key lo (recent keys are consecutive in the ring from there) */
  const int32_t lo_slot = ss_geom_slot(lo, S, C);

  const int j_begin = split * split_len;
  const int j_end = min(n, j_begin + split_len);
  const size_t pidx = ((size_t)tok * sh.n_heads + h) * n_splits + split;
  float *po = part + pidx * (hd + 2);
  if (j_begin >= j_end) { /* nothing in this split */
    for (int d = threadIdx.x; d < hd; d += blockDim.x) po[d] = 0.0f;
    if (threadIdx.x == 0) {
      po[hd] = -INFINITY;
      po[hd + 1] = 0.0f;
    }
    return;
  }

  const int kvh = h / (sh.n_heads / sh.n_kv_heads);
  const int kv_off = kvh * hd + d0;
  const float qscale = rsqrtf((float)hd) * 1.4426950408889634f; /* 1/sqrt(hd) * log2(e) */
  float qr[8], qs[8];
  {
    const float *a = q_rec + (size_t)tok * sh.n_heads * hd + h * hd + d0;
    const float *b = q_sink + (size_t)tok * sh.n_heads * hd + h * hd + d0;
#pragma unroll
    for (int e = 0; e < 8; e++) {
      qr[e] = dim_ok ? a[e] * qscale : 0.0f;
      qs[e] = dim_ok ? b[e] * qscale : 0.0f;
    }
  }

  float m = -INFINITY, l = 0.0f, acc[8];
#pragma unroll
  for (int e = 0; e < 8; e++) acc[e] = 0.0f;

  for (int jb = j_begin + warp * KPW; jb < j_end; jb += ATT_WARPS * KPW) {
    const int j = jb + g;
    const bool active = j < j_end;
    float s = 0.0f;
    const T *vrow = nullptr;
    if (active) {
      int64_t i;
      int32_t slot;
      bool sink = j < ns;
      if (sink) {
        i = j;
        slot = j;
      } else {
        int32_t r = j - ns;
        i = lo + r;
        slot = ss_geom_ring_step(lo_slot, r, S, C);
      }
      const T *krow = att_key_ptr<T>(it, layer, 0, i, k_scr, kv_dim, kv_off, slot);
      vrow = att_key_ptr<T>(it, layer, 1, i, v_scr, kv_dim, kv_off, slot);
      if (dim_ok) {
        uint4 kv4 = *reinterpret_cast<const uint4 *>(krow);
        float kf[8];
        ssk_unpack8<T>(kv4, kf);
#pragma unroll
        for (int e = 0; e < 8; e++) s = fmaf(sink ? qs[e] : qr[e], kf[e], s); /* stays in registers */
      }
    }
    /* reduce the dot product over the LPK lanes of this key (xor stays inside the group) */
#pragma unroll
    for (int o = LPK / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (active) {
      float m_new = fmaxf(m, s);
      float corr = exp2f(m - m_new); /* m = -inf the first time: 0 */
      float p = exp2f(s - m_new);
      l = l * corr + p;
      m = m_new;
      if (dim_ok) {
        uint4 vv4 = *reinterpret_cast<const uint4 *>(vrow);
        float vf[8];
        ssk_unpack8<T>(vv4, vf);
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] = fmaf(p, vf[e], acc[e] * corr);
      }
    }
  }

  /* merge the KPW key groups of the warp (lanes with the same `sub`) */
#pragma unroll
  for (int o = LPK; o < 32; o <<= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    float l2 = __shfl_xor_sync(0xffffffffu, l, o);
    float mm = fmaxf(m, m2);
    float c1 = mm == -INFINITY ? 0.0f : exp2f(m - mm);
    float c2 = mm == -INFINITY ? 0.0f : exp2f(m2 - mm);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      float a2 = __shfl_xor_sync(0xffffffffu, acc[e], o);
      acc[e] = acc[e] * c1 + a2 * c2;
    }
    l = l * c1 + l2 * c2;
    m = mm;
  }

  /* merge the warps */
  __shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
  __shared__ float sm_acc[ATT_WARPS][256];
  if (lane < LPK) {
    if (lane == 0) {
      sm_m[warp] = m;
      sm_l[warp] = l;
    }
    if (dim_ok) {
#pragma unroll
      for (int e = 0; e < 8; e++) sm_acc[warp][d0 + e] = acc[e];
    }
  }
  __syncthreads();
  float mm = -INFINITY;
#pragma unroll
  for (int w = 0; w < ATT_WARPS; w++) mm = fmaxf(mm, sm_m[w]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; w++)
      if (sm_m[w] != -INFINITY) o += sm_acc[w][d] * exp2f(sm_m[w] - mm);
    po[d] = o;
  }
  if (threadIdx.x == 0) {
    float ll = 0.0f;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; w++)
      if (sm_m[w] != -INFINITY) ll += sm_l[w] * exp2f(sm_m[w] - mm);
    po[hd] = mm;
    po[hd + 1] = ll;
  }
}

/* out[tok][h*hd + d] = merge over splits (one block per (head, token)). */
template <typename T>
__global__ void attn_combine_kernel(const float *__restrict__ part, T *__restrict__ out, int n_heads, int hd,
                                    int n_splits) {
  const int h = blockIdx.x, tok = blockIdx.y;
  const float *base = part + ((size_t)tok * n_heads + h) * n_splits * (hd + 2);
  float mm = -INFINITY;
  for (int s = 0; s < n_splits; s++) mm = fmaxf(mm, base[s * (hd + 2) + hd]);
  float L = 0.0f;
  for (int s = 0; s < n_splits; s++) {
    float ms = base[s * (hd + 2) + hd];
    if (ms != -INFINITY) L += base[s * (hd + 2) + hd + 1] * exp2f(ms - mm);
  }
  float inv = L > 0.0f ? 1.0f / L : 0.0f;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < n_splits; s++) {
      float ms = base[s * (hd + 2) + hd];
      if (ms != -INFINITY) o += base[s * (hd + 2) + d] * exp2f(ms - mm);
    }
    out[((size_t)tok * n_heads + h) * hd + d] = ssk_t<T>::from_f(o * inv);
  }
}

template <typename T>
static void attention_launch(const float *q_rec, const float *q_sink, const T *k_scr, const T *v_scr,
                             const ssk_item *items, const int32_t *tok_item, int layer, int n_tok, ssk_shape sh,
                             int n_splits, int split_len, float *part, T *out, cudaStream_t st) {
  /* heads slowest: consecutive blocks are consecutive tokens of one head, which read the same
   * keys (prefill chunks), so those stay in L2 */
  dim3 grid(n_splits, n_tok, sh.n_heads);
  int hd = sh.head_dim;
#define ATT_LAUNCH(LPK)                                                                               \
  attn_split_kernel<T, LPK><<<grid, ATT_WARPS * 32, 0, st>>>(q_rec, q_sink, k_scr, v_scr, items, tok_item, \
                                                             layer, sh, n_splits, split_len, part)
  if (hd <= 8) ATT_LAUNCH(1);
  else if (hd <= 16) ATT_LAUNCH(2);
  else if (hd <= 32) ATT_LAUNCH(4);
  else if (hd <= 64) ATT_LAUNCH(8);
  else if (hd <= 128) ATT_LAUNCH(16);
  else ATT_LAUNCH(32);
#undef ATT_LAUNCH
  int threads = ((hd + 31) / 32) * 32;
  attn_combine_kernel<T><<<dim3(sh.n_heads, n_tok), threads, 0, st>>>(part, out, sh.n_heads, hd, n_splits);
}

extern "C" int ssk_attention(int dtype, const float *q_rec, const float *q_sink, const void *k_scr,
                             const void *v_scr, const ssk_item *items, const int32_t *tok_item, int layer, int n_tok,
                             ssk_shape sh, int n_splits, int split_len, float *part, void *out, cudaStream_t st) {
  if (sh.head_dim % 8 != 0 || sh.head_dim > 256 || sh.head_dim <= 0) return (int)cudaErrorInvalidValue;
  if (n_tok > 65535 || sh.n_heads > 65535) return (int)cudaErrorInvalidConfiguration;
  SSK_DISPATCH(dtype, attention_launch<T>(q_rec, q_sink, (const T *)k_scr, (const T *)v_scr, items, tok_item, layer,
                                          n_tok, sh, n_splits, split_len, part, (T *)out, st));
  return ssk_launch_status();
}
