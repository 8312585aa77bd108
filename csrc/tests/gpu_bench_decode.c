/* gpu_bench_decode.c — decode throughput of the CUDA backend on a Llama-2-7B-shaped fp16 model
 * with random weights (built in memory, uploaded and converted on the device; no download).
 * Built by `make cuda-test`, run by tests/gpu/check.sh.
 *
 * All sequences use StreamingLLM with SS_BENCH_SINKS sinks (4) and capacity
 * sinks + SS_BENCH_WINDOW (2044) = 2048; each is prefilled with SS_BENCH_PREFILL (4100) tokens
 * through the engine (chunks of up to 2048 tokens), so every timed decode step runs at stream
 * positions past 4096 with eviction live. Then, for each batch size in SS_BENCH_BATCHES
 * ("1,8,32"), the first B sequences decode SS_BENCH_STEPS steps through ss_engine_step (greedy,
 * logits copied to the host and sampled there, as a server would), after 3 warm-up steps.
 *
 * SS_BENCH_SHAPE=tiny swaps the 7B shape for a small Llama shape (dim 128, 2 layers, vocab
 * 512) and SS_BENCH_BW_MIB sizes the copy-bandwidth probe (default 1024 MiB): used by the CUDA
 * emulator rehearsal of tests/gpu/check.sh (SS_CHECK_EMULATOR=1).
 *
 * Prints machine-readable lines (values without spaces, except the quoted gemm path):
 *   BENCH ours batch=B tok_s=X step_ms=Y
 *   BENCH roofline weight_bytes=W copy_bw=BW tok_s=R  (R = BW / W: weights read once per step)
 *   BENCH info gemm="..." prefill_tok_s=P
 *   BENCH gemv name=qkv|o|gate_up|down|lm_head n=N k=K us=T gb_s=G of_copy_bw=F  (each decode
 *         matmul alone at batch 1: the bandwidth the GEMV kernel reaches)
 *   BENCH step_split batch1_step_us=S gemv_us=G other_us=O  (the measured batch-1 step against the
 *         matmuls alone: O is attention, norms, small kernels and launch gaps)
 * Without a usable GPU it prints SKIP and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "backend_cuda.h"
#include "gpu_model.h"
#include "sinkstream.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : def;
}

#define DIE(...)                          \
  do {                                    \
    fprintf(stderr, "gpu_bench_decode: "); \
    fprintf(stderr, __VA_ARGS__);         \
    fprintf(stderr, "\n");                \
    return 1;                             \
  } while (0)

/* Time one batch-1 fp16 GEMV of n x k weights alone (ssk_gemv, as a decode step runs it): the
 * weights rotate through copies spanning `span` bytes so each call streams from HBM, not L2.
 * *us: mean microseconds per call over 20 calls. */
static int probe_gemv(int n, int k, size_t span, double *us) {
  *us = 0.0;
  size_t wb = (size_t)n * k * 2, copies = span / wb < 2 ? 2 : span / wb;
  void *w = NULL, *x = NULL;
  float *y = NULL;
  cudaEvent_t a = NULL, b = NULL;
  cudaError_t e = cudaMalloc(&w, wb * copies);
  if (e == cudaSuccess) e = cudaMalloc(&x, (size_t)k * 2);
  if (e == cudaSuccess) e = cudaMalloc((void **)&y, (size_t)n * sizeof(float));
  if (e == cudaSuccess) e = cudaMemset(w, 0, wb * copies);
  if (e == cudaSuccess) e = cudaMemset(x, 0, (size_t)k * 2);
  if (e == cudaSuccess) e = cudaEventCreate(&a);
  if (e == cudaSuccess) e = cudaEventCreate(&b);
  const int reps = 20;
  if (e == cudaSuccess) e = (cudaError_t)ssk_gemv(SSK_F16, y, x, w, 1, n, k, 0, 0); /* warm-up */
  if (e == cudaSuccess) e = cudaEventRecord(a, 0);
  for (int r = 0; r < reps && e == cudaSuccess; r++)
    e = (cudaError_t)ssk_gemv(SSK_F16, y, x, (char *)w + (size_t)(r % copies) * wb, 1, n, k, 0, 0);
  if (e == cudaSuccess) e = cudaEventRecord(b, 0);
  if (e == cudaSuccess) e = cudaEventSynchronize(b);
  float ms = 0.0f;
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, a, b);
  if (e == cudaSuccess) *us = 1000.0 * ms / reps;
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  cudaFree(w);
  cudaFree(x);
  cudaFree(y);
  if (e != cudaSuccess) {
    fprintf(stderr, "gpu_bench_decode: gemv probe %dx%d: %s\n", n, k, cudaGetErrorString(e));
    return 1;
  }
  return 0;
}

int main(void) {
  if (!ss_backend_available(SS_BACKEND_CUDA)) {
    printf("SKIP: gpu_bench_decode: no usable CUDA device (%s)\n", ss_cuda_device_error());
    return 0;
  }
  const int sinks = env_int("SS_BENCH_SINKS", 4), window = env_int("SS_BENCH_WINDOW", 2044);
  const int prefill = env_int("SS_BENCH_PREFILL", 4100), steps = env_int("SS_BENCH_STEPS", 32);
  const char *bl = getenv("SS_BENCH_BATCHES");
  if (!bl || !*bl) bl = "1,8,32";
  int batches[16], n_b = 0, max_b = 0;
  for (const char *p = bl; *p && n_b < 16;) {
    batches[n_b] = atoi(p);
    if (batches[n_b] > max_b) max_b = batches[n_b];
    n_b++;
    const char *c = strchr(p, ',');
    if (!c) break;
    p = c + 1;
  }
  if (max_b <= 0 || max_b > 256) DIE("bad SS_BENCH_BATCHES '%s'", bl);

  double t0 = now_s();
  const char *shape = getenv("SS_BENCH_SHAPE");
  const int tiny = shape && strcmp(shape, "tiny") == 0;
  ss_model_info info = gpu_info_llama2_7b();
  if (tiny) {
    info.dim = 128;
    info.hidden_dim = 352;
    info.n_layers = 2;
    info.n_heads = 4;
    info.n_kv_heads = 2;
    info.head_dim = 32;
    info.vocab_size = 512;
  }
  info.max_seq_len = sinks + window;
  ss_model *m = NULL;
  if (gpu_model_random(&info, 2024, 0.02f, 1, &m)) DIE("model: %s", ss_last_error());
  ss_engine_params ep = ss_engine_default_params();
  ep.backend = SS_BACKEND_CUDA;
  ep.max_sequences = max_b;
  ep.max_batch_tokens = 4096;
  ss_engine *e = NULL;
  if (ss_engine_create(m, &ep, &e, NULL, 0)) DIE("engine: %s", ss_last_error());
  printf("BENCH info model=%s setup_s=%.1f gemm=\"%s\"\n", tiny ? "tiny-llama-fp16-random" : "llama2-7b-shape-fp16-random",
         now_s() - t0, ss_cuda_gemm_path(e));
  fflush(stdout);

  int32_t *ids = malloc(sizeof(int32_t) * (size_t)max_b);
  for (int b = 0; b < max_b; b++) {
    ss_seq_params sp = ss_seq_default_params();
    sp.policy = SS_POLICY_STREAMING;
    sp.n_sinks = sinks;
    sp.capacity = sinks + window;
    if (ss_seq_create(e, &sp, &ids[b])) DIE("seq: %s", ss_last_error());
  }

  /* prefill: two sequences x 2048 tokens per step */
  const int chunk = 2048;
  int32_t *toks = malloc(sizeof(int32_t) * 4096);
  int32_t it_ids[2], it_n[2], flags[2] = {0, 0};
  uint64_t rs = 5;
  double tp = now_s();
  long long pre_tokens = 0;
  for (int b = 0; b < max_b; b += 2) {
    int nb = max_b - b < 2 ? max_b - b : 2;
    for (int fed = 0; fed < prefill; fed += chunk) {
      int n = prefill - fed < chunk ? prefill - fed : chunk;
      for (int k = 0; k < nb; k++) {
        it_ids[k] = ids[b + k];
        it_n[k] = n;
        for (int j = 0; j < n; j++) toks[k * n + j] = (int32_t)(3 + gm_next(&rs) % (uint64_t)(info.vocab_size - 3));
      }
      if (ss_engine_step(e, nb, it_ids, it_n, toks, flags, NULL, NULL, NULL, NULL, NULL))
        DIE("prefill: %s", ss_last_error());
      pre_tokens += (long long)n * nb;
    }
  }
  double prefill_s = now_s() - tp;
  printf("BENCH info prefill_tokens=%lld prefill_s=%.1f prefill_tok_s=%.0f\n", pre_tokens, prefill_s,
         pre_tokens / prefill_s);
  fflush(stdout);

  int32_t *nt = malloc(sizeof(int32_t) * (size_t)max_b), *out = malloc(sizeof(int32_t) * (size_t)max_b);
  int32_t *in = malloc(sizeof(int32_t) * (size_t)max_b), *fl = malloc(sizeof(int32_t) * (size_t)max_b);
  for (int b = 0; b < max_b; b++) {
    in[b] = 1 + b;
    nt[b] = 1;
    fl[b] = SS_STEP_SAMPLE;
  }
  double step1_us = 0.0;
  for (int bi = 0; bi < n_b; bi++) {
    int B = batches[bi];
    for (int s = 0; s < 3 + steps; s++) {
      if (s == 3) t0 = now_s();
      if (ss_engine_step(e, B, ids, nt, in, fl, NULL, out, NULL, NULL, NULL)) DIE("decode B=%d: %s", B, ss_last_error());
      memcpy(in, out, sizeof(int32_t) * (size_t)B);
    }
    double dt = now_s() - t0;
    if (B == 1) step1_us = 1e6 * dt / steps;
    ss_seq_stats st;
    ss_seq_get_stats(e, ids[0], &st);
    printf("BENCH ours batch=%d tok_s=%.2f step_ms=%.3f stream_pos=%lld n_evicted=%lld graphs=%s\n", B,
           B * steps / dt, 1000.0 * dt / steps, (long long)st.n_seen, (long long)st.n_evicted,
           ss_cuda_graph_note(e)[0] ? "off" : "on");
    if (ss_cuda_graph_note(e)[0]) printf("BENCH note %s\n", ss_cuda_graph_note(e));
    fflush(stdout);
  }

  /* roofline: bytes of weights read per decode step (fp16) / measured copy bandwidth */
  double w_elems = (double)info.n_layers * ((double)(info.n_heads + 2 * info.n_kv_heads) * info.head_dim * info.dim +
                                             (double)info.dim * info.n_heads * info.head_dim +
                                             3.0 * info.hidden_dim * info.dim) +
                   (double)info.vocab_size * info.dim;
  double wbytes = 2.0 * w_elems, bw = 0.0;
  size_t bw_bytes = (size_t)env_int("SS_BENCH_BW_MIB", 1024) << 20;
  if (ss_cuda_copy_bandwidth(0, bw_bytes, &bw)) DIE("bandwidth: %s", ss_last_error());
  double kv_bytes = 2.0 * 2.0 * info.n_layers * (double)info.n_kv_heads * info.head_dim * (sinks + window);
  printf("BENCH roofline weight_bytes=%.0f copy_bw=%.0f tok_s=%.2f kv_bytes_per_seq_step=%.0f\n", wbytes, bw,
         bw / wbytes, kv_bytes);
  fflush(stdout);

  /* where a batch-1 step goes: each decode matmul alone (the bandwidth it reaches), and the step
   * time they add up to, against the measured step */
  struct {
    const char *name;
    int n, k, per_layer;
  } mm[5] = {{"qkv", (info.n_heads + 2 * info.n_kv_heads) * info.head_dim, info.dim, 1},
             {"o", info.dim, info.n_heads * info.head_dim, 1},
             {"gate_up", 2 * info.hidden_dim, info.dim, 1},
             {"down", info.dim, info.hidden_dim, 1},
             {"lm_head", info.vocab_size, info.dim, 0}};
  double gemv_step_us = 0.0;
  for (int i = 0; i < 5; i++) {
    double us = 0.0;
    if (probe_gemv(mm[i].n, mm[i].k, bw_bytes / 2, &us)) DIE("gemv probe %s failed", mm[i].name);
    double bytes = 2.0 * mm[i].n * mm[i].k;
    printf("BENCH gemv name=%s n=%d k=%d us=%.1f gb_s=%.1f of_copy_bw=%.3f\n", mm[i].name, mm[i].n, mm[i].k, us,
           bytes / (us * 1e3), bw > 0 ? bytes / (us * 1e-6) / bw : 0.0);
    gemv_step_us += us * (mm[i].per_layer ? info.n_layers : 1);
  }
  if (step1_us > 0)
    printf("BENCH step_split batch1_step_us=%.1f gemv_us=%.1f other_us=%.1f\n", step1_us, gemv_step_us,
           step1_us - gemv_step_us);
  ss_engine_free(e);
  ss_model_free(m);
  free(ids);
  free(toks);
  free(nt);
  free(out);
  free(in);
  free(fl);
  return 0;
}
