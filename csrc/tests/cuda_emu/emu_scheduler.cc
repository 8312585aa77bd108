/*
 * emu_scheduler.cc — how the CUDA emulator runs a kernel (README.md here): one block at a time,
 * its threads as fibers on private stacks. A thread runs until it reaches __syncthreads, a warp
 * shuffle or __syncwarp, then the next thread runs; a barrier completes when every thread of the
 * block (or lane of the warp) has reached it.
 *
 * - A launch checks its configuration (cudaErrorInvalidConfiguration as the device would) and
 *   that every pointer argument is device (or pinned host) memory.
 * - Lanes of one warp that reach different collectives, barriers that exited threads can never
 *   complete, shuffles with partial masks and kernels running past SSEMU_KERNEL_TIMEOUT_S stop
 *   the launch with a fault: a sticky cudaErrorLaunchFailure and a message on stderr, like a
 *   device-side trap.
 * - SSEMU_ORDER=reverse runs blocks and the threads of a block in reverse order; SSEMU_RACECHECK=1
 *   runs every launch in both orders from the same memory and faults when the results differ.
 *
 * Not modelled: timing, concurrency between streams, the memory model (threads never run at the
 * same time: a race shows only as an order dependence), shared-memory size and register limits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "emu_internal.h"

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

using namespace ssemu_rt;

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

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

fiber &current() { return B.fibers[B.cur]; }

void fiber_main() {
#if SSEMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &B.sched_stack_bottom, &B.sched_stack_size);
#endif
  (*B.body)();
  fiber &f = current();
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

/* The current fiber arrives at a barrier of the `count` fibers from `first` (a warp or the
 * block): the last to arrive releases the others (state `waiting` -> F_RUN) and goes on; the
 * others switch out until released. */
void arrive(int &arrived, int first, int count, fiber_state waiting, const char *what) {
  fiber &f = current();
  watchdog(f);
  if (++arrived == count) {
    arrived = 0;
    for (int i = first; i < first + count; i++)
      if (B.fibers[i].state == waiting) B.fibers[i].state = F_RUN;
    return;
  }
  f.state = waiting;
  f.waiting_at = what;
  switch_out(f, false);
}

void warp_barrier(const char *what) {
  fiber &f = current();
  warp_state &w = B.warps[f.warp];
  if (w.arrived == 0) {
    w.kind = what;
  } else if (w.kind != what && strcmp(w.kind, what) != 0) {
    abort_block(where(f) + ": warp divergence: lane " + std::to_string(f.lane) + " reached " + what +
                " while other lanes of its warp wait at " + w.kind);
  }
  arrive(w.arrived, f.warp * 32, w.size, F_WAIT_WARP, what);
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
  return w.slots[buf][f.lane ^ lane_mask]; /* f and w stay valid: nothing grows during a launch */
}

void ssemu::sync_block() { arrive(B.arrived, 0, B.n, F_WAIT_BLOCK, "__syncthreads"); }

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
      invalidate_capture();
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
  cudaError_t e = enqueue(c.stream, [kname, cfg, body]() { run_kernel(kname, cfg, body); });
  if (e != cudaSuccess) fail(e);
}
