/* test_cuda_plan.c — the CUDA backend's host-side planning math (src/cuda_plan.h), tested without a
 * GPU or nvcc: attention split coverage and workspace bound, graph-key stability as a stream grows,
 * metadata layout. (The cache geometry the kernels use is src/cache_geometry.h, tested by
 * test_cache_geometry.c.) */
#include <stdio.h>

#include "cuda_plan.h"
#include "test_util.h"

static void test_split_plan(void) {
  const int heads[] = {1, 8, 32, 64}, sms[] = {1, 108, 132, 170}, hds[] = {8, 64, 128};
  const int Ts[] = {1, 2, 3, 7, 8, 9, 31, 32, 33, 100, 512, 2048, 4096, 65535};
  const long long ns[] = {1, 2, 63, 64, 65, 511, 512, 513, 1000, 2048, 2049, 4096, 100000, 1 << 20};
  int bad = 0;
  for (size_t a = 0; a < sizeof heads / sizeof *heads; a++)
    for (size_t b = 0; b < sizeof sms / sizeof *sms; b++)
      for (size_t c = 0; c < sizeof Ts / sizeof *Ts; c++)
        for (size_t d = 0; d < sizeof ns / sizeof *ns; d++)
          for (size_t e = 0; e < sizeof hds / sizeof *hds; e++) {
            int T = Ts[c], H = heads[a], M = sms[b], hd = hds[e];
            ss_cuda_split p = ss_cuda_plan_split(T, H, M, ns[d]);
            int ok = p.n_splits >= 1 && p.split_len >= 32 && p.split_len % 32 == 0 && p.max_n >= ns[d] &&
                     p.max_n % 512 == 0 && (long long)p.n_splits * p.split_len >= p.max_n &&
                     (long long)(p.n_splits - 1) * p.split_len < p.max_n;
            /* the partials workspace sized for max_tokens >= T holds every plan */
            ok = ok && ss_cuda_plan_part_need(T, H, hd, p) <= ss_cuda_part_floats(T, H, M, hd);
            ok = ok && (size_t)T * H * p.n_splits <= (size_t)2 * M + (size_t)T * H; /* grid size bound */
            if (!ok && bad++ < 5)
              CHECK(0, "split plan T=%d heads=%d sms=%d max_n=%lld: n_splits %d split_len %d", T, H, M, ns[d],
                    p.n_splits, p.split_len);
          }
  CHECK(bad == 0, "%d bad split plans", bad);
}

/* Decode graphs are keyed by the split plan: a growing stream changes key once per 512 keys. */
static void test_graph_key_stability(void) {
  int changes = 0;
  ss_cuda_graph_key prev = {0};
  for (long long n = 1; n <= 4096; n++) {
    ss_cuda_split p = ss_cuda_plan_split(8, 32, 132, n);
    ss_cuda_graph_key k = {8, 8, 8, p.n_splits, p.split_len};
    if (n > 1 && !ss_cuda_graph_key_eq(k, prev)) changes++;
    prev = k;
  }
  CHECK(changes <= 4096 / 512, "graph key changed %d times over 4096 steps", changes);
  ss_cuda_graph_key a = {1, 1, 1, 2, 64}, b = a;
  CHECK(ss_cuda_graph_key_eq(a, b), "equal keys");
  b.n_want = 0;
  CHECK(!ss_cuda_graph_key_eq(a, b), "n_want is part of the key");
  b = a;
  b.split_len = 96;
  CHECK(!ss_cuda_graph_key_eq(a, b), "split_len is part of the key");
}

static void test_meta_layout(void) {
  const size_t item = 40;
  const int max_tokens = 300;
  ss_cuda_meta_layout mx = ss_cuda_meta_layout_for(item, max_tokens, max_tokens, max_tokens);
  int bad = 0;
  for (int T = 1; T <= max_tokens; T += 7)
    for (int n = 1; n <= T; n += 3)
      for (int w = 0; w <= n; w += 5) {
        ss_cuda_meta_layout L = ss_cuda_meta_layout_for(item, n, T, w);
        int ok = L.items == 0 && L.tokens % 16 == 0 && L.tok_item % 16 == 0 && L.want_rows % 16 == 0 &&
                 L.tokens >= n * item && L.tok_item >= L.tokens + 4 * (size_t)T &&
                 L.want_rows >= L.tok_item + 4 * (size_t)T && L.total >= L.want_rows + 4 * (size_t)w &&
                 L.total <= mx.total;
        if (!ok) bad++;
      }
  CHECK(bad == 0, "%d bad metadata layouts", bad);
}

int main(void) {
  test_split_plan();
  test_graph_key_stability();
  test_meta_layout();
  return test_summary("test_cuda_plan");
}
