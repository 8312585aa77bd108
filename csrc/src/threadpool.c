/* threadpool.c — persistent pthread pool; see threadpool.h. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* Spin iterations before a worker goes to sleep / the caller yields. About a
 * few tens of microseconds: enough to catch the next matmul of a forward pass
 * without sleeping, short enough not to burn an idle core. */
#define SPIN_WORKER 4000
#define SPIN_CALLER 2000

struct ss_threadpool {
  int n_threads; /* including the calling thread */
  pthread_t *threads;
  int n_started;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int n_sleeping;
  atomic_uint_fast64_t generation; /* bumped once per job */
  atomic_int stop;

  /* the current job */
  ss_task_fn fn;
  void *ctx;
  int64_t n, grain;
  atomic_int_fast64_t next;  /* next unclaimed item */
  atomic_int pending;        /* workers that have not finished the job */
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

static void *worker_main(void *arg) {
  worker_arg *wa = arg;
  ss_threadpool *p = wa->pool;
  int tid = wa->tid;
  free(wa);
  uint64_t seen = 0;
  for (;;) {
    /* wait for a new generation: spin a little, then sleep */
    uint64_t gen = atomic_load(&p->generation);
    for (int i = 0; gen == seen && i < SPIN_WORKER; i++) {
      cpu_relax();
      gen = atomic_load(&p->generation);
    }
    if (gen == seen) {
      pthread_mutex_lock(&p->mu);
      atomic_fetch_add(&p->n_sleeping, 1);
      while ((gen = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
      atomic_fetch_sub(&p->n_sleeping, 1);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = gen;
    drain(p, tid);
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
  }
}

ss_threadpool *ss_threadpool_create(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  ss_threadpool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n_threads = n_threads;
  atomic_init(&p->n_sleeping, 0);
  atomic_init(&p->generation, 0);
  atomic_init(&p->stop, 0);
  atomic_init(&p->next, 0);
  atomic_init(&p->pending, 0);
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
  p->fn = fn;
  p->ctx = ctx;
  p->n = n;
  p->grain = grain;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  atomic_store_explicit(&p->pending, p->n_started, memory_order_relaxed);
  /* seq_cst publish; pairs with the sleeper's n_sleeping++ then generation check */
  atomic_fetch_add(&p->generation, 1);
  if (atomic_load(&p->n_sleeping) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  drain(p, 0);
  for (int i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
    if (i < SPIN_CALLER) cpu_relax();
    else sched_yield();
  }
}
