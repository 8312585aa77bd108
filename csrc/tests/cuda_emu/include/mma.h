/* mma.h — the CUDA emulator's warp matrix (wmma) API, 16x16x16 shapes only.
 *
 * A fragment is warp-collective: on the device its elements are spread over the 32 lanes. Here
 * every lane holds a whole 16x16 tile, and only lane 0 of the warp loads, multiplies and stores
 * (the other lanes' calls do nothing), so a warp's result is computed once, in fp32 with the
 * inputs converted exactly. The kernels must still order these calls with __syncwarp /
 * __syncthreads as on the device: the emulator adds no synchronisation of its own. */
#ifndef SSEMU_MMA_H
#define SSEMU_MMA_H

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator supports 16x16x16 fragments");
  float v[16 * 16]; /* [row][col] of the tile, fp32 */
};

inline float ssemu_to_f(__half h) { return __half2float(h); }
inline float ssemu_to_f(__nv_bfloat16 h) { return __bfloat162float(h); }
inline float ssemu_to_f(float f) { return f; }

template <typename Use, typename T, typename L>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float value) {
  if (ssemu::lane_id() != 0) return;
  for (int i = 0; i < 256; i++) f.v[i] = value;
}

/* matrix_a row_major: element (r, k) at p[r * ldm + k]; col_major: p[k * ldm + r]
 * matrix_b row_major: element (k, c) at p[k * ldm + c]; col_major: p[c * ldm + k] */
template <typename Use, typename T, typename L, typename E>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const E *p, unsigned ldm) {
  if (ssemu::lane_id() != 0) return;
  constexpr bool row = std::is_same<L, row_major>::value;
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) f.v[i * 16 + j] = ssemu_to_f(row ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i]);
}

template <typename Ta, typename La, typename Tb, typename Lb>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, Ta, La> &a,
                     const fragment<matrix_b, 16, 16, 16, Tb, Lb> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c) {
  if (ssemu::lane_id() != 0) return;
  float out[256];
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      float s = c.v[i * 16 + j];
      for (int k = 0; k < 16; k++) s = fmaf(a.v[i * 16 + k], b.v[k * 16 + j], s);
      out[i * 16 + j] = s;
    }
  memcpy(d.v, out, sizeof out);
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                              layout_t layout) {
  if (ssemu::lane_id() != 0) return;
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      if (layout == mem_row_major) p[(size_t)i * ldm + j] = f.v[i * 16 + j];
      else p[(size_t)j * ldm + i] = f.v[i * 16 + j];
    }
}
} // namespace wmma
} // namespace nvcuda
#endif
