/* gemm.cu — the backend's own matmul kernels, y[M][N] (=|+=) x[M][K] . w[N][K]^T with fp32
 * accumulation and fp32 output:
 *  - gemv_kernel: M <= 8 (decode). One warp per weight row, 16-byte streaming loads of the
 *    weights (read once from HBM, not kept in L1), the M activation rows read through L1.
 *    Bandwidth-bound by design: this is the batch-1 decode path.
 *  - wmma_gemm_kernel: tensor-core tiles (16x16x16 fp16/bf16 -> fp32) for larger M, used when
 *    cuBLAS cannot be loaded (backend_cuda.c prefers cuBLAS there). */
#include <mma.h>

#include "common.cuh"

#define GEMV_WARPS 8

template <typename T, int M, bool VEC>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(float *__restrict__ y, const T *__restrict__ x, const T *__restrict__ w, int N, int K,
                int accumulate) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row = blockIdx.x * GEMV_WARPS + warp;
  if (row >= N) return;
  const T *wr = w + (size_t)row * K;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = 0.0f;
  if (VEC) {
    const int nc = K >> 3;
    const uint4 *w4 = reinterpret_cast<const uint4 *>(wr);
#pragma unroll 4
    for (int c = lane; c < nc; c += 32) {
      uint4 wv = __ldcs(w4 + c);
      float wf[8];
      ssk_unpack8<T>(wv, wf);
#pragma unroll
      for (int m = 0; m < M; m++) {
        uint4 xv = __ldg(reinterpret_cast<const uint4 *>(x + (size_t)m * K) + c);
        float xf[8];
        ssk_unpack8<T>(xv, xf);
#pragma unroll
        for (int e = 0; e < 8; e++) acc[m] = fmaf(wf[e], xf[e], acc[m]);
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      float wf = ssk_t<T>::to_f(wr[k]);
#pragma unroll
      for (int m = 0; m < M; m++) acc[m] = fmaf(wf, ssk_t<T>::to_f(x[(size_t)m * K + k]), acc[m]);
    }
  }
#pragma unroll
  for (int m = 0; m < M; m++) {
    float s = ssk_warp_sum(acc[m]);
    if (lane == 0) {
      float *o = y + (size_t)m * N + row;
      *o = accumulate ? *o + s : s;
    }
  }
}

template <typename T, int M>
static void gemv_launch(float *y, const T *x, const T *w, int N, int K, int acc, cudaStream_t st) {
  int blocks = (N + GEMV_WARPS - 1) / GEMV_WARPS;
  bool vec = (K % 8) == 0 && ((uintptr_t)x % 16) == 0 && ((uintptr_t)w % 16) == 0;
  if (vec)
    gemv_kernel<T, M, true><<<blocks, GEMV_WARPS * 32, 0, st>>>(y, x, w, N, K, acc);
  else
    gemv_kernel<T, M, false><<<blocks, GEMV_WARPS * 32, 0, st>>>(y, x, w, N, K, acc);
}

template <typename T>
static void gemv_dispatch(float *y, const T *x, const T *w, int M, int N, int K, int acc, cudaStream_t st) {
  switch (M) {
    case 1: gemv_launch<T, 1>(y, x, w, N, K, acc, st); break;
    case 2: gemv_launch<T, 2>(y, x, w, N, K, acc, st); break;
    case 3: gemv_launch<T, 3>(y, x, w, N, K, acc, st); break;
    case 4: gemv_launch<T, 4>(y, x, w, N, K, acc, st); break;
    case 5: gemv_launch<T, 5>(y, x, w, N, K, acc, st); break;
    case 6: gemv_launch<T, 6>(y, x, w, N, K, acc, st); break;
    case 7: gemv_launch<T, 7>(y, x, w, N, K, acc, st); break;
    default: gemv_launch<T, 8>(y, x, w, N, K, acc, st); break;
  }
}

/* ---- tensor-core tiles ----------------------------------------------------------------- */
#define WG_BK 32
#define WG_LD (WG_BK + 8) /* smem row stride in elements: multiple of 8 as wmma requires */

/* Block tile BM x BN, WM x WN warps; each warp owns (BM/WM) x (BN/WN) = FM x FN fragments. */
template <typename T, int BM, int BN, int WM, int WN>
__global__ void __launch_bounds__(WM *WN * 32)
    wmma_gemm_kernel(float *__restrict__ y, const T *__restrict__ x, const T *__restrict__ w, int M, int N, int K,
                     int accumulate, int vec) {
  using namespace nvcuda;
  constexpr int NT = WM * WN * 32;
  constexpr int TM = BM / WM, TN = BN / WN, FM = TM / 16, FN = TN / 16;
  __shared__ __align__(128) T As[BM * WG_LD];
  __shared__ __align__(128) T Bs[BN * WG_LD];
  __shared__ __align__(128) float Cs[WM * WN][16 * 16];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp / WN, wn = warp % WN;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; i++)
#pragma unroll
    for (int j = 0; j < FN; j++) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < K; k0 += WG_BK) {
    /* load the x tile (BM x BK) and the w tile (BN x BK), zero-filled outside */
    for (int idx = tid; idx < (BM + BN) * (WG_BK / 8); idx += NT) {
      int r = idx / (WG_BK / 8), c = (idx % (WG_BK / 8)) * 8;
      const T *src;
      T *dst;
      int grow, lim;
      if (r < BM) {
        grow = m0 + r;
        lim = M;
        src = x + (size_t)grow * K;
        dst = As + r * WG_LD + c;
      } else {
        grow = n0 + (r - BM);
        lim = N;
        src = w + (size_t)grow * K;
        dst = Bs + (r - BM) * WG_LD + c;
      }
      int gk = k0 + c;
      if (vec && grow < lim && gk + 8 <= K) {
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src + gk);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++)
          dst[e] = (grow < lim && gk + e < K) ? src[gk + e] : ssk_t<T>::from_f(0.0f);
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < WG_BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[FN];
#pragma unroll
      for (int i = 0; i < FM; i++) wmma::load_matrix_sync(fa[i], As + (wm * TM + i * 16) * WG_LD + kk, WG_LD);
#pragma unroll
      for (int j = 0; j < FN; j++) wmma::load_matrix_sync(fb[j], Bs + (wn * TN + j * 16) * WG_LD + kk, WG_LD);
#pragma unroll
      for (int i = 0; i < FM; i++)
#pragma unroll
        for (int j = 0; j < FN; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
  float *ct = Cs[warp];
#pragma unroll
  for (int i = 0; i < FM; i++) {
#pragma unroll
    for (int j = 0; j < FN; j++) {
      wmma::store_matrix_sync(ct, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        int r = m0 + wm * TM + i * 16 + e / 16, c = n0 + wn * TN + j * 16 + e % 16;
        if (r < M && c < N) {
          float *o = y + (size_t)r * N + c;
          *o = accumulate ? *o + ct[e] : ct[e];
        }
      }
      __syncwarp();
    }
  }
}

template <typename T>
static void gemm_dispatch(float *y, const T *x, const T *w, int M, int N, int K, int acc, cudaStream_t st) {
  int vec = (K % 8) == 0 && ((uintptr_t)x % 16) == 0 && ((uintptr_t)w % 16) == 0;
  if (M <= 32) {
    dim3 grid((N + 63) / 64, (M + 31) / 32);
    wmma_gemm_kernel<T, 32, 64, 1, 4><<<grid, 128, 0, st>>>(y, x, w, M, N, K, acc, vec);
  } else {
    dim3 grid((N + 127) / 128, (M + 127) / 128);
    wmma_gemm_kernel<T, 128, 128, 2, 4><<<grid, 256, 0, st>>>(y, x, w, M, N, K, acc, vec);
  }
}

extern "C" int ssk_gemv(int dtype, float *y, const void *x, const void *w, int M, int N, int K, int accumulate,
                        cudaStream_t st) {
  if (M <= 0 || N <= 0) return 0;
  for (int m0 = 0; m0 < M; m0 += SSK_GEMV_MAX_M) {
    int mm = M - m0 < SSK_GEMV_MAX_M ? M - m0 : SSK_GEMV_MAX_M;
    SSK_DISPATCH(dtype, gemv_dispatch<T>(y + (size_t)m0 * N, (const T *)x + (size_t)m0 * K, (const T *)w, mm, N, K,
                                         accumulate, st));
  }
  return ssk_launch_status();
}

extern "C" int ssk_gemm(int dtype, float *y, const void *x, const void *w, int M, int N, int K, int accumulate,
                        cudaStream_t st) {
  if (M <= 0 || N <= 0) return 0;
  if (M <= SSK_GEMV_MAX_M) return ssk_gemv(dtype, y, x, w, M, N, K, accumulate, st);
  SSK_DISPATCH(dtype, gemm_dispatch<T>(y, (const T *)x, (const T *)w, M, N, K, accumulate, st));
  return ssk_launch_status();
}
