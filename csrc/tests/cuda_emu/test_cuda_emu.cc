/* test_cuda_emu.cc — tests of the CUDA emulator itself (it must catch what a GPU would reject)
 * and of the kernels that the engine-level test (gpu_test_cuda_vs_cpu) reaches only partly:
 *   - fp16 / bf16 conversions against independent references (all 65536 fp16 patterns);
 *   - faults: divergent warp collectives, barriers exited threads never reach, host pointers
 *     passed to kernels, bad launch configurations;
 *   - stream capture: forbidden calls invalidate it; a replayed graph reads device memory anew
 *     but keeps the kernel arguments it was captured with;
 *   - ssk_gemm / ssk_gemv (wmma tiles, vector and scalar loads, accumulate) against a float64
 *     reference at ragged sizes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"
#include "ss_kernels.h"
#include "test_util.h"



/* ---- conversions ------------------------------------------------------------------------- */

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32() {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

/* nearest of two candidate bit patterns to f (ties to the even one), by exact double distance */
template <typename D> static uint16_t nearest(float f, uint16_t a, uint16_t b, D decode) {
  double da = fabs(decode(a) - (double)f), db = fabs(decode(b) - (double)f);
  if (da < db) return a;
  if (db < da) return b;
  return (a & 1) ? b : a;
}

static void test_conversions() {
  int bad = 0;
  for (uint32_t b = 0; b < 65536; b++) { /* fp16 -> fp32 -> fp16 is the identity (NaNs stay NaN) */
    __half h{(uint16_t)b};
    float f = __half2float(h);
    __half r = __float2half_rn(f);
    bool nan = ((b >> 10) & 0x1f) == 0x1f && (b & 0x3ff);
    if (nan ? !(isnan(f) && ((r.bits >> 10) & 0x1f) == 0x1f && (r.bits & 0x3ff)) : r.bits != b) bad++;
    if (!nan && (_Float16)f != *(const _Float16 *)&h.bits) bad++; /* decode agrees with the compiler's */
  }
  CHECK(bad == 0, "fp16 round trip: %d patterns wrong", bad);

  int bad16 = 0, badbf = 0;
  for (int i = 0; i < 2000000; i++) {
    uint32_t u = next_u32() | (i & 1 ? 0x80000000u : 0);
    if (i % 4 == 0) u = (u & 0x807fffffu) | ((uint32_t)(100 + i % 45) << 23); /* around the fp16 range */
    if (i % 8 == 1) u = (u & 0x80001fffu) | 0x38000000u | ((u & 1) << 12);    /* fp16 ties and subnormals */
    float f;
    memcpy(&f, &u, sizeof f);
    if (isnan(f)) continue;
    _Float16 ref = (_Float16)f; /* GCC's conversion rounds to nearest even */
    uint16_t rb;
    memcpy(&rb, &ref, sizeof rb);
    if (__float2half_rn(f).bits != rb) bad16++;
    uint16_t t = (uint16_t)(u >> 16);
    auto bf = [](uint16_t x) { /* value of a pattern; infinity stands for 2^128, one ulp past the max */
      if ((x & 0x7fffu) == 0x7f80u) return (x & 0x8000u) ? -ldexp(1.0, 128) : ldexp(1.0, 128);
      uint32_t v = (uint32_t)x << 16;
      float g;
      memcpy(&g, &v, sizeof g);
      return (double)g;
    };
    uint16_t want = (u & 0xffff) == 0 ? t : nearest(f, t, (uint16_t)(t + 1), bf);
    if (__float2bfloat16_rn(f).bits != want) badbf++;
  }
  CHECK(bad16 == 0, "float -> fp16: %d of 2M conversions differ from _Float16", bad16);
  CHECK(badbf == 0, "float -> bf16: %d of 2M conversions differ from the nearest-even reference", badbf);
  CHECK(__float2half_rn(65520.0f).bits == 0x7c00 && __float2half_rn(65519.0f).bits == 0x7bff,
        "fp16 overflow threshold");
}

/* ---- faults -------------------------------------------------------------------------------- */

__global__ void k_divergent_shuffle(float *out) {
  float v = (float)threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1); /* half the warp: undefined on a GPU */
  out[threadIdx.x] = v;
}
__global__ void k_early_exit_barrier(float *out) {
  if (threadIdx.x == 5) return;
  __syncthreads(); /* thread 5 never arrives */
  out[threadIdx.x] = 1.0f;
}
__global__ void k_block_sum(float *out, int n) {
  __shared__ float red[32];
  float v = threadIdx.x < (unsigned)n ? 1.0f : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (unsigned w = 0; w < blockDim.x / 32; w++) s += red[w];
    out[blockIdx.x] = s;
  }
}
__global__ void k_last_block_wins(float *out) {
  if (threadIdx.x == 0) out[0] = (float)blockIdx.x; /* every block writes one element: a race */
}
__global__ void k_missing_barrier(float *out) {
  __shared__ float s[64];
  s[threadIdx.x] = (float)threadIdx.x;
  /* no __syncthreads(): the neighbour's value may or may not be written yet */
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}
__global__ void k_add(float *x, float v, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += v;
}

static void test_faults() {
  float *d = nullptr;
  CHECK(cudaMalloc((void **)&d, 1024 * sizeof(float)) == cudaSuccess, "cudaMalloc");

  ssemu::launch("k_block_sum", ssemu::cfg_of(3, 256), k_block_sum, d, 200);
  CHECK(cudaGetLastError() == cudaSuccess, "a correct kernel runs");
  float h[3];
  CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess, "copy back");
  CHECK(h[0] == 200.0f && h[2] == 200.0f, "block sum %g %g", h[0], h[2]);

  ssemu::launch("k_divergent_shuffle", ssemu::cfg_of(1, 32), k_divergent_shuffle, d);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure, "a shuffle half a warp reaches is a fault");
  CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaErrorLaunchFailure, "faults are sticky");
  ssemu_reset();

  ssemu::launch("k_early_exit_barrier", ssemu::cfg_of(1, 64), k_early_exit_barrier, d);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure, "a barrier an exited thread never reaches is a fault");
  ssemu_reset();

  /* SSEMU_RACECHECK=1: order-dependent results are faults; a correct kernel passes */
  setenv("SSEMU_RACECHECK", "1", 1);
  ssemu::launch("k_block_sum", ssemu::cfg_of(3, 256), k_block_sum, d, 200);
  CHECK(cudaGetLastError() == cudaSuccess, "race check: a race-free kernel passes");
  ssemu::launch("k_last_block_wins", ssemu::cfg_of(4, 32), k_last_block_wins, d);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure, "race check: blocks writing one element is a fault");
  ssemu_reset();
  ssemu::launch("k_missing_barrier", ssemu::cfg_of(1, 64), k_missing_barrier, d);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure, "race check: a shared-memory read a barrier should order");
  ssemu_reset();
  unsetenv("SSEMU_RACECHECK");

  std::vector<float> host(16);
  ssemu::launch("k_add", ssemu::cfg_of(1, 32), k_add, host.data(), 1.0f, 16);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure, "a host pointer argument is a fault");
  ssemu_reset();

  ssemu::launch("k_add", ssemu::cfg_of(1, 2048), k_add, d, 1.0f, 16);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block is refused");
  ssemu::launch("k_add", ssemu::cfg_of(dim3(1, 70000), 32), k_add, d, 1.0f, 16);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "gridDim.y 70000 is refused");
  CHECK(cudaGetLastError() == cudaSuccess, "configuration errors are not sticky");

  CHECK(cudaMemcpy(h, d + 1023, 8, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue, "copy past the end");
  CHECK(cudaMemcpy(d, h, 8, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue, "copy in the wrong direction");
  cudaGetLastError();
  cudaFree(d);
}

/* ---- capture and graphs ------------------------------------------------------------------- */

static void test_graphs() {
  cudaStream_t st;
  CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess, "stream");
  float *d = nullptr, *src = nullptr;
  cudaMalloc((void **)&d, 64 * sizeof(float));
  cudaMalloc((void **)&src, 64 * sizeof(float));
  float zeros[64] = {0}, ones[64];
  for (float &v : ones) v = 1.0f;
  cudaMemcpy(d, zeros, sizeof zeros, cudaMemcpyHostToDevice);
  cudaMemcpy(src, ones, sizeof ones, cudaMemcpyHostToDevice);

  /* forbidden during capture: a synchronous copy invalidates it */
  CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
  CHECK(cudaMemcpy(d, zeros, 4, cudaMemcpyHostToDevice) == cudaErrorStreamCaptureUnsupported,
        "synchronous copy during capture is refused");
  cudaGraph_t g = nullptr;
  CHECK(cudaStreamEndCapture(st, &g) == cudaErrorStreamCaptureInvalidated && g == nullptr,
        "the capture is invalidated");
  cudaGetLastError();

  /* a graph: copy src -> d, then add `v` (an argument: frozen at capture) */
  float v = 2.0f;
  CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
  cudaMemcpyAsync(d, src, 64 * sizeof(float), cudaMemcpyDeviceToDevice, st);
  ssemu::launch("k_add", ssemu::cfg_of(2, 32, 0, st), k_add, d, v, 64);
  CHECK(cudaStreamEndCapture(st, &g) == cudaSuccess && g, "end capture");
  float h[64];
  cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  CHECK(h[0] == 0.0f, "nothing ran during capture (d[0] = %g)", h[0]);
  cudaGraphExec_t ex = nullptr;
  CHECK(cudaGraphInstantiate(&ex, g, 0) == cudaSuccess, "instantiate");
  v = 100.0f;
  for (float &x : ones) x = 5.0f;
  cudaMemcpy(src, ones, sizeof ones, cudaMemcpyHostToDevice); /* device data changes between launches */
  CHECK(cudaGraphLaunch(ex, st) == cudaSuccess && cudaStreamSynchronize(st) == cudaSuccess, "graph launch");
  cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  CHECK(h[0] == 7.0f && h[63] == 7.0f, "replay reads new memory, keeps captured arguments: %g", h[0]);
  cudaGraphExecDestroy(ex);
  cudaGraphDestroy(g);

  /* the legacy stream during a capture, and kernel launches into it */
  CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
  ssemu::launch("k_add", ssemu::cfg_of(1, 32, 0, nullptr), k_add, d, 1.0f, 8);
  CHECK(cudaGetLastError() == cudaErrorStreamCaptureImplicit, "legacy-stream launch during capture");
  CHECK(cudaStreamEndCapture(st, &g) == cudaErrorStreamCaptureInvalidated, "invalidated");
  cudaGetLastError();
  cudaFree(d);
  cudaFree(src);
  cudaStreamDestroy(st);
}

/* ---- matmuls ------------------------------------------------------------------------------ */

static void test_gemm_case(int dtype, int M, int N, int K, int accumulate, bool misalign) {
  std::vector<uint16_t> xh((size_t)M * K + 8), wh((size_t)N * K + 8);
  std::vector<float> xf(xh.size()), wf(wh.size());
  /* random values in [-1, 1] stored in dtype (h) and their exact value (f) */
  auto fill = [dtype](std::vector<uint16_t> &h, std::vector<float> &f) {
    for (size_t i = 0; i < h.size(); i++) {
      float v = ((int)(next_u32() % 2001) - 1000) / 1000.0f;
      h[i] = dtype == SSK_F16 ? __float2half_rn(v).bits : __float2bfloat16_rn(v).bits;
      f[i] = dtype == SSK_F16 ? __half2float(__half{h[i]}) : __bfloat162float(__nv_bfloat16{h[i]});
    }
  };
  fill(xh, xf);
  fill(wh, wf);
  const int o = misalign ? 1 : 0; /* one element off: 16-byte vector loads must not be used */
  uint16_t *dx, *dw;
  float *dy;
  cudaMalloc((void **)&dx, xh.size() * 2);
  cudaMalloc((void **)&dw, wh.size() * 2);
  cudaMalloc((void **)&dy, (size_t)M * N * sizeof(float));
  cudaMemcpy(dx, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dw, wh.data(), wh.size() * 2, cudaMemcpyHostToDevice);
  std::vector<float> y0((size_t)M * N);
  for (float &v : y0) v = (float)(next_u32() % 100) / 10.0f;
  cudaMemcpy(dy, y0.data(), y0.size() * sizeof(float), cudaMemcpyHostToDevice);
  int rc = ssk_gemm(dtype, dy, dx + o, dw + o, M, N, K, accumulate, nullptr);
  std::vector<float> y(y0.size());
  cudaMemcpy(y.data(), dy, y.size() * sizeof(float), cudaMemcpyDeviceToHost);
  double worst = 0;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double ref = accumulate ? y0[(size_t)m * N + n] : 0.0;
      double mag = 0;
      for (int k = 0; k < K; k++) {
        double p = (double)xf[(size_t)m * K + k + o] * wf[(size_t)n * K + k + o];
        ref += p;
        mag += fabs(p);
      }
      double err = fabs(y[(size_t)m * N + n] - ref) / (mag + 1e-3);
      if (err > worst) worst = err;
    }
  CHECK(rc == 0 && worst < 1e-5, "ssk_gemm %s M=%d N=%d K=%d acc=%d misaligned=%d: rc %d, worst rel err %.3g",
        dtype == SSK_F16 ? "f16" : "bf16", M, N, K, accumulate, misalign, rc, worst);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
}

static void test_gemm() {
  for (int dt : {SSK_F16, SSK_BF16}) {
    test_gemm_case(dt, 1, 70, 64, 0, false);   /* gemv, vector loads */
    test_gemm_case(dt, 5, 33, 40, 1, true);    /* gemv, scalar loads (misaligned), accumulate */
    test_gemm_case(dt, 8, 16, 13, 0, false);   /* gemv, K % 8 != 0 */
    test_gemm_case(dt, 37, 70, 72, 0, false);  /* wmma 32x64 tiles, ragged edges */
    test_gemm_case(dt, 40, 64, 50, 1, true);   /* wmma, scalar tile loads, accumulate */
    test_gemm_case(dt, 150, 130, 96, 0, false); /* wmma 128x128 tiles */
  }
}

int main() {
  test_conversions();
  test_faults();
  test_graphs();
  test_gemm();
  return test_summary("test_cuda_emu");
}
