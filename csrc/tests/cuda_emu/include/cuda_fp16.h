/* cuda_fp16.h — the CUDA emulator's IEEE binary16 type: storage plus the conversions the
 * kernels use, rounded to nearest even exactly as the device does (subnormals, overflow to
 * infinity, NaN kept). */
#ifndef SSEMU_CUDA_FP16_H
#define SSEMU_CUDA_FP16_H

#include <stdint.h>
#include <string.h>

#include "cuda_runtime.h"

struct __half {
  uint16_t bits;
};
struct __half2 {
  __half x, y;
};

inline float __half2float(__half h) {
  uint32_t s = (uint32_t)(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu, u;
  if (e == 0x1f) {
    u = s | 0x7f800000u | (m << 13); /* inf / NaN */
  } else if (e != 0) {
    u = s | ((e + 112u) << 23) | (m << 13);
  } else if (m == 0) {
    u = s;
  } else { /* subnormal: normalise */
    int sh = 0;
    while (!(m & 0x400u)) {
      m <<= 1;
      sh++;
    }
    u = s | ((uint32_t)(113 - sh) << 23) | ((m & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

inline __half __float2half_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  uint16_t s = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  __half h;
  if (a >= 0x7f800000u) { /* inf / NaN */
    h.bits = (uint16_t)(s | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    return h;
  }
  if (a >= 0x477ff000u) { /* rounds to >= 65520: infinity */
    h.bits = (uint16_t)(s | 0x7c00u);
    return h;
  }
  if (a < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
    if (a < 0x33000000u) { /* < 2^-25: rounds to zero */
      h.bits = s;
      return h;
    }
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* value = m * 2^(e-150); half subnormal unit 2^-24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) q++;
    h.bits = (uint16_t)(s | q);
    return h;
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* round to nearest even on bit 13 */
  h.bits = (uint16_t)(s | (((r >> 23) - 112u) << 10) | ((r >> 13) & 0x3ffu));
  return h;
}
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
#endif
