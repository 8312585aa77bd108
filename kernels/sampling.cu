/* sampling.cu — next-token sampling on the device, one block per row of logits.
 *
 * temperature <= 0: argmax (lowest index among equal maxima).
 * Otherwise p_i ~ exp((l_i - max) / temperature), restricted to the top_k largest logits
 * (top_k <= 0 or >= vocab: all), then to the smallest set of the largest remaining
 * probabilities whose renormalised mass reaches top_p (top_p >= 1: all). Both cut-offs are
 * found as exact thresholds on the logits by bisection over their order-preserving integer
 * keys (32 block-wide reductions each, no sort), so ties at a threshold are all kept. The token
 * is the inverse CDF of the kept mass at u * total, walking token ids in increasing order.
 * With a token mask (a row of SS_MASK_WORDS(vocab) words per row of logits, bit t % 32 of word
 * t / 32 = token t allowed) every step above sees the allowed tokens only: a forbidden token is
 * never the argmax, never counted by top_k / top_p and has no mass; a row allowing nothing gives -1.
 *
 * The engine samples on the host (same RNG stream as the CPU backend, see docs/decisions.md,
 * "CUDA sampling"); these kernels serve device-side pipelines, tests and benchmarks. */
#include <math.h>

#include "common.cuh"

#define SMP_THREADS 1024

/* float -> uint32 with the same order (for finite values and +-inf) */
__device__ __forceinline__ uint32_t smp_key(float f) {
  uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float smp_block_sum(float v, float *red) {
  __syncthreads();
  v = ssk_warp_sum(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = (threadIdx.x & 31) < (blockDim.x >> 5) ? red[threadIdx.x & 31] : 0.0f;
  return ssk_warp_sum(v);
}

/* whether row mask m (NULL: no mask) allows token i */
__device__ __forceinline__ bool smp_ok(const uint32_t *__restrict__ m, int i) {
  return !m || ((m[i >> 5] >> (i & 31)) & 1u);
}

__global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(const float *__restrict__ logits, int vocab, const ssk_sample_params *__restrict__ params,
                  const uint32_t *__restrict__ masks, int32_t *__restrict__ out) {
  __shared__ float red[32];
  __shared__ unsigned long long best;
  __shared__ float scan[SMP_THREADS];
  __shared__ int pick;
  const int row = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
  const float *lg = logits + (size_t)row * vocab;
  const ssk_sample_params p = params[row];
  const uint32_t *m = masks ? masks + (size_t)row * ((vocab + 31) / 32) : NULL;

  /* argmax: pack (key, ~index) so that max picks the largest value, then the lowest index */
  if (tid == 0) best = 0ull;
  __syncthreads();
  unsigned long long mine = 0ull;
  for (int i = tid; i < vocab; i += nt) {
    if (!smp_ok(m, i)) continue;
    unsigned long long k = ((unsigned long long)smp_key(lg[i]) << 32) | (unsigned long long)(0xffffffffu - (uint32_t)i);
    if (k > mine) mine = k;
  }
  atomicMax(&best, mine);
  __syncthreads();
  if (best == 0ull) { /* the mask allows nothing (every allowed key is > 0) */
    if (tid == 0) out[row] = -1;
    return;
  }
  const int amax = (int)(0xffffffffu - (uint32_t)(best & 0xffffffffull));
  if (!(p.temperature > 0.0f)) {
    if (tid == 0) out[row] = amax;
    return;
  }
  const float mx = lg[amax];
  const float invt = 1.0f / p.temperature;

  /* top-k: the largest key x with count(key >= x) >= k */
  uint32_t kth = 0u; /* keep everything */
  if (p.top_k > 0 && p.top_k < vocab) {
    uint32_t lo = 0u, hi = 0xffffffffu; /* invariant: count(>= lo) >= k */
    while (lo < hi) {
      uint32_t mid = lo + (uint32_t)(((uint64_t)hi - lo + 1) / 2); /* 64-bit: hi - lo + 1 can be 2^32 */
      float c = 0.0f;
      for (int i = tid; i < vocab; i += nt) c += smp_ok(m, i) && smp_key(lg[i]) >= mid ? 1.0f : 0.0f;
      c = smp_block_sum(c, red);
      if (c >= (float)p.top_k) lo = mid; else hi = mid - 1;
    }
    kth = lo;
  }
  float z = 0.0f;
  for (int i = tid; i < vocab; i += nt)
    if (smp_ok(m, i) && smp_key(lg[i]) >= kth) z += expf((lg[i] - mx) * invt);
  z = smp_block_sum(z, red);

  /* top-p: the largest key x >= kth with mass(key >= x) >= top_p * z */
  uint32_t thr = kth;
  if (p.top_p < 1.0f) {
    const float target = p.top_p * z;
    uint32_t lo = kth, hi = 0xffffffffu;
    while (lo < hi) {
      uint32_t mid = lo + (uint32_t)(((uint64_t)hi - lo + 1) / 2); /* 64-bit: hi - lo + 1 can be 2^32 */
      float s = 0.0f;
      for (int i = tid; i < vocab; i += nt)
        if (smp_ok(m, i) && smp_key(lg[i]) >= mid) s += expf((lg[i] - mx) * invt);
      s = smp_block_sum(s, red);
      if (s >= target) lo = mid; else hi = mid - 1;
    }
    thr = lo;
  }

  /* inverse CDF in token order: each thread owns a contiguous range */
  const int per = (vocab + nt - 1) / nt;
  const int b = tid * per, e = min(vocab, b + per);
  float mass = 0.0f;
  for (int i = b; i < e; i++)
    if (smp_ok(m, i) && smp_key(lg[i]) >= thr) mass += expf((lg[i] - mx) * invt);
  scan[tid] = mass;
  if (tid == 0) pick = amax; /* fallback when rounding leaves the target past the end */
  __syncthreads();
  for (int off = 1; off < nt; off <<= 1) { /* inclusive Hillis-Steele scan */
    float v = tid >= off ? scan[tid - off] : 0.0f;
    __syncthreads();
    scan[tid] += v;
    __syncthreads();
  }
  const float total = scan[nt - 1];
  const float target = p.u * total;
  const float before = tid > 0 ? scan[tid - 1] : 0.0f;
  if (mass > 0.0f && target >= before && target < scan[tid]) {
    float acc = before;
    int chosen = -1;
    for (int i = b; i < e; i++) {
      if (!smp_ok(m, i) || smp_key(lg[i]) < thr) continue;
      chosen = i;
      acc += expf((lg[i] - mx) * invt);
      if (target < acc) break;
    }
    if (chosen >= 0) pick = chosen;
  }
  __syncthreads();
  if (tid == 0) out[row] = pick;
}

extern "C" int ssk_sample(const float *logits, int rows, int vocab, const ssk_sample_params *params,
                          const uint32_t *masks, int32_t *out, cudaStream_t st) {
  if (rows <= 0) return 0;
  sample_kernel<<<rows, SMP_THREADS, 0, st>>>(logits, vocab, params, masks, out);
  return ssk_launch_status();
}
