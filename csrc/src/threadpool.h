/*
 * threadpool.h — a small persistent pthread pool for data-parallel loops.
 *
 * ss_threadpool_run(pool, n, grain, fn, ctx) calls fn(ctx, begin, end, tid)
 * over disjoint ranges covering [0, n); ranges of `grain` items are handed out
 * through an atomic counter to the calling thread (tid 0) and the workers
 * (tid 1..n_threads-1), and the call returns when all of [0, n) is done.
 * The caller works too and never waits for a worker that has not started on
 * the job (a descheduled or sleeping worker just misses it); it waits only
 * for workers that are running ranges. Idle workers spin for ~50 us after a
 * job, then sleep on a condition variable, so an idle pool burns no CPU.
 * Callers should run small jobs inline (grain >= n): see backend_cpu.c.
 *
 * A pool is used by one thread at a time (the engine is not thread-safe).
 */
#ifndef SS_THREADPOOL_H
#define SS_THREADPOOL_H

#include <stdint.h>

typedef struct ss_threadpool ss_threadpool;

/* fn processes items [begin, end) on thread `tid` (0 <= tid < n_threads). */
typedef void (*ss_task_fn)(void *ctx, int64_t begin, int64_t end, int tid);

/* n_threads >= 1 (1 = no workers, everything runs on the caller).
 * Returns NULL when a thread or an allocation cannot be created. */
ss_threadpool *ss_threadpool_create(int n_threads);
void ss_threadpool_free(ss_threadpool *pool);
int ss_threadpool_size(const ss_threadpool *pool);
/* Run fn over [0, n) in ranges of `grain` (>= 1) items. Ranges of one call may
 * run concurrently; calls are sequential (everything of one call is finished,
 * and visible to the caller, when it returns). */
void ss_threadpool_run(ss_threadpool *pool, int64_t n, int64_t grain, ss_task_fn fn, void *ctx);

#endif /* SS_THREADPOOL_H */
