/*
 * bench_membw.c — the machine's memory read bandwidth, the ceiling of batch-1 decode (every token reads
 * every weight once): T threads each sum its part of a buffer far larger than the caches, several
 * passes, the best pass reported in GB/s (10^9 bytes per second).
 *
 *   build/bench_membw [--threads T] [--mib M] [--passes P]      (default 2 threads, 1024 MiB, 5 passes)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct part {
  const uint64_t *p;
  size_t n;
  uint64_t sum;
} part;

static void *reader(void *arg) {
  part *w = arg;
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= w->n; i += 4) s0 += w->p[i], s1 += w->p[i + 1], s2 += w->p[i + 2], s3 += w->p[i + 3];
  for (; i < w->n; i++) s0 += w->p[i];
  w->sum = s0 + s1 + s2 + s3;
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  int T = 2, passes = 5;
  size_t mib = 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) T = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--mib")) mib = (size_t)atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--passes")) passes = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: bench_membw [--threads T] [--mib M] [--passes P]\n");
      return 2;
    }
  }
  if (T < 1 || T > 256 || mib < 1 || passes < 1) return 2;
  size_t n = mib << 17; /* uint64 words */
  uint64_t *buf = malloc(n * sizeof *buf);
  part *w = calloc((size_t)T, sizeof *w);
  pthread_t *th = calloc((size_t)T, sizeof *th);
  if (!buf || !w || !th) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < n; i++) buf[i] = i;
  double best = 0;
  uint64_t total = 0;
  for (int p = 0; p < passes; p++) {
    double t0 = now_s();
    for (int t = 0; t < T; t++) {
      w[t].p = buf + n / (size_t)T * (size_t)t;
      w[t].n = t == T - 1 ? n - n / (size_t)T * (size_t)t : n / (size_t)T;
      pthread_create(&th[t], NULL, reader, &w[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL), total += w[t].sum;
    double gbs = (double)(n * sizeof *buf) / (now_s() - t0) / 1e9;
    if (gbs > best) best = gbs;
  }
  printf("membw: %d threads, %zu MiB, best of %d passes: %.2f GB/s (checksum %llu)\n", T, mib, passes, best,
         (unsigned long long)(total & 0xffff));
  free(buf);
  free(w);
  free(th);
  return 0;
}
