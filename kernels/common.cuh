/* common.cuh — what the kernels share: element-type helpers (fp16 / bf16 storage, fp32 math), block
 * reductions, cache rows, and the cache geometry (csrc/src/cache_geometry.h, the same header the CPU
 * backend and the engine use). */
#ifndef SS_KERNELS_COMMON_CUH
#define SS_KERNELS_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "../csrc/src/cache_geometry.h"
#include "ss_kernels.h"

template <typename T> struct ssk_t;

template <> struct ssk_t<__half> {
  static __device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_f(float f) { return __float2half_rn(f); }
  static __device__ __forceinline__ float2 to_f2(uint32_t bits) {
    __half2 h = *reinterpret_cast<__half2 *>(&bits);
    return __half22float2(h);
  }
};

template <> struct ssk_t<__nv_bfloat16> {
  static __device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_f(float f) { return __float2bfloat16_rn(f); }
  static __device__ __forceinline__ float2 to_f2(uint32_t bits) {
    __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162 *>(&bits);
    return __bfloat1622float2(h);
  }
};

/* 8 packed elements (16 bytes) -> 8 floats */
template <typename T> __device__ __forceinline__ void ssk_unpack8(const uint4 &v, float f[8]) {
  float2 a = ssk_t<T>::to_f2(v.x), b = ssk_t<T>::to_f2(v.y), c = ssk_t<T>::to_f2(v.z), d = ssk_t<T>::to_f2(v.w);
  f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y;
  f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
}

__device__ __forceinline__ float ssk_warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float ssk_warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Block-wide sum (blockDim.x a multiple of 32, <= 1024); result valid in every thread. */
__device__ __forceinline__ float ssk_block_sum(float v) {
  __shared__ float red[32];
  __syncthreads(); /* red[] may still be read by a previous call */
  v = ssk_warp_sum(v);
  int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
  if (l == 0) red[w] = v;
  __syncthreads();
  v = l < nw ? red[l] : 0.0f;
  return ssk_warp_sum(v);
}

/* first element of the K (which = 0) or V (which = 1) row of `slot` in `layer` */
template <typename T>
__device__ __forceinline__ T *ssk_cache_row(const ssk_item &it, int layer, int which, int32_t slot, int kv_dim) {
  return reinterpret_cast<T *>(it.kv) + ((size_t)(2 * layer + which) * (size_t)it.cap_alloc + (size_t)slot) * kv_dim;
}

#define SSK_DISPATCH(dtype, ...)                 \
  do {                                           \
    if ((dtype) == SSK_BF16) {                   \
      typedef __nv_bfloat16 T;                   \
      __VA_ARGS__;                               \
    } else {                                     \
      typedef __half T;                          \
      __VA_ARGS__;                               \
    }                                            \
  } while (0)

static inline int ssk_launch_status(void) { return (int)cudaGetLastError(); }

#endif
