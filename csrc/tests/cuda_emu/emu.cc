/*
 * emu.cc — a CUDA emulator for the CPU: runs the backend's kernels, unchanged, one emulated
 * GPU thread at a time, so the CUDA backend can be tested where no GPU is (README.md here).
 *
 * Model
 * - Device memory is host memory from the emulator's own allocator (registered ranges, filled
 *   with 0xff bytes, a NaN in fp32/fp16/bf16, so reading memory nobody wrote shows up in the
 *   results). Copies check direction and bounds against the registered ranges.
 * - Streams are synchronous: an operation runs when it is enqueued, unless the stream is being
 *   captured, in which case it is recorded into the graph (kernel arguments by value, as CUDA
 *   records them) and runs at every cudaGraphLaunch. Calls that CUDA forbids during capture
 *   (synchronous copies, allocation, synchronisation, the legacy stream) fail and invalidate
 *   the capture as they do on the device.
 * - A kernel launch checks its configuration (cudaErrorInvalidConfiguration as the device
 *   would) and that every pointer argument is device (or pinned host) memory. Each block runs
 *   its threads as fibers on private stacks; a thread runs until it reaches __syncthreads, a
 *   warp shuffle or __syncwarp, and the next thread runs. A barrier completes when every thread
 *   of the block (or lane of the warp) has reached it; lanes of one warp that reach different
 *   collectives, or barriers that exited threads can never complete, stop the launch with a
 *   fault: a sticky cudaErrorLaunchFailure and a message on stderr, like a device-side trap.
 * - SSEMU_ORDER=reverse runs blocks and the threads of a block in reverse order (a missing
 *   barrier shows up as a wrong result in one of the two orders). SSEMU_SMS sets the reported
 *   multiprocessor count (default 132, an H100 SXM), SSEMU_MEM_LIMIT the device memory in bytes,
 *   SSEMU_RACECHECK=1 runs every launch in both orders and faults when the results differ.
 *
 * Not modelled: timing, concurrency between streams, the memory model (threads never run at
 * the same time: a race shows only as an order dependence, see SSEMU_RACECHECK), shared-memory
 * size limits, register limits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SSEMU_ASAN 1
#else
#define SSEMU_ASAN 0
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

/* ---- errors ------------------------------------------------------------------------------- */

static thread_local cudaError_t last_error = cudaSuccess;
static cudaError_t sticky_error = cudaSuccess;
static std::string fault_message;

static cudaError_t fail(cudaError_t e) {
  last_error = e;
  return e;
}
/* every API call returns the sticky error once a kernel has faulted, as a broken context does */
#define STICKY_CHECK()                                \
  do {                                                \
    if (sticky_error != cudaSuccess) return fail(sticky_error); \
  } while (0)

static void fault(const std::string &msg) {
  if (sticky_error == cudaSuccess) {
    sticky_error = cudaErrorLaunchFailure;
    fault_message = msg;
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

static std::recursive_mutex api_mu; /* one host thread in the emulator at a time */
#define LOCK() std::lock_guard<std::recursive_mutex> lock_(api_mu)

static int env_int(const char *name, long long dflt, long long lo, long long hi) {
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

struct alloc_info {
  size_t size;
  bool pinned;
};
static std::map<uintptr_t, alloc_info> allocs; /* start -> info */
static size_t bytes_live = 0, bytes_peak = 0;
static ssemu_stats stats;

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

static cudaError_t do_alloc(void **ptr, size_t size, bool pinned) {
  if (!ptr) return fail(cudaErrorInvalidValue);
  *ptr = nullptr;
  size_t rounded = (size + 255) & ~(size_t)255;
  if (!pinned && bytes_live + rounded > mem_limit()) return fail(cudaErrorMemoryAllocation);
  void *p = aligned_alloc(256, rounded ? rounded : 256);
  if (!p) return fail(cudaErrorMemoryAllocation);
  memset(p, 0xff, rounded ? rounded : 256); /* NaN in every float format: reads of unwritten memory show */
  allocs[(uintptr_t)p] = alloc_info{size, pinned};
  if (!pinned) {
    bytes_live += rounded;
    bytes_peak = std::max(bytes_peak, bytes_live);
  }
  *ptr = p;
  return cudaSuccess;
}

static cudaError_t do_free(void *p, bool pinned) {
  if (!p) return cudaSuccess;
  auto it = allocs.find((uintptr_t)p);
  if (it == allocs.end() || it->second.pinned != pinned) return fail(cudaErrorInvalidValue);
  if (!pinned) bytes_live -= (it->second.size + 255) & ~(size_t)255;
  allocs.erase(it);
  free(p);
  return cudaSuccess;
}

/* ---- streams, capture, graphs --------------------------------------------------------------- */

struct op {
  std::string what;
  std::function<void()> run;
};

struct CUgraph_st {
  std::vector<op> ops;
};
struct CUgraphExec_st {
  std::vector<op> ops;
};
struct CUstream_st {
  unsigned flags = 0;
  enum cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  enum cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
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

/* A call CUDA does not allow while a capture is active: it fails and invalidates the capture. */
static bool refuse_during_capture(void) {
  CUstream_st *s = capturing_stream();
  if (!s) return false;
  s->capture = cudaStreamCaptureStatusInvalidated;
  fail(cudaErrorStreamCaptureUnsupported);
  return true;
}

/* Run an operation now, or record it when its stream is capturing. */
static cudaError_t enqueue(cudaStream_t st, const char *what, std::function<void()> run) {
  CUstream_st *s = stream_of(st);
  if (!st && capturing_stream()) { /* legacy stream while a capture is active */
    capturing_stream()->capture = cudaStreamCaptureStatusInvalidated;
    return fail(cudaErrorStreamCaptureImplicit);
  }
  if (s->capture == cudaStreamCaptureStatusActive) {
    s->graph->ops.push_back(op{what, std::move(run)});
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
  s->flags = flags;
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
  st->mode = mode;
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
  for (const op &o : exec->ops) {
    o.run();
    stats.graph_ops_replayed++;
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
  return enqueue(st, "event record", [e]() {
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
  return enqueue(st, "memcpy", [dst, src, n]() { memmove(dst, src, n); });
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
  return enqueue(st, "memcpy2d", [=]() {
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
  return enqueue(st, "memset", [=]() { memset(p, v, n); });
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
  fault_message.clear();
}

extern "C" void ssemu_get_stats(ssemu_stats *out) {
  LOCK();
  *out = stats;
  out->bytes_allocated_peak = bytes_peak;
}

/* ---- fibers ------------------------------------------------------------------------------- */

/* ssemu_ctx_switch(&save_sp, next_sp): saves the callee-saved registers on the current stack,
 * stores its stack pointer in *save_sp, and resumes the context whose stack pointer is next_sp. */
extern "C" void ssemu_ctx_switch(void **save_sp, void *next_sp);
asm(R"(
  .text
  .globl ssemu_ctx_switch
  .type ssemu_ctx_switch,@function
ssemu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ssemu_ctx_switch, .-ssemu_ctx_switch
)");

namespace {

enum fiber_state { F_RUN, F_WAIT_WARP, F_WAIT_BLOCK, F_DONE };
constexpr size_t STACK_BYTES = (size_t)256 << 10;

struct fiber {
  void *sp = nullptr;
  char *stack = nullptr; /* lowest address, a guard page first */
  uint3 tid{0, 0, 0};
  int lane = 0, warp = 0;
  fiber_state state = F_DONE;
  const char *waiting_at = "";
  unsigned shfl_seq = 0;
  void *asan_fake = nullptr;
};

struct warp_state {
  int size = 0, arrived = 0;
  const char *kind = nullptr;
  unsigned long long slots[2][32];
};

struct block_state {
  int n = 0, arrived = 0;
  std::vector<fiber> fibers;
  std::vector<warp_state> warps;
  int cur = -1;
  void *sched_sp = nullptr;
  const void *sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  const std::function<void()> *body = nullptr;
  bool aborted = false;
  std::string kernel;
  std::chrono::steady_clock::time_point started; /* of the launch: the watchdog's reference */
  double limit_s = 0;
  unsigned sync_calls = 0;
};

block_state B;

void ensure_stacks(int n) {
  while ((int)B.fibers.size() < n) {
    fiber f;
    void *m = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      fprintf(stderr, "cuda emulator: cannot map a fiber stack\n");
      abort();
    }
    mprotect(m, 4096, PROT_NONE); /* stack overflow faults instead of corrupting */
    f.stack = (char *)m;
    B.fibers.push_back(f);
  }
}

void switch_into(fiber &f) {
#if SSEMU_ASAN
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, STACK_BYTES);
  ssemu_ctx_switch(&B.sched_sp, f.sp);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  ssemu_ctx_switch(&B.sched_sp, f.sp);
#endif
}

/* back to the scheduler; returns when the scheduler resumes this fiber */
void switch_out(fiber &f, bool finished) {
#if SSEMU_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &f.asan_fake, B.sched_stack_bottom, B.sched_stack_size);
  ssemu_ctx_switch(&f.sp, B.sched_sp);
  __sanitizer_finish_switch_fiber(f.asan_fake, nullptr, nullptr);
#else
  (void)finished;
  ssemu_ctx_switch(&f.sp, B.sched_sp);
#endif
}

void fiber_main() {
#if SSEMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &B.sched_stack_bottom, &B.sched_stack_size);
#endif
  (*B.body)();
  fiber &f = B.fibers[B.cur];
  f.state = F_DONE;
  switch_out(f, true);
  __builtin_unreachable();
}

/* Stack tops are staggered ("coloured") by a fiber-dependent offset: tops 256 KiB apart would
 * all map to the same cache sets, and every switch between 1024 threads would miss. */
void start_fiber(fiber &f, int index) {
  uintptr_t color = ((uintptr_t)index * 1088u) % (64u << 10);
  uintptr_t top = ((uintptr_t)f.stack + STACK_BYTES - color) & ~(uintptr_t)15;
  uintptr_t *sp = (uintptr_t *)top;
  *--sp = 0;                       /* fiber_main's return address slot: never used */
  *--sp = (uintptr_t)&fiber_main; /* popped by ssemu_ctx_switch's ret */
  for (int i = 0; i < 6; i++) *--sp = 0; /* rbp rbx r12 r13 r14 r15 */
#if SSEMU_ASAN
  /* frames that never returned (fiber_main's, an aborted block's) leave their redzones behind;
   * kernel frames stay well inside the top 64 KiB (clearing all 256 KiB per thread start made a
   * sanitizer run 10x slower) */
  __asan_unpoison_memory_region((void *)(top - ((size_t)64 << 10)), (size_t)64 << 10);
#endif
  f.sp = sp;
  f.state = F_RUN;
  f.shfl_seq = 0;
  f.asan_fake = nullptr;
}

fiber &current() { return B.fibers[B.cur]; }

std::string where(const fiber &f) {
  char buf[160];
  snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)", B.kernel.c_str(), blockIdx.x, blockIdx.y,
           blockIdx.z, f.tid.x, f.tid.y, f.tid.z);
  return buf;
}

/* stop the block: the scheduler sees `aborted` and abandons every fiber */
[[noreturn]] void abort_block(const std::string &msg) {
  fault(msg);
  B.aborted = true;
  fiber &f = current();
  f.state = F_DONE;
  switch_out(f, true);
  __builtin_unreachable();
}

/* A kernel that never ends hangs a GPU; here every 64Ki collectives compare the launch's run
 * time with SSEMU_KERNEL_TIMEOUT_S (default 300 s) and fault past it. */
void watchdog(const fiber &f) {
  if ((++B.sync_calls & 0xffffu) != 0) return;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - B.started).count();
  if (s > B.limit_s)
    abort_block(where(f) + ": still running after " + std::to_string((int)s) +
                " s (SSEMU_KERNEL_TIMEOUT_S): a loop that never ends?");
}

void warp_barrier(const char *what) {
  fiber &f = current();
  watchdog(f);
  warp_state &w = B.warps[f.warp];
  if (w.arrived == 0) {
    w.kind = what;
  } else if (w.kind != what && strcmp(w.kind, what) != 0) {
    abort_block(where(f) + ": warp divergence: lane " + std::to_string(f.lane) + " reached " + what +
                " while other lanes of its warp wait at " + w.kind);
  }
  if (++w.arrived == w.size) {
    w.arrived = 0;
    for (int i = f.warp * 32; i < f.warp * 32 + w.size; i++)
      if (B.fibers[i].state == F_WAIT_WARP) B.fibers[i].state = F_RUN;
    return;
  }
  f.state = F_WAIT_WARP;
  f.waiting_at = what;
  switch_out(f, false);
}

} // namespace

int ssemu::lane_id() { return B.fibers[B.cur].lane; }

void ssemu::sync_warp(unsigned mask) {
  fiber &f = current();
  unsigned full = B.warps[f.warp].size == 32 ? 0xffffffffu : ((1u << B.warps[f.warp].size) - 1u);
  if (mask != full)
    abort_block(where(f) + ": __syncwarp with a partial mask is not supported by the emulator");
  warp_barrier("__syncwarp");
}

unsigned long long ssemu::shfl_xor_bits(unsigned mask, unsigned long long bits, int lane_mask) {
  fiber &f = current();
  warp_state &w = B.warps[f.warp];
  if (mask != 0xffffffffu || w.size != 32)
    abort_block(where(f) + ": __shfl_xor_sync needs the full mask of a full warp (mask " + std::to_string(mask) +
                ", warp of " + std::to_string(w.size) + " threads)");
  if (lane_mask < 0 || lane_mask > 31) abort_block(where(f) + ": __shfl_xor_sync lane mask out of range");
  unsigned buf = f.shfl_seq++ & 1u;
  w.slots[buf][f.lane] = bits;
  warp_barrier("__shfl_xor_sync");
  return B.warps[current().warp].slots[buf][current().lane ^ lane_mask];
}

void ssemu::sync_block() {
  fiber &f = current();
  watchdog(f);
  if (++B.arrived == B.n) {
    B.arrived = 0;
    for (int i = 0; i < B.n; i++)
      if (B.fibers[i].state == F_WAIT_BLOCK) B.fibers[i].state = F_RUN;
    return;
  }
  f.state = F_WAIT_BLOCK;
  f.waiting_at = "__syncthreads";
  switch_out(f, false);
}

/* Run one block to completion (or to a fault). */
static void run_block(bool reverse) {
  const int n = B.n;
  for (int i = 0; i < n; i++) start_fiber(B.fibers[i], i);
  B.arrived = 0;
  for (auto &w : B.warps) {
    w.arrived = 0;
    w.kind = nullptr;
  }
  B.aborted = false;
  for (;;) {
    bool progressed = false, all_done = true;
    for (int k = 0; k < n && !B.aborted; k++) {
      int i = reverse ? n - 1 - k : k;
      fiber &f = B.fibers[i];
      if (f.state == F_RUN) {
        B.cur = i;
        threadIdx = f.tid;
        switch_into(f);
        progressed = true;
      }
      if (B.fibers[i].state != F_DONE) all_done = false;
    }
    if (B.aborted || all_done) return;
    if (!progressed) {
      int wb = 0, ww = 0, done = 0;
      const char *what = "";
      for (int i = 0; i < n; i++) {
        if (B.fibers[i].state == F_WAIT_BLOCK) wb++;
        if (B.fibers[i].state == F_WAIT_WARP) {
          ww++;
          what = B.fibers[i].waiting_at;
        }
        if (B.fibers[i].state == F_DONE) done++;
      }
      char buf[256];
      snprintf(buf, sizeof buf,
               ": barrier deadlock: %d threads wait at __syncthreads, %d at a warp collective (%s), %d have exited",
               wb, ww, what, done);
      fault("kernel " + B.kernel + buf);
      return;
    }
  }
}

static bool order_reversed(void) {
  const char *s = getenv("SSEMU_ORDER");
  return s && strcmp(s, "reverse") == 0;
}

static void run_grid(const ssemu::launch_cfg &c, bool reverse) {
  const uint64_t nb = (uint64_t)c.grid.x * c.grid.y * c.grid.z;
  for (uint64_t k = 0; k < nb && sticky_error == cudaSuccess; k++) {
    uint64_t b = reverse ? nb - 1 - k : k;
    blockIdx = uint3{(unsigned)(b % c.grid.x), (unsigned)(b / c.grid.x % c.grid.y),
                     (unsigned)(b / ((uint64_t)c.grid.x * c.grid.y))};
    run_block(reverse);
  }
}

/* SSEMU_RACECHECK=1 runs every launch twice, blocks and threads forward then in reverse, from the
 * same device memory, and faults when the two leave different memory: the kernel's result depends
 * on scheduling (a race between threads or blocks in global memory, or between threads in shared
 * memory that a barrier should order). About 2x slower, plus a copy of all device memory per
 * launch. Not caught: a read of shared memory no thread of the block wrote (__shared__ arrays are
 * statics that keep the previous block's values in both orders). */
static bool race_check_on(void) {
  const char *s = getenv("SSEMU_RACECHECK");
  return s && strcmp(s, "1") == 0;
}
/* copies of all device memory (buffers reused from launch to launch: no page faults per copy) */
static void snapshot(std::vector<std::vector<char>> &out) {
  out.resize(allocs.size());
  size_t k = 0;
  for (const auto &a : allocs) out[k++].assign((const char *)a.first, (const char *)a.first + a.second.size);
}
static void restore(const std::vector<std::vector<char>> &snap) {
  size_t k = 0;
  for (const auto &a : allocs) {
    const std::vector<char> &v = snap[k++];
    if (!v.empty()) memcpy((void *)a.first, v.data(), v.size());
  }
}

static void run_kernel(const std::string &name, const ssemu::launch_cfg &c, const std::function<void()> &body) {
  if (sticky_error != cudaSuccess) return;
  stats.kernels_run++;
  const int nx = (int)c.block.x, ny = (int)c.block.y, nz = (int)c.block.z, n = nx * ny * nz;
  ensure_stacks(n);
  B.n = n;
  B.body = &body;
  B.kernel = name;
  B.started = std::chrono::steady_clock::now();
  B.limit_s = env_int("SSEMU_KERNEL_TIMEOUT_S", 300, 1, 1 << 30);
  B.sync_calls = 0;
  B.warps.assign((size_t)(n + 31) / 32, warp_state());
  for (int i = 0; i < n; i++) {
    fiber &f = B.fibers[i];
    f.tid = uint3{(unsigned)(i % nx), (unsigned)(i / nx % ny), (unsigned)(i / (nx * ny))};
    f.lane = i & 31;
    f.warp = i >> 5;
  }
  for (size_t w = 0; w < B.warps.size(); w++) B.warps[w].size = std::min(32, n - (int)w * 32);
  blockDim = c.block;
  gridDim = c.grid;
  if (!race_check_on()) {
    run_grid(c, order_reversed());
    return;
  }
  /* SSEMU_RACECHECK=1: run the launch in both orders from the same memory and compare */
  static std::vector<std::vector<char>> before, forward;
  snapshot(before);
  run_grid(c, false);
  if (sticky_error != cudaSuccess) return;
  snapshot(forward);
  restore(before);
  run_grid(c, true);
  if (sticky_error != cudaSuccess) return;
  size_t k = 0;
  for (const auto &a : allocs) {
    const std::vector<char> &f = forward[k++];
    if (memcmp(f.data(), (const void *)a.first, f.size()) == 0) continue;
    size_t off = 0;
    while (off < f.size() && f[off] == ((const char *)a.first)[off]) off++;
    char buf[200];
    snprintf(buf, sizeof buf, ": results depend on the order blocks and threads run (first at byte %zu of the %zu-byte "
             "allocation %p)", off, f.size(), (void *)a.first);
    fault("kernel " + name + buf + ": a data race between threads or blocks");
    return;
  }
}

/* Fault injection (emulator only): the launch after `after` more launches fails with `err`:
 * cudaErrorLaunchFailure as a device fault (sticky), anything else as a launch error (it also
 * invalidates a capture in progress, as CUDA does). */
static long long inject_after = -1;
static cudaError_t inject_error = cudaSuccess;
extern "C" void ssemu_inject_launch_error(int after, int err) {
  LOCK();
  inject_after = after;
  inject_error = (cudaError_t)err;
}

void ssemu::submit(const char *name, const launch_cfg &c, std::function<void()> body, int bad_arg) {
  LOCK();
  if (sticky_error != cudaSuccess) {
    fail(sticky_error);
    return;
  }
  if (inject_after >= 0 && inject_after-- == 0) {
    if (inject_error == cudaErrorLaunchFailure) {
      fault(std::string("kernel ") + name + ": injected device fault");
    } else {
      if (CUstream_st *cs = capturing_stream()) cs->capture = cudaStreamCaptureStatusInvalidated;
      fail(inject_error);
    }
    return;
  }
  const dim3 g = c.grid, b = c.block;
  uint64_t threads = (uint64_t)b.x * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
      g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  std::string kname = name;
  if (bad_arg >= 0) {
    fault("kernel " + kname + ": argument " + std::to_string(bad_arg) +
          " is a pointer to neither device memory nor pinned host memory");
    return;
  }
  launch_cfg cfg = c;
  cudaError_t e = enqueue(c.stream, name, [kname, cfg, body]() { run_kernel(kname, cfg, body); });
  if (e != cudaSuccess) fail(e);
}
