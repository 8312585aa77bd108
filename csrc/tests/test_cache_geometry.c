/* test_cache_geometry.c — src/cache_geometry.h (the geometry the engine, the CPU backend and the CUDA
 * kernels all use) against an independent simulation of token-by-token eviction: a table of C slots where
 * each new token takes the first free slot, or, when the cache is full, the slot of the oldest cached
 * token that is not one of the first S (a sink). Every S < C for small C, and a few larger caches, over
 * stream indices crossing many evictions. */
#include <stdint.h>
#include <string.h>

#include "cache_geometry.h"
#include "test_util.h"

#define MAX_C 80
#define MAX_T 400

/* The simulated cache after feeding tokens [0, n_fed). */
typedef struct sim {
  int32_t S, C;
  int64_t holder[MAX_C]; /* stream index in each slot, -1 when free */
  int32_t slot_of[MAX_T]; /* slot of each fed stream index, -1 once evicted */
  int64_t n_fed;
} sim;

static void sim_init(sim *m, int32_t S, int32_t C) {
  m->S = S;
  m->C = C;
  m->n_fed = 0;
  for (int32_t k = 0; k < C; k++) m->holder[k] = -1;
  for (int i = 0; i < MAX_T; i++) m->slot_of[i] = -1;
}

static int32_t sim_count(const sim *m) {
  int32_t n = 0;
  for (int32_t k = 0; k < m->C; k++) n += m->holder[k] >= 0;
  return n;
}

/* Feed the next token; returns 1 when it evicted one. */
static int sim_feed(sim *m) {
  int64_t t = m->n_fed++;
  int32_t slot = -1;
  for (int32_t k = 0; k < m->C && slot < 0; k++)
    if (m->holder[k] < 0) slot = k;
  int evicted = slot < 0;
  if (evicted) { /* full: the oldest non-sink token makes room */
    int64_t oldest = -1;
    for (int32_t k = 0; k < m->C; k++) {
      int64_t i = m->holder[k];
      if (i >= m->S && (oldest < 0 || i < oldest)) oldest = i, slot = k;
    }
    m->slot_of[oldest] = -1;
  }
  m->holder[slot] = t;
  m->slot_of[t] = slot;
  return evicted;
}

static int sim_cached(const sim *m, int64_t i) { return i < m->n_fed && m->slot_of[i] >= 0; }


/* Everything the header says about query t, checked on the simulated cache right after t was fed. */
static void check_query(const sim *m, int64_t t) {
  int32_t S = m->S, C = m->C;
  int32_t n = sim_count(m);
  CHECK(ss_geom_n_visible(t, C) == n, "S=%d C=%d t=%lld: n_visible %d, simulated %d", S, C, (long long)t,
        ss_geom_n_visible(t, C), n);
  CHECK(ss_geom_n_cached(t + 1, C) == n, "S=%d C=%d t=%lld: n_cached", S, C, (long long)t);
  for (int64_t i = 0; i <= t; i++)
    if (sim_cached(m, i))
      CHECK(ss_geom_slot(i, S, C) == m->slot_of[i], "S=%d C=%d: slot(%lld) = %d, simulated %d", S, C,
            (long long)i, ss_geom_slot(i, S, C), m->slot_of[i]);
  /* sinks [0, ns) and recent [lo, t] are exactly the cached tokens */
  int32_t ns = ss_geom_n_sinks_visible(t, S);
  int64_t lo = ss_geom_recent_lo(t, S, C);
  int32_t n_sinks_cached = 0;
  for (int64_t i = 0; i < S && i <= t; i++) n_sinks_cached += sim_cached(m, i);
  CHECK(ns == n_sinks_cached, "S=%d C=%d t=%lld: %d sinks visible, %d cached", S, C, (long long)t, ns,
        n_sinks_cached);
  for (int64_t i = 0; i <= t; i++) {
    int seen = i < ns || (i >= lo && i >= S);
    CHECK(seen == sim_cached(m, i), "S=%d C=%d t=%lld: key %lld visible %d, cached %d", S, C, (long long)t,
          (long long)i, seen, sim_cached(m, i));
  }
  /* the recent keys walked from slot(lo): ring_step, and ring_run slots before the wrap to S */
  if (t >= S) {
    int32_t lo_slot = ss_geom_slot(lo, S, C);
    int64_t n_recent = t - lo + 1, run = ss_geom_ring_run(lo_slot, n_recent, C);
    CHECK(run >= 1 && run <= n_recent, "S=%d C=%d t=%lld: ring run %lld", S, C, (long long)t, (long long)run);
    for (int64_t r = 0; r < n_recent; r++) {
      int32_t want = m->slot_of[lo + r];
      CHECK(ss_geom_ring_step(lo_slot, (int32_t)r, S, C) == want, "S=%d C=%d t=%lld: ring step %lld", S, C,
            (long long)t, (long long)r);
      int32_t by_run = r < run ? lo_slot + (int32_t)r : S + (int32_t)(r - run);
      CHECK(by_run == want, "S=%d C=%d t=%lld: ring run layout at %lld", S, C, (long long)t, (long long)r);
    }
  }
  /* chunk keep rule: a chunk ending here leaves exactly the cached tokens (whatever its start) */
  for (int64_t i = 0; i <= t; i++)
    CHECK(ss_geom_kept(i, t + 1, S, C) == sim_cached(m, i), "S=%d C=%d end=%lld: kept(%lld)", S, C,
          (long long)(t + 1), (long long)i);
  int64_t first_recent = -1;
  for (int64_t i = S; i <= t && first_recent < 0; i++)
    if (sim_cached(m, i)) first_recent = i;
  if (first_recent >= 0)
    CHECK(ss_geom_keep_from(t + 1, S, C) == first_recent, "S=%d C=%d end=%lld: keep_from", S, C,
          (long long)(t + 1));
}

static void run_geometry(int32_t S, int32_t C, int64_t T) {
  sim m;
  sim_init(&m, S, C);
  for (int64_t t = 0; t < T; t++) {
    int fits = ss_geom_dense_fits(t, 1, C);
    int evicted = sim_feed(&m);
    CHECK(fits == !evicted, "S=%d C=%d t=%lld: dense_fits %d, simulation evicted %d", S, C, (long long)t, fits,
          evicted);
    check_query(&m, t);
  }
}

static void test_small_caches(void) {
  for (int32_t C = 1; C <= 12; C++)
    for (int32_t S = 0; S < C; S++) run_geometry(S, C, 3 * (int64_t)C + 40);
}

static void test_larger_caches(void) {
  const int32_t geoms[][2] = {{4, 40}, {1, 48}, {0, 56}, {4, 80}, {79, 80}, {0, 80}};
  for (size_t g = 0; g < sizeof geoms / sizeof *geoms; g++) run_geometry(geoms[g][0], geoms[g][1], MAX_T);
}

/* Stream indices far beyond any simulation: the ring is periodic with period R, and every count stays
 * within the cache. */
static void test_huge_indices(void) {
  const int32_t geoms[][2] = {{4, 2048}, {0, 1 << 24}, {4, 7}, {1, 2}};
  const int64_t base[] = {(int64_t)1 << 33, ((int64_t)1 << 53) + 17, INT64_MAX / 4};
  for (size_t g = 0; g < sizeof geoms / sizeof *geoms; g++)
    for (size_t b = 0; b < sizeof base / sizeof *base; b++) {
      int32_t S = geoms[g][0], C = geoms[g][1], R = C - S;
      int64_t i = base[b];
      int32_t sl = ss_geom_slot(i, S, C);
      CHECK(sl >= S && sl < C && ss_geom_slot(i + R, S, C) == sl && ss_geom_slot(i - 3 * (int64_t)R, S, C) == sl,
            "S=%d C=%d: slot of %lld not periodic", S, C, (long long)i);
      CHECK(ss_geom_ring_step(sl, 1, S, C) == ss_geom_slot(i + 1, S, C), "S=%d C=%d: ring step at %lld", S, C,
            (long long)i);
      CHECK(ss_geom_n_visible(i, C) == C && ss_geom_n_cached(i, C) == C && ss_geom_n_sinks_visible(i, S) == S,
            "S=%d C=%d: counts at %lld", S, C, (long long)i);
      CHECK(ss_geom_recent_lo(i, S, C) == i - R + 1 && !ss_geom_dense_fits(i, 1, C), "S=%d C=%d: lo at %lld", S,
            C, (long long)i);
    }
}

int main(void) {
  test_small_caches();
  test_larger_caches();
  test_huge_indices();
  return test_summary("test_cache_geometry");
}
