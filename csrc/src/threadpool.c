/* threadpool.c — persistent pthread pool; see threadpool.h.
 *
 * Job protocol (one 64-bit atomic `state`):
 *   bits 63..32  generation of the current job (bumped by the caller per job)
 *   bit  31      CLOSED: the caller has finished its own share; nobody may join
 *   bits 30..0   workers that joined the job and have not finished it
 * A worker that sees a new generation JOINS with a CAS (only while the job is
 * open and still of that generation), then claims ranges from `next` until
 * none is left, then leaves. The caller claims ranges too; when it runs out
 * it CLOSES the job and waits only for the workers that joined. A worker that
 * was descheduled, or is still asleep, when the job is published simply
 * misses it: the caller never waits for a thread that has not started, so a
 * busy machine cannot stretch a small job to a scheduler time slice.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* A worker spins this long after its last job before it sleeps on the
 * condition variable (long enough to catch the next large op of a forward
 * pass; small ops run inline on the caller and never wake anyone). */
#define SPIN_WORKER_NS 50000
/* The caller spins this many pauses waiting for joined workers, then yields. */
#define SPIN_CALLER 2000

#define ST_CLOSED ((uint64_t)1 << 31)
#define ST_ACTIVE ((uint64_t)0x7fffffff)

struct ss_threadpool {
  int n_threads; /* including the calling thread */
  pthread_t *threads;
  int n_started;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int n_sleeping;
  _Atomic uint64_t state; /* see the top of the file */
  atomic_int stop;
  uint32_t gen;           /* caller-side copy of the generation */

  /* the current job: written by the caller before the state store (release),
   * read by workers after a successful join (acquire) */
  ss_task_fn fn;
  void *ctx;
  int64_t n, grain;
  atomic_int_fast64_t next; /* next unclaimed item */
};

typedef struct worker_arg {
  ss_threadpool *pool;
  int tid;
} worker_arg;

/* Claim and run ranges of the current job until none is left. */
static void drain(ss_threadpool *p, int tid) {
  for (;;) {
    int64_t b = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
    if (b >= p->n) return;
    int64_t e = b + p->grain < p->n ? b + p->grain : p->n;
    p->fn(p->ctx, b, e, tid);
  }
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint32_t gen_of(uint64_t s) { return (uint32_t)(s >> 32); }

static void *worker_main(void *arg) {
  worker_arg *wa = arg;
  ss_threadpool *p = wa->pool;
  int tid = wa->tid;
  free(wa);
  uint32_t seen = 0;
  for (;;) {
    /* wait for a new generation: spin for a bounded time, then sleep */
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    if (gen_of(s) == seen && !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
      int64_t t0 = now_ns();
      for (int i = 1; gen_of(s) == seen; i++) {
        cpu_relax();
        s = atomic_load_explicit(&p->state, memory_order_acquire);
        if ((i & 63) == 0 && now_ns() - t0 > SPIN_WORKER_NS) break;
      }
    }
    if (gen_of(s) == seen) {
      pthread_mutex_lock(&p->mu);
      atomic_fetch_add(&p->n_sleeping, 1); /* seq_cst: pairs with the caller's state store */
      while (gen_of(s = atomic_load(&p->state)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv, &p->mu);
      atomic_fetch_sub(&p->n_sleeping, 1);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = gen_of(s);
    /* join while the job of this generation is open */
    while (gen_of(s) == seen && !(s & ST_CLOSED)) {
      if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                                memory_order_acquire)) {
        drain(p, tid);
        atomic_fetch_sub_explicit(&p->state, 1, memory_order_release);
        break;
      }
    }
  }
}

ss_threadpool *ss_threadpool_create(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  ss_threadpool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n_threads = n_threads;
  atomic_init(&p->n_sleeping, 0);
  atomic_init(&p->state, 0);
  atomic_init(&p->stop, 0);
  atomic_init(&p->next, 0);
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p);
    return NULL;
  }
  if (pthread_cond_init(&p->cv, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
  }
  if (n_threads > 1) {
    p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
    if (!p->threads) {
      ss_threadpool_free(p);
      return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
      worker_arg *wa = malloc(sizeof *wa);
      if (!wa) {
        ss_threadpool_free(p);
        return NULL;
      }
      wa->pool = p;
      wa->tid = i;
      if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
        free(wa);
        ss_threadpool_free(p);
        return NULL;
      }
      p->n_started++;
    }
  }
  return p;
}

void ss_threadpool_free(ss_threadpool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stop, 1);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int ss_threadpool_size(const ss_threadpool *p) { return p ? p->n_threads : 1; }

void ss_threadpool_run(ss_threadpool *p, int64_t n, int64_t grain, ss_task_fn fn, void *ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  /* Nothing to share (or no workers): run inline, no synchronisation at all. */
  if (!p || p->n_started == 0 || n <= grain) {
    fn(ctx, 0, n, 0);
    return;
  }
  /* The previous job is closed and has no joined worker left, so nobody
   * reads these fields now; a late worker's CAS fails on the new generation. */
  p->fn = fn;
  p->ctx = ctx;
  p->n = n;
  p->grain = grain;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  /* generation 0 is the initial state; skip it when the counter wraps */
  if (++p->gen == 0) p->gen = 1;
  /* seq_cst publish (release for the job fields); pairs with the sleeper's
   * n_sleeping++ then state check */
  atomic_store(&p->state, (uint64_t)p->gen << 32);
  if (atomic_load(&p->n_sleeping) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  drain(p, 0);
  /* close: from here no worker joins; wait for those that did */
  uint64_t s = atomic_fetch_or_explicit(&p->state, ST_CLOSED, memory_order_acq_rel);
  for (int i = 0; (s & ST_ACTIVE) != 0; i++) {
    if (i < SPIN_CALLER) cpu_relax();
    else sched_yield();
    s = atomic_load_explicit(&p->state, memory_order_acquire);
  }
}
