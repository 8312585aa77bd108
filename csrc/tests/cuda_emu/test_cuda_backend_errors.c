/* test_cuda_backend_errors.c — the CUDA backend's failure paths, which a healthy GPU never takes,
 * driven through the CUDA emulator (device memory limit, injected launch errors and faults):
 *   - not enough device memory for the weights: ss_engine_create fails with SS_ERR_OUT_OF_MEMORY
 *     and a message, nothing leaks or crashes;
 *   - a KV cache that cannot grow: the step fails with SS_ERR_OUT_OF_MEMORY, the sequence is
 *     unchanged, and the same step succeeds once memory is there, with the CPU backend's logits;
 *   - healthy decode steps replay a CUDA graph (the path the GPU benchmark times);
 *   - a launch error while a decode step is captured into a CUDA graph: the step still succeeds
 *     (eagerly), graphs are turned off with a note, results stay right;
 *   - a device fault (sticky, like an illegal address): that step and every later one fail with
 *     SS_ERR_BACKEND and a message naming the failed call; its sequence is broken (later items on it
 *     fail on their own, naming the cause); stats, free and freeing the engine still work;
 *   - KV bytes per token of the f16 cache. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda.h"
#include "gpu_model.h"
#include "sinkstream.h"
#include "test_util.h"

static ss_model *load_model(void) {
  ss_model *m = NULL;
  ss_model_params mp = ss_model_default_params();
  if (ss_model_load(shared_path("models/stories260K/stories260K.bin"), &mp, &m, NULL, 0) == 0) return m;
  ss_model_info info = gpu_info_stories260k();
  CHECK(gpu_model_random(&info, 3, 0.3f, 0, &m) == 0, "synthetic model: %s", ss_last_error());
  return m;
}

static ss_engine *cuda_engine(const ss_model *m) {
  ss_engine_params ep = ss_engine_default_params();
  ep.backend = SS_BACKEND_CUDA;
  ep.max_batch_tokens = 256;
  ss_engine *e = NULL;
  int rc = ss_engine_create(m, &ep, &e, NULL, 0);
  CHECK(rc == 0, "cuda engine: %s", ss_last_error());
  return e;
}

static int32_t new_seq(ss_engine *e) {
  ss_seq_params sp = ss_seq_default_params();
  sp.capacity = 64;
  int32_t id = -1;
  CHECK(ss_seq_create(e, &sp, &id) == 0, "seq: %s", ss_last_error());
  return id;
}

static size_t device_bytes_used(void) {
  size_t free_b = 0, total = 0;
  cudaMemGetInfo(&free_b, &total);
  return total - free_b;
}

static void test_oom_at_create(const ss_model *m) {
  setenv("SSEMU_MEM_LIMIT", "100000", 1);
  ss_engine_params ep = ss_engine_default_params();
  ep.backend = SS_BACKEND_CUDA;
  ss_engine *e = NULL;
  size_t before = device_bytes_used();
  int rc = ss_engine_create(m, &ep, &e, NULL, 0);
  CHECK(rc == SS_ERR_OUT_OF_MEMORY && e == NULL, "create with 100 kB of device memory: rc %d", rc);
  CHECK(strstr(ss_last_error(), "cannot allocate") != NULL, "message: %s", ss_last_error());
  CHECK(device_bytes_used() == before, "a failed create frees what it allocated (%zu -> %zu bytes)", before,
        device_bytes_used());
  unsetenv("SSEMU_MEM_LIMIT");
}

/* KV bytes per token in the CUDA cache: f16 K and V of every layer; a full cache holds exactly capacity slots. */
static void test_kv_bytes_per_token(const ss_model *m) {
  ss_engine *g = cuda_engine(m);
  if (!g) return;
  int64_t per = ss_engine_kv_bytes_per_token(g);
  const ss_model_info *i = &m->info;
  CHECK(per == (int64_t)i->n_layers * 2 * i->n_kv_heads * i->head_dim * 2, "cuda kv bytes per token %lld",
        (long long)per);
  int32_t sg = new_seq(g), toks[64], n = 64;
  for (int k = 0; k < 64; k++) toks[k] = k % i->vocab_size;
  CHECK(ss_engine_step(g, 1, &sg, &n, toks, NULL, NULL, NULL, NULL, NULL, NULL) == 0, "fill: %s", ss_last_error());
  ss_seq_stats st;
  ss_seq_get_stats(g, sg, &st);
  CHECK(st.n_cached == 64 && st.cache_bytes == 64 * per, "full cache of 64: %lld bytes", (long long)st.cache_bytes);
  ss_engine_free(g);
}

static void test_kv_growth_oom(const ss_model *m, ss_engine *cpu) {
  ss_engine *g = cuda_engine(m);
  if (!g) return;
  int32_t sg = new_seq(g), sc = new_seq(cpu);
  int vocab = m->info.vocab_size;
  int32_t toks[48];
  for (int i = 0; i < 48; i++) toks[i] = i == 0 ? 1 : 3 + (i * 37) % (vocab - 3);
  int32_t n = 48, fl = SS_STEP_LOGITS;
  float *lg = malloc(sizeof(float) * (size_t)vocab), *lc = malloc(sizeof(float) * (size_t)vocab);
  char limit[32];
  snprintf(limit, sizeof limit, "%zu", device_bytes_used() + 256); /* no room for any KV storage */
  setenv("SSEMU_MEM_LIMIT", limit, 1);
  int rc = ss_engine_step(g, 1, &sg, &n, toks, &fl, NULL, NULL, lg, NULL, NULL);
  CHECK(rc == SS_ERR_OUT_OF_MEMORY, "step without room for the KV cache: rc %d (%s)", rc, ss_last_error());
  CHECK(strstr(ss_last_error(), "KV cache") != NULL, "message names the KV cache: %s", ss_last_error());
  ss_seq_stats st;
  ss_seq_get_stats(g, sg, &st);
  CHECK(st.n_seen == 0 && st.n_cached == 0, "the failed step changed the sequence (seen %lld)", (long long)st.n_seen);
  unsetenv("SSEMU_MEM_LIMIT");
  rc = ss_engine_step(g, 1, &sg, &n, toks, &fl, NULL, NULL, lg, NULL, NULL);
  CHECK(rc == 0, "the same step once memory is there: %s", ss_last_error());
  CHECK(ss_engine_step(cpu, 1, &sc, &n, toks, &fl, NULL, NULL, lc, NULL, NULL) == 0, "cpu: %s", ss_last_error());
  double e = rel_l2_error(lg, lc, vocab);
  CHECK(rc == 0 && e < 2e-2, "logits after the retried step vs CPU: rel err %.3g", e);
  ss_seq_free(cpu, sc);
  ss_engine_free(g);
  free(lg);
  free(lc);
}

/* Healthy decode steps of one shape run from a CUDA graph from the second step on (the first
 * warms up eagerly); graph_launches counts them. */
static void test_decode_uses_graphs(const ss_model *m) {
  ss_engine *g = cuda_engine(m);
  if (!g) return;
  int32_t sg = new_seq(g);
  int32_t one = 1, fl = SS_STEP_SAMPLE, tok = 1, out = 0;
  ssemu_stats before, after;
  ssemu_get_stats(&before);
  for (int s = 0; s < 5; s++) {
    CHECK(ss_engine_step(g, 1, &sg, &one, &tok, &fl, NULL, &out, NULL, NULL, NULL) == 0, "step: %s", ss_last_error());
    tok = out;
  }
  ssemu_get_stats(&after);
  CHECK(after.graph_launches - before.graph_launches == 4, "decode steps 2-5 replay a graph: %llu launches",
        after.graph_launches - before.graph_launches);
  CHECK(ss_cuda_graph_note(g)[0] == 0, "no graph note on a healthy run: '%s'", ss_cuda_graph_note(g));
  ss_engine_free(g);
}

static void test_capture_failure(const ss_model *m, ss_engine *cpu) {
  ss_engine *g = cuda_engine(m);
  if (!g) return;
  int32_t sg = new_seq(g), sc = new_seq(cpu);
  int vocab = m->info.vocab_size;
  float *lg = malloc(sizeof(float) * (size_t)vocab), *lc = malloc(sizeof(float) * (size_t)vocab);
  int32_t one = 1, fl = SS_STEP_LOGITS | SS_STEP_SAMPLE, tok = 1, out_g = 0, out_c = 0;
  double worst = 0;
  ssemu_stats before, after;
  ssemu_get_stats(&before);
  for (int s = 0; s < 6; s++) {
    /* step 0 runs eagerly (warm-up of the shape), step 1 is captured: its first launch fails */
    if (s == 1) ssemu_inject_launch_error(0, cudaErrorInvalidConfiguration);
    int rc = ss_engine_step(g, 1, &sg, &one, &tok, &fl, NULL, &out_g, lg, NULL, NULL);
    CHECK(rc == 0, "decode step %d with a failed capture: %s", s, ss_last_error());
    CHECK(ss_engine_step(cpu, 1, &sc, &one, &tok, &fl, NULL, &out_c, lc, NULL, NULL) == 0, "cpu: %s", ss_last_error());
    double e = rel_l2_error(lg, lc, vocab);
    if (e > worst) worst = e;
    tok = out_c;
  }
  CHECK(worst < 2e-2, "logits with graphs turned off vs CPU: rel err %.3g", worst);
  ssemu_get_stats(&after);
  CHECK(after.graph_launches == before.graph_launches, "no graph launched after the failed capture");
  CHECK(strstr(ss_cuda_graph_note(g), "capture failed") != NULL, "graph note: '%s'", ss_cuda_graph_note(g));
  ss_seq_free(cpu, sc);
  ss_engine_free(g);
  free(lg);
  free(lc);
}

static void test_device_fault(const ss_model *m) {
  ss_engine *g = cuda_engine(m);
  if (!g) return;
  int32_t sg = new_seq(g);
  int32_t one = 1, fl = SS_STEP_SAMPLE, tok = 1, out = 0;
  CHECK(ss_engine_step(g, 1, &sg, &one, &tok, &fl, NULL, &out, NULL, NULL, NULL) == 0, "healthy step: %s", ss_last_error());
  ssemu_inject_launch_error(3, cudaErrorLaunchFailure);
  int rc = ss_engine_step(g, 1, &sg, &one, &tok, &fl, NULL, &out, NULL, NULL, NULL);
  CHECK(rc == SS_ERR_BACKEND, "step with a device fault: rc %d", rc);
  CHECK(strstr(ss_last_error(), "cuda backend") != NULL && strstr(ss_last_error(), "launch failure") != NULL,
        "message: %s", ss_last_error());
  rc = ss_engine_step(g, 1, &sg, &one, &tok, &fl, NULL, &out, NULL, NULL, NULL);
  CHECK(rc == SS_ERR_BACKEND, "later steps fail too (the context is lost): rc %d", rc);
  /* the sequence of the failed forward is broken: per item, its later steps fail naming the cause,
   * without reaching the backend; stats and free still work */
  int32_t st = -1;
  ss_seq_stats before, after;
  ss_seq_get_stats(g, sg, &before);
  rc = ss_engine_step(g, 1, &sg, &one, &tok, &fl, NULL, &out, NULL, NULL, &st);
  CHECK(rc == SS_OK && st == SS_ERR_BACKEND && out == -1, "broken sequence, per item: rc %d status %d", rc, st);
  CHECK(strstr(ss_engine_item_error(g, 0), "broken") && strstr(ss_engine_item_error(g, 0), "launch failure"),
        "item message names the cause: '%s'", ss_engine_item_error(g, 0));
  CHECK(ss_seq_get_stats(g, sg, &after) == 0 && after.n_seen == before.n_seen && after.n_seen == 1,
        "stats of a broken sequence: seen %lld", (long long)after.n_seen);
  /* a fresh sequence cannot get KV storage on the lost context: its item fails on its own */
  int32_t fresh = new_seq(g), st2 = -1;
  rc = ss_engine_step(g, 1, &fresh, &one, &tok, &fl, NULL, &out, NULL, NULL, &st2);
  CHECK(rc == SS_OK && st2 == SS_ERR_BACKEND && strstr(ss_engine_item_error(g, 0), "cuda backend"),
        "fresh sequence on a lost context: rc %d status %d, '%s'", rc, st2, ss_engine_item_error(g, 0));
  CHECK(ss_seq_free(g, sg) == 0 && ss_seq_free(g, fresh) == 0, "broken sequences can be freed");
  ss_engine_free(g);
  ssemu_reset();
}

int main(void) {
  ss_model *m = load_model();
  if (!m) return test_summary("test_cuda_backend_errors");
  ss_engine_params cp = ss_engine_default_params();
  ss_engine *cpu = NULL;
  CHECK(ss_engine_create(m, &cp, &cpu, NULL, 0) == 0, "cpu engine: %s", ss_last_error());
  test_oom_at_create(m);
  test_kv_bytes_per_token(m);
  test_kv_growth_oom(m, cpu);
  test_decode_uses_graphs(m);
  test_capture_failure(m, cpu);
  test_device_fault(m);
  ss_engine_free(cpu);
  ss_model_free(m);
  return test_summary("test_cuda_backend_errors");
}
