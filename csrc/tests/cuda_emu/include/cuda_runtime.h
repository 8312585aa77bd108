/* cuda_runtime.h — the CUDA emulator's device-side language layer (C++ only) plus the runtime
 * API. Kernels written for nvcc compile with g++ against this header after the `<<<...>>>`
 * launches are rewritten into ssemu::launch(...) calls (rewrite_launches.py). */
#ifndef SSEMU_CUDA_RUNTIME_H
#define SSEMU_CUDA_RUNTIME_H

#include "cuda_runtime_api.h"

#ifdef __cplusplus
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};
struct float2 {
  float x, y;
};
/* 16-byte alignment as on the device: UBSan's alignment check then flags misaligned vector
 * loads, which fault on a GPU */
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};

/* thread / block coordinates of the emulated thread that is running (set by the scheduler) */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

namespace ssemu {
/* collective points of a thread: they switch to the next emulated thread until every thread
 * of the warp / block has arrived (emu_scheduler.cc) */
void sync_block();
void sync_warp(unsigned mask);
unsigned long long shfl_xor_bits(unsigned mask, unsigned long long bits, int lane_mask);
int lane_id();

struct launch_cfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};
inline launch_cfg cfg_of(dim3 g, dim3 b, size_t smem = 0, cudaStream_t st = nullptr) { return {g, b, smem, st}; }

/* checks a pointer argument of a launch: NULL, device memory or pinned host memory */
bool pointer_ok(const void *p);
/* runs (or, under stream capture, records) a kernel: body() is called once per thread */
void submit(const char *name, const launch_cfg &cfg, std::function<void()> body, int bad_arg);

template <typename T> inline int first_bad_pointer(int, const T &) { return -1; }
template <typename T> inline int first_bad_pointer(int i, T *const &p) { return pointer_ok(p) ? -1 : i; }

template <typename... P, typename... A> void launch(const char *name, launch_cfg cfg, void (*k)(P...), A &&...a) {
  std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...); /* by value, converted as a call would */
  int bad = -1;
  std::apply(
      [&](const auto &...v) {
        int i = 0;
        ((bad = bad >= 0 ? bad : first_bad_pointer(i, v), i++), ...);
      },
      args);
  submit(name, cfg, [k, args]() { std::apply(k, args); }, bad);
}
} // namespace ssemu

inline void __syncthreads() { ssemu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ssemu::sync_warp(mask); }

template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a register value");
  unsigned long long b = 0;
  memcpy(&b, &v, sizeof v);
  b = ssemu::shfl_xor_bits(mask, b, lane_mask);
  T r;
  memcpy(&r, &b, sizeof r);
  return r;
}

template <typename T> inline T __ldg(const T *p) { return *p; }
template <typename T> inline T __ldcs(const T *p) { return *p; }
inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  memcpy(&u, &f, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned int u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
/* the emulator runs one thread at a time: atomics are plain read-modify-write */
inline unsigned long long atomicMax(unsigned long long *p, unsigned long long v) {
  unsigned long long o = *p;
  if (v > o) *p = v;
  return o;
}
inline int atomicAdd(int *p, int v) {
  int o = *p;
  *p = o + v;
  return o;
}
inline float atomicAdd(float *p, float v) {
  float o = *p;
  *p = o + v;
  return o;
}
#endif /* __cplusplus */
#endif
