/*
 * bench_decode.c — decode throughput of the engine at batch B.
 *
 *   build/bench_decode MODEL [--batch B] [--window W] [--sinks S] [--prompt P]
 *                            [--steps N] [--threads T] [--chunk K] [--policy streaming|window]
 *                            [--weights f32|f16|bf16|q8_0|q4_0] [--kv-dtype f32|f16]
 *
 * MODEL: any format ss_model_load reads (Hugging Face folder, GGUF file, llama2.c .bin).
 * Creates B sequences (capacity W, S sinks), fast-feeds P tokens to each in
 * prefill chunks of up to K tokens (several sequences per step), then runs N
 * greedy decode steps with all B sequences in every step. Reports prefill
 * tokens/s, decode tokens/s, per-step latency, and the mean latency of steps
 * that evict (the cache was full) against steps that do not. The defaults put
 * the window boundary in the middle of the decode steps so both kinds occur.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinkstream.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* an ss_dtype by its lower-case name, -2 when unknown */
static int dtype_of(const char *s) {
  static const char *const names[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(s, names[i])) return i;
  return -2;
}

static int usage(void) {
  fprintf(stderr,
          "usage: bench_decode MODEL [--batch B] [--window W] [--sinks S] [--prompt P] [--steps N]\n"
          "                          [--threads T] [--chunk K] [--policy streaming|window]\n"
          "                          [--weights f32|f16|bf16|q8_0|q4_0] [--kv-dtype f32|f16]\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *path = argv[1];
  int B = 1, W = 256, S = 4, N = 128, T = 0, K = 256, P = -1, policy = SS_POLICY_STREAMING;
  int weights = SS_WEIGHTS_AS_FILE, kv = SS_KV_DTYPE_DEFAULT;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) return usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--batch")) B = atoi(v);
    else if (!strcmp(a, "--window")) W = atoi(v);
    else if (!strcmp(a, "--sinks")) S = atoi(v);
    else if (!strcmp(a, "--prompt")) P = atoi(v);
    else if (!strcmp(a, "--steps")) N = atoi(v);
    else if (!strcmp(a, "--threads")) T = atoi(v);
    else if (!strcmp(a, "--chunk")) K = atoi(v);
    else if (!strcmp(a, "--policy")) policy = !strcmp(v, "window") ? SS_POLICY_WINDOW : SS_POLICY_STREAMING;
    else if (!strcmp(a, "--weights")) weights = dtype_of(v);
    else if (!strcmp(a, "--kv-dtype")) kv = dtype_of(v);
    else return usage();
  }
  if (P < 0) P = W > N / 2 ? W - N / 2 : 0; /* half the decode steps evict */
  if (B < 1 || W < 2 || N < 1 || K < 1 || weights == -2 || kv == -2) return usage();

  ss_model *m = NULL;
  ss_model_params mp = ss_model_default_params();
  mp.weights = weights;
  int rc = ss_model_load(path, &mp, &m, NULL, 0);
  if (rc) {
    fprintf(stderr, "load %s: %s: %s\n", path, ss_status_name(rc), ss_last_error());
    return 1;
  }
  ss_model_info info;
  ss_model_get_info(m, &info);

  ss_engine_params ep = ss_engine_default_params();
  ep.n_threads = T;
  ep.max_sequences = B;
  ep.max_batch_tokens = K > B ? K : B;
  ep.kv_dtype = kv;
  ss_engine *e = NULL;
  rc = ss_engine_create(m, &ep, &e, NULL, 0);
  if (rc) {
    fprintf(stderr, "engine: %s: %s\n", ss_status_name(rc), ss_last_error());
    ss_model_free(m);
    return 1;
  }
  ss_seq_params sp = ss_seq_default_params();
  sp.policy = policy;
  sp.n_sinks = S;
  sp.capacity = W;

  int32_t *ids = malloc((size_t)B * sizeof *ids), *ntok = malloc((size_t)B * sizeof *ntok);
  int32_t *flags = malloc((size_t)B * sizeof *flags), *out = malloc((size_t)B * sizeof *out);
  int32_t *toks = malloc((size_t)ep.max_batch_tokens * sizeof *toks), *cur = malloc((size_t)B * sizeof *cur);
  double *lat = malloc((size_t)N * sizeof *lat);
  int *evicting = malloc((size_t)N * sizeof *evicting);
  if (!ids || !ntok || !flags || !out || !toks || !cur || !lat || !evicting) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (int b = 0; b < B; b++) {
    rc = ss_seq_create(e, &sp, &ids[b]);
    if (rc) {
      fprintf(stderr, "sequence: %s: %s\n", ss_status_name(rc), ss_last_error());
      return 1;
    }
  }

  /* prefill: pack chunks of several sequences into steps of up to K tokens */
  uint64_t rng = 88172645463325252ull;
  double t0 = now_s();
  int64_t fed_total = 0;
  int *fed = calloc((size_t)B, sizeof *fed);
  int32_t *item_ids = malloc((size_t)B * sizeof *item_ids);
  if (!fed || !item_ids) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (;;) {
    int n_items = 0, used = 0;
    for (int b = 0; b < B && used < ep.max_batch_tokens; b++) {
      int n = P - fed[b];
      if (n > ep.max_batch_tokens - used) n = ep.max_batch_tokens - used;
      if (n <= 0) continue;
      for (int j = 0; j < n; j++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        toks[used + j] = 3 + (int32_t)(rng % (uint64_t)(info.vocab_size > 3 ? info.vocab_size - 3 : 1));
      }
      item_ids[n_items] = ids[b];
      ntok[n_items] = n;
      flags[n_items] = 0;
      n_items++;
      used += n;
      fed[b] += n;
    }
    if (n_items == 0) break;
    rc = ss_engine_step(e, n_items, item_ids, ntok, toks, flags, NULL, NULL, NULL, NULL, NULL);
    if (rc) {
      fprintf(stderr, "prefill: %s: %s\n", ss_status_name(rc), ss_last_error());
      return 1;
    }
    fed_total += used;
  }
  double t_prefill = now_s() - t0;

  /* decode: all B sequences each step, greedy, feeding back the sampled token */
  for (int b = 0; b < B; b++) {
    ntok[b] = 1;
    flags[b] = SS_STEP_SAMPLE;
    cur[b] = info.bos_token_id >= 0 ? info.bos_token_id : 1;
  }
  double td = now_s();
  for (int s = 0; s < N; s++) {
    ss_seq_stats st;
    ss_seq_get_stats(e, ids[0], &st);
    evicting[s] = st.n_cached == st.capacity; /* this step evicts a token */
    double a = now_s();
    rc = ss_engine_step(e, B, ids, ntok, cur, flags, NULL, out, NULL, NULL, NULL);
    lat[s] = now_s() - a;
    if (rc) {
      fprintf(stderr, "decode: %s: %s\n", ss_status_name(rc), ss_last_error());
      return 1;
    }
    memcpy(cur, out, (size_t)B * sizeof *cur);
  }
  double t_decode = now_s() - td;

  double sum_e = 0, sum_n = 0;
  int n_e = 0, n_n = 0;
  for (int s = 0; s < N; s++) {
    if (evicting[s]) sum_e += lat[s], n_e++;
    else sum_n += lat[s], n_n++;
  }
  qsort(lat, (size_t)N, sizeof *lat, cmp_double);
  ss_seq_stats st;
  ss_seq_get_stats(e, ids[0], &st);

  static const char *const dn[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
  printf("weights %s (file %s), %lld bytes read per token; kv %lld bytes per token\n",
         info.weight_dtype >= 0 && info.weight_dtype < 5 ? dn[info.weight_dtype] : "?",
         info.source_dtype >= 0 && info.source_dtype < 5 ? dn[info.source_dtype] : "?", (long long)info.weight_bytes,
         (long long)ss_engine_kv_bytes_per_token(e));
  printf("model %s: dim %d, layers %d, heads %d/%d, vocab %d\n", path, info.dim, info.n_layers, info.n_heads,
         info.n_kv_heads, info.vocab_size);
  printf("batch %d, %s W=%d S=%d, prompt %d, steps %d, threads %d, chunk %d\n", B,
         policy == SS_POLICY_STREAMING ? "streaming" : "window", W, S, P, N, T, ep.max_batch_tokens);
  printf("prefill: %lld tokens in %.3f s = %.1f tok/s\n", (long long)fed_total, t_prefill,
         t_prefill > 0 ? fed_total / t_prefill : 0.0);
  printf("decode : %d tokens in %.3f s = %.1f tok/s; step latency p50 %.3f ms, p90 %.3f ms, max %.3f ms\n", B * N,
         t_decode, B * N / t_decode, 1e3 * lat[N / 2], 1e3 * lat[(N * 9) / 10], 1e3 * lat[N - 1]);
  printf("steps  : %d non-evicting mean %.3f ms, %d evicting mean %.3f ms\n", n_n, n_n ? 1e3 * sum_n / n_n : 0.0, n_e,
         n_e ? 1e3 * sum_e / n_e : 0.0);
  printf("cache  : %lld bytes per sequence, %lld evicted so far\n", (long long)st.cache_bytes, (long long)st.n_evicted);

  free(fed);
  free(item_ids);
  free(ids);
  free(ntok);
  free(flags);
  free(out);
  free(toks);
  free(cur);
  free(lat);
  free(evicting);
  ss_engine_free(e);
  ss_model_free(m);
  return 0;
}
