/* emu_internal.h — what the CUDA emulator's two halves share (emu_runtime.cc: the runtime API;
 * emu_scheduler.cc: kernel execution). Not part of the emulated CUDA headers. */
#ifndef SSEMU_INTERNAL_H
#define SSEMU_INTERNAL_H

#include <stdint.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "cuda_runtime.h"

namespace ssemu_rt {
/* one host thread inside the emulator at a time (API calls and kernel runs) */
extern std::recursive_mutex api_mu;
/* set by a device fault; every later call returns it until ssemu_reset() */
extern cudaError_t sticky_error;
/* record e as the calling thread's last error and return it */
cudaError_t fail(cudaError_t e);
/* a device fault: sticky cudaErrorLaunchFailure, msg on stderr (the first one only) */
void fault(const std::string &msg);
/* integer from the environment, clamped to [lo, hi]; dflt when unset */
int env_int(const char *name, long long dflt, long long lo, long long hi);

struct alloc_info {
  size_t size;
  bool pinned; /* cudaMallocHost */
};
/* every live allocation, device and pinned host, by start address */
extern std::map<uintptr_t, alloc_info> allocs;
extern ssemu_stats stats;

/* run `run` now, or record it into the graph when the stream is capturing */
cudaError_t enqueue(cudaStream_t st, std::function<void()> run);
/* a capture in progress, if any, fails at its end (a launch error under capture) */
void invalidate_capture(void);
} // namespace ssemu_rt

#define LOCK() std::lock_guard<std::recursive_mutex> lock_(ssemu_rt::api_mu)

#endif
