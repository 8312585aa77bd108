/*
 * emu_runtime.cc — the CUDA emulator's runtime API (README.md here): errors, the device, memory,
 * streams, capture, graphs and events. Kernels run in emu_scheduler.cc.
 *
 * - Device memory is host memory from the emulator's own allocator (registered ranges, filled
 *   with 0xff bytes, a NaN in fp32/fp16/bf16, so reading memory nobody wrote shows up in the
 *   results). Copies check direction and bounds against the registered ranges. SSEMU_MEM_LIMIT
 *   sets the device memory in bytes, SSEMU_SMS the reported multiprocessor count (default 132,
 *   an H100 SXM).
 * - Streams are synchronous: an operation runs when it is enqueued, unless the stream is being
 *   captured, in which case it is recorded into the graph (kernel arguments by value, as CUDA
 *   records them) and runs at every cudaGraphLaunch. Calls that CUDA forbids during capture
 *   (synchronous copies, allocation, synchronisation, the legacy stream) fail and invalidate
 *   the capture as they do on the device.
 * - A device fault (emu_scheduler.cc) is sticky: every later call returns it, as from a broken
 *   context, until ssemu_reset().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>

#include "emu_internal.h"

using namespace ssemu_rt;

/* ---- errors ------------------------------------------------------------------------------- */

static thread_local cudaError_t last_error = cudaSuccess;
cudaError_t ssemu_rt::sticky_error = cudaSuccess;

cudaError_t ssemu_rt::fail(cudaError_t e) {
  last_error = e;
  return e;
}
/* every API call returns the sticky error once a kernel has faulted, as a broken context does */
#define STICKY_CHECK()                                \
  do {                                                \
    if (sticky_error != cudaSuccess) return fail(sticky_error); \
  } while (0)

void ssemu_rt::fault(const std::string &msg) {
  if (sticky_error == cudaSuccess) {
    sticky_error = cudaErrorLaunchFailure;
    fprintf(stderr, "cuda emulator: device fault: %s\n", msg.c_str());
  }
  last_error = cudaErrorLaunchFailure;
}

extern "C" const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    default: return "cudaErrorUnknown";
  }
}
extern "C" const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator fault, see stderr)";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return cudaGetErrorName(e);
  }
}
extern "C" cudaError_t cudaGetLastError(void) {
  cudaError_t e = last_error;
  last_error = sticky_error;
  return e;
}
extern "C" cudaError_t cudaPeekAtLastError(void) { return last_error; }
extern "C" cudaError_t cudaDriverGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
extern "C" cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}

/* ---- device ------------------------------------------------------------------------------- */

std::recursive_mutex ssemu_rt::api_mu; /* one host thread in the emulator at a time */

int ssemu_rt::env_int(const char *name, long long dflt, long long lo, long long hi) {
  const char *s = getenv(name);
  if (!s || !*s) return (int)dflt;
  long long v = atoll(s);
  return (int)(v < lo ? lo : v > hi ? hi : v);
}

extern "C" cudaError_t cudaGetDeviceCount(int *n) {
  *n = 1;
  return cudaSuccess;
}
extern "C" cudaError_t cudaSetDevice(int d) {
  STICKY_CHECK();
  return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}
extern "C" cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}

std::map<uintptr_t, ssemu_rt::alloc_info> ssemu_rt::allocs; /* start -> info */
static size_t bytes_live = 0; /* device bytes allocated, as rounded */
ssemu_stats ssemu_rt::stats;

static size_t mem_limit(void) {
  const char *s = getenv("SSEMU_MEM_LIMIT");
  return s && *s ? (size_t)strtoull(s, nullptr, 10) : (size_t)80 << 30;
}

extern "C" cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "sinkstream CUDA emulator (CPU)");
  p->totalGlobalMem = mem_limit();
  p->sharedMemPerBlock = 48 << 10;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = env_int("SSEMU_SMS", 132, 1, 1024);
  p->memoryBusWidth = 5120;
  p->l2CacheSize = 50 << 20;
  return cudaSuccess;
}

/* The allocation that holds [p, p + n), or nullptr. */
static const std::pair<const uintptr_t, alloc_info> *find_alloc(const void *p, size_t n) {
  uintptr_t a = (uintptr_t)p;
  auto it = allocs.upper_bound(a);
  if (it == allocs.begin()) return nullptr;
  --it;
  if (a - it->first + n > it->second.size || a < it->first) return nullptr;
  return &*it;
}

bool ssemu::pointer_ok(const void *p) {
  if (!p) return true;
  return find_alloc(p, 0) != nullptr;
}

/* allocations are 256-byte aligned and sized, as cudaMalloc's */
static size_t rounded(size_t size) { return size ? (size + 255) & ~(size_t)255 : 256; }

static cudaError_t do_alloc(void **ptr, size_t size, bool pinned) {
  if (!ptr) return fail(cudaErrorInvalidValue);
  *ptr = nullptr;
  size_t r = rounded(size);
  if (!pinned && bytes_live + r > mem_limit()) return fail(cudaErrorMemoryAllocation);
  void *p = aligned_alloc(256, r);
  if (!p) return fail(cudaErrorMemoryAllocation);
  memset(p, 0xff, r); /* NaN in every float format: reads of unwritten memory show */
  allocs[(uintptr_t)p] = alloc_info{size, pinned};
  if (!pinned) bytes_live += r;
  *ptr = p;
  return cudaSuccess;
}

static cudaError_t do_free(void *p, bool pinned) {
  if (!p) return cudaSuccess;
  auto it = allocs.find((uintptr_t)p);
  if (it == allocs.end() || it->second.pinned != pinned) return fail(cudaErrorInvalidValue);
  if (!pinned) bytes_live -= rounded(it->second.size);
  allocs.erase(it);
  free(p);
  return cudaSuccess;
}

/* ---- streams, capture, graphs --------------------------------------------------------------- */

/* a graph is the operations captured, in order (one stream: no dependencies to keep) */
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};
/* flags and capture modes are accepted and not modelled: every stream is synchronous, and a
 * capture refuses the calls of the strictest mode */
struct CUstream_st {
  enum cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUgraph_st *graph = nullptr;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
  bool recorded = false;
};

static CUstream_st legacy_stream;
static std::vector<CUstream_st *> streams;

static CUstream_st *stream_of(cudaStream_t s) { return s ? s : &legacy_stream; }

/* A stream of this process that is capturing (capture from other threads is not modelled). */
static CUstream_st *capturing_stream(void) {
  for (CUstream_st *s : streams)
    if (s->capture != cudaStreamCaptureStatusNone) return s;
  return nullptr;
}

void ssemu_rt::invalidate_capture(void) {
  if (CUstream_st *s = capturing_stream()) s->capture = cudaStreamCaptureStatusInvalidated;
}

/* A call CUDA does not allow while a capture is active: it fails and invalidates the capture. */
static bool refuse_during_capture(void) {
  if (!capturing_stream()) return false;
  invalidate_capture();
  fail(cudaErrorStreamCaptureUnsupported);
  return true;
}

/* Run an operation now, or record it when its stream is capturing. */
cudaError_t ssemu_rt::enqueue(cudaStream_t st, std::function<void()> run) {
  CUstream_st *s = stream_of(st);
  if (!st && capturing_stream()) { /* legacy stream while a capture is active */
    invalidate_capture();
    return fail(cudaErrorStreamCaptureImplicit);
  }
  if (s->capture == cudaStreamCaptureStatusActive) {
    s->graph->ops.push_back(std::move(run));
    return cudaSuccess;
  }
  if (s->capture == cudaStreamCaptureStatusInvalidated) return fail(cudaErrorStreamCaptureInvalidated);
  run();
  return sticky_error != cudaSuccess ? fail(sticky_error) : cudaSuccess;
}

extern "C" cudaError_t cudaStreamCreateWithFlags(cudaStream_t *st, unsigned int flags) {
  LOCK();
  STICKY_CHECK();
  CUstream_st *s = new CUstream_st();
  streams.push_back(s);
  *st = s;
  return cudaSuccess;
}
extern "C" cudaError_t cudaStreamCreate(cudaStream_t *st) { return cudaStreamCreateWithFlags(st, 0); }
extern "C" cudaError_t cudaStreamDestroy(cudaStream_t st) {
  LOCK();
  auto it = std::find(streams.begin(), streams.end(), st);
  if (!st || it == streams.end()) return fail(cudaErrorInvalidResourceHandle);
  streams.erase(it);
  delete st->graph;
  delete st;
  return cudaSuccess;
}
extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t st) {
  LOCK();
  if (refuse_during_capture()) return cudaErrorStreamCaptureUnsupported;
  STICKY_CHECK();
  return cudaSuccess;
}
extern "C" cudaError_t cudaDeviceSynchronize(void) { return cudaStreamSynchronize(nullptr); }

extern "C" cudaError_t cudaStreamBeginCapture(cudaStream_t st, enum cudaStreamCaptureMode mode) {
  LOCK();
  STICKY_CHECK();
  if (!st) return fail(cudaErrorStreamCaptureUnsupported); /* the legacy stream cannot be captured */
  if (st->capture != cudaStreamCaptureStatusNone) return fail(cudaErrorIllegalState);
  st->capture = cudaStreamCaptureStatusActive;
  st->graph = new CUgraph_st();
  return cudaSuccess;
}
extern "C" cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t *graph) {
  LOCK();
  *graph = nullptr;
  if (!st || st->capture == cudaStreamCaptureStatusNone) return fail(cudaErrorIllegalState);
  bool ok = st->capture == cudaStreamCaptureStatusActive;
  st->capture = cudaStreamCaptureStatusNone;
  if (!ok) {
    delete st->graph;
    st->graph = nullptr;
    return fail(cudaErrorStreamCaptureInvalidated);
  }
  *graph = st->graph;
  st->graph = nullptr;
  return cudaSuccess;
}
extern "C" cudaError_t cudaStreamIsCapturing(cudaStream_t st, enum cudaStreamCaptureStatus *status) {
  *status = stream_of(st)->capture;
  return cudaSuccess;
}
extern "C" cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long flags) {
  LOCK();
  STICKY_CHECK();
  if (!g) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{g->ops};
  return cudaSuccess;
}
extern "C" cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long f) {
  return cudaGraphInstantiate(exec, g, f);
}
extern "C" cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t st) {
  LOCK();
  STICKY_CHECK();
  if (!exec) return fail(cudaErrorInvalidResourceHandle);
  CUstream_st *s = stream_of(st);
  if (s->capture != cudaStreamCaptureStatusNone) return fail(cudaErrorStreamCaptureUnsupported);
  stats.graph_launches++;
  for (const auto &run : exec->ops) {
    run();
    if (sticky_error != cudaSuccess) return fail(sticky_error);
  }
  return cudaSuccess;
}
extern "C" cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
extern "C" cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}

extern "C" cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = new CUevent_st();
  return cudaSuccess;
}
extern "C" cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
extern "C" cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t st) {
  LOCK();
  STICKY_CHECK();
  if (!e) return fail(cudaErrorInvalidResourceHandle);
  return enqueue(st, [e]() {
    e->t = std::chrono::steady_clock::now();
    e->recorded = true;
  });
}
extern "C" cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  STICKY_CHECK();
  return e ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
extern "C" cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a || !b || !a->recorded || !b->recorded) return fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}

/* ---- memory ------------------------------------------------------------------------------- */

extern "C" cudaError_t cudaMalloc(void **p, size_t n) {
  LOCK();
  if (refuse_during_capture()) return cudaErrorStreamCaptureUnsupported;
  STICKY_CHECK();
  return do_alloc(p, n, false);
}
extern "C" cudaError_t cudaFree(void *p) {
  LOCK();
  if (refuse_during_capture()) return cudaErrorStreamCaptureUnsupported;
  return do_free(p, false);
}
extern "C" cudaError_t cudaMallocHost(void **p, size_t n) {
  LOCK();
  STICKY_CHECK();
  return do_alloc(p, n, true);
}
extern "C" cudaError_t cudaFreeHost(void *p) {
  LOCK();
  return do_free(p, true);
}
extern "C" cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total) {
  *total = mem_limit();
  *free_b = *total - bytes_live;
  return cudaSuccess;
}

/* Direction and bounds of a copy: device sides inside one device allocation, host sides not
 * device memory (pinned host memory counts as host). */
static bool copy_ok(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
  auto dev = [&](const void *p) {
    auto a = find_alloc(p, n);
    return a && !a->second.pinned;
  };
  auto host = [&](const void *p) {
    auto a = find_alloc(p, 0);
    return !a || (a->second.pinned && find_alloc(p, n));
  };
  switch (kind) {
    case cudaMemcpyHostToDevice: return dev(dst) && host(src);
    case cudaMemcpyDeviceToHost: return host(dst) && dev(src);
    case cudaMemcpyDeviceToDevice: return dev(dst) && dev(src);
    case cudaMemcpyHostToHost: return host(dst) && host(src);
    case cudaMemcpyDefault: return (dev(dst) || host(dst)) && (dev(src) || host(src));
  }
  return false;
}

static cudaError_t copy_async(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t st,
                              bool sync) {
  LOCK();
  if (sync && refuse_during_capture()) return cudaErrorStreamCaptureUnsupported;
  STICKY_CHECK();
  if (n == 0) return cudaSuccess;
  if (!dst || !src || !copy_ok(dst, src, n, kind)) return fail(cudaErrorInvalidValue);
  return enqueue(st, [dst, src, n]() { memmove(dst, src, n); });
}
extern "C" cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
  return copy_async(dst, src, n, kind, nullptr, true);
}
extern "C" cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
                                       cudaStream_t st) {
  return copy_async(dst, src, n, kind, st, false);
}
extern "C" cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                         size_t height, enum cudaMemcpyKind kind, cudaStream_t st) {
  LOCK();
  STICKY_CHECK();
  if (height == 0 || width == 0) return cudaSuccess;
  if (width > dpitch || width > spitch) return fail(cudaErrorInvalidValue);
  size_t dspan = dpitch * (height - 1) + width, sspan = spitch * (height - 1) + width;
  if (!copy_ok(dst, src, 0, kind) || !find_alloc(dst, dspan) || !find_alloc(src, sspan))
    return fail(cudaErrorInvalidValue);
  return enqueue(st, [=]() {
    for (size_t r = 0; r < height; r++) memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
  });
}
static cudaError_t memset_async(void *p, int v, size_t n, cudaStream_t st, bool sync) {
  LOCK();
  if (sync && refuse_during_capture()) return cudaErrorStreamCaptureUnsupported;
  STICKY_CHECK();
  if (n == 0) return cudaSuccess;
  auto a = find_alloc(p, n);
  if (!a || a->second.pinned) return fail(cudaErrorInvalidValue);
  return enqueue(st, [=]() { memset(p, v, n); });
}
extern "C" cudaError_t cudaMemset(void *p, int v, size_t n) { return memset_async(p, v, n, nullptr, true); }
extern "C" cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st) {
  return memset_async(p, v, n, st, false);
}

/* Emulator only: clear a fault (tests of the fault paths go on afterwards), like a context reset. */
extern "C" void ssemu_reset(void) {
  LOCK();
  sticky_error = cudaSuccess;
  last_error = cudaSuccess;
}

extern "C" void ssemu_get_stats(ssemu_stats *out) {
  LOCK();
  *out = stats;
}

