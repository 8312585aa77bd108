/*
 * test_weight_types.c — the engine with weights in their own type and with an f16 KV cache:
 * - F16 / BF16 weights give bit for bit the logits of the same weights widened to F32 (bound 0: the
 *   kernels widen exactly and keep the F32 arithmetic), in batched chunked steps, every kernel table;
 * - Q8_0 / Q4_0 weights: batched steps equal single steps bit for bit, and the logits stay near the
 *   F32 model's (relative max error below 0.1 / 0.6 on this random model, uniform weights: the worst
 *   case for 4 bits; a broken kernel gives ~1; the real accuracy check is eval-ppl on stories260K);
 * - every kernel table gives the same logits (SS_CPU_ISA) for every weight type;
 * - the f16 KV cache: a chunk is bit for bit its tokens fed one at a time, logits within 1e-2 of the
 *   f32 cache, half the bytes per token; kv_dtype values the CPU backend does not have are refused;
 * - conversion at load (ss_model_params.weights) on stories260K: types, the F16 fallback for rows that
 *   are not whole blocks, weight_bytes, and that a converted model decodes.
 */
#include <math.h>
#include <stdlib.h>

#include "cpu_wkernels.h"
#include "error.h"
#include "model_util.h"
#include "test_util.h"
#include "tiny_model.h"

static tiny_cfg block_cfg(void) {
  tiny_cfg c = tiny_default_cfg();
  c.dim = 64;
  c.hidden = 96;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  return c;
}

static ss_engine *engine_kv(const ss_model *m, int32_t kv_dtype, int threads) {
  ss_engine_params ep = ss_engine_default_params();
  ep.n_threads = threads;
  ep.max_batch_tokens = 64;
  ep.max_sequences = 8;
  ep.kv_dtype = kv_dtype;
  ss_engine *e = NULL;
  int rc = ss_engine_create(m, &ep, &e, NULL, 0);
  CHECK(rc == SS_OK && e, "engine: %s", ss_last_error());
  return e;
}

enum { NSEQ = 3, STEPS = 9 };

/* A fixed script of batched chunked steps on NSEQ streaming sequences (capacity 12: evictions);
 * every logits row of every step goes to out[STEPS][NSEQ][vocab]. */
static int run_script(const ss_model *m, int32_t kv_dtype, int batched, float *out) {
  ss_engine *e = engine_kv(m, kv_dtype, 2);
  if (!e) return -1;
  int V = m->info.vocab_size;
  int32_t ids[NSEQ];
  for (int i = 0; i < NSEQ; i++) {
    ss_seq_params sp = ss_seq_default_params();
    sp.n_sinks = 2;
    sp.capacity = 12;
    CHECK(ss_seq_create(e, &sp, &ids[i]) == SS_OK, "%s", ss_last_error());
  }
  uint64_t rng = 77;
  for (int s = 0; s < STEPS; s++) {
    int32_t ntok[NSEQ], toks[64], flags[NSEQ], off = 0;
    for (int i = 0; i < NSEQ; i++) {
      ntok[i] = s == 0 ? 5 + i : (s % 3 == i ? 4 : 1);
      flags[i] = SS_STEP_LOGITS;
      for (int j = 0; j < ntok[i]; j++) toks[off++] = (int32_t)(tiny_rng(&rng) % (uint64_t)V);
    }
    float *o = out + (size_t)s * NSEQ * V;
    if (batched) {
      CHECK(ss_engine_step(e, NSEQ, ids, ntok, toks, flags, NULL, NULL, o, NULL, NULL) == SS_OK, "%s", ss_last_error());
    } else {
      off = 0;
      for (int i = 0; i < NSEQ; i++) {
        CHECK(ss_engine_step(e, 1, &ids[i], &ntok[i], toks + off, &flags[i], NULL, NULL, o + (size_t)i * V, NULL,
                             NULL) == SS_OK,
              "%s", ss_last_error());
        off += ntok[i];
      }
    }
  }
  ss_engine_free(e);
  return 0;
}

static size_t script_floats(const ss_model *m) { return (size_t)STEPS * NSEQ * m->info.vocab_size; }

static int count_diff(const float *a, const float *b, size_t n) {
  int d = 0;
  for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
  return d;
}

static double max_rel(const float *a, const float *b, size_t n) {
  double md = 0, mb = 1e-30;
  for (size_t i = 0; i < n; i++) {
    md = fmax(md, fabs((double)a[i] - b[i]));
    mb = fmax(mb, fabs((double)b[i]));
  }
  return md / mb;
}

/* Logits of the script (batched) with the default kernel table into out; under every other table this
 * CPU runs, they must agree bit for bit (builds with FMA: without it the portable C rounds differently). */
static void script_all_isas(const ss_model *m, int32_t kv_dtype, float *out, const char *what) {
  static const char *isas[] = {"portable", "avx2", "avx512"};
  size_t n = script_floats(m);
  float *other = malloc(n * sizeof(float));
  run_script(m, kv_dtype, 1, out);
  for (int k = 0; k < 3; k++) {
    if (!ss_wkernels_select(isas[k])) continue;
    setenv("SS_CPU_ISA", isas[k], 1);
    run_script(m, kv_dtype, 1, other);
#ifdef __FMA__
    CHECK(count_diff(out, other, n) == 0, "%s: the %s table differs from the default one", what, isas[k]);
#endif
  }
  unsetenv("SS_CPU_ISA");
  free(other);
}

static void test_half_weights_equal_widened(void) {
  for (int32_t dt = SS_DTYPE_F16; dt <= SS_DTYPE_BF16; dt++) {
    tiny_model stored, widened;
    if (tiny_model_init(&stored, tiny_default_cfg()) || tiny_model_init(&widened, tiny_default_cfg()) ||
        tiny_model_convert(&stored, dt, 0) || tiny_model_convert(&widened, dt, 1)) {
      CHECK(0, "tiny models");
      return;
    }
    CHECK(stored.m.layers[0].wq.dtype == dt && widened.m.layers[0].wq.dtype == SS_DTYPE_F32, "types");
    size_t n = script_floats(&stored.m);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    script_all_isas(&stored.m, SS_DTYPE_F32, a, ss_dtype_name(dt));
    run_script(&widened.m, SS_DTYPE_F32, 1, b);
#ifdef __FMA__
    CHECK(count_diff(a, b, n) == 0, "%s weights: %d logits differ from the widened F32 model", ss_dtype_name(dt),
          count_diff(a, b, n));
#else
    CHECK(max_rel(a, b, n) < 1e-5, "%s weights vs widened", ss_dtype_name(dt));
#endif
    free(a);
    free(b);
    tiny_model_free(&stored);
    tiny_model_free(&widened);
  }
}

static void test_block_weights(void) {
  tiny_model f;
  if (tiny_model_init(&f, block_cfg())) return;
  size_t n = script_floats(&f.m);
  float *ref = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
  run_script(&f.m, SS_DTYPE_F32, 1, ref);
  for (int32_t dt = SS_DTYPE_Q8_0; dt <= SS_DTYPE_Q4_0; dt++) {
    tiny_model q;
    if (tiny_model_init(&q, block_cfg()) || tiny_model_convert(&q, dt, 0)) return;
    CHECK(q.m.layers[1].w_down.dtype == dt && q.m.lm_head.dtype == dt, "all matrices are %s", ss_dtype_name(dt));
    script_all_isas(&q.m, SS_DTYPE_F32, a, ss_dtype_name(dt));
    run_script(&q.m, SS_DTYPE_F32, 0, b);
    CHECK(count_diff(a, b, n) == 0, "%s: batched steps differ from single steps in %d logits", ss_dtype_name(dt),
          count_diff(a, b, n));
    double err = max_rel(a, ref, n), bound = dt == SS_DTYPE_Q8_0 ? 0.1 : 0.6; /* sanity: a broken kernel gives ~1 */
    CHECK(err < bound && err > 0, "%s vs F32 logits: relative max error %.4g (bound %.2g)", ss_dtype_name(dt), err,
          bound);
    printf("test_weight_types: %s vs F32 logits, relative max error %.4g\n", ss_dtype_name(dt), err);
    tiny_model_free(&q);
  }
  free(ref), free(a), free(b);
  tiny_model_free(&f);
}

static void test_kv_f16(void) {
  tiny_model t;
  if (tiny_model_init(&t, tiny_default_cfg())) return;
  size_t n = script_floats(&t.m);
  float *h = malloc(n * sizeof(float)), *f = malloc(n * sizeof(float)), *one = malloc(n * sizeof(float));
  script_all_isas(&t.m, SS_DTYPE_F16, h, "f16 KV");
  run_script(&t.m, SS_DTYPE_F32, 1, f);
  run_script(&t.m, SS_DTYPE_F16, 0, one);
  CHECK(count_diff(h, one, n) == 0, "f16 KV: batched differs from single steps");
  double err = max_rel(h, f, n);
  CHECK(err > 0 && err < 1e-2, "f16 vs f32 KV: relative max error %.3g", err);

  /* a chunk is exactly its tokens one at a time (the chunk's own keys are rounded like the cache's) */
  ss_engine *e = engine_kv(&t.m, SS_DTYPE_F16, 1);
  int V = t.cfg.vocab;
  ss_seq_params sp = ss_seq_default_params();
  sp.n_sinks = 2;
  sp.capacity = 8;
  int32_t a, b, toks[20], lg = SS_STEP_LOGITS, n20 = 20, one_tok = 1;
  ss_seq_create(e, &sp, &a);
  ss_seq_create(e, &sp, &b);
  for (int i = 0; i < 20; i++) toks[i] = (i * 7 + 3) % V;
  float *la = malloc((size_t)V * sizeof(float)), *lb = malloc((size_t)V * sizeof(float));
  CHECK(ss_engine_step(e, 1, &a, &n20, toks, &lg, NULL, NULL, la, NULL, NULL) == SS_OK, "%s", ss_last_error());
  for (int i = 0; i < 20; i++)
    CHECK(ss_engine_step(e, 1, &b, &one_tok, toks + i, &lg, NULL, NULL, lb, NULL, NULL) == SS_OK, "%s",
          ss_last_error());
  CHECK(count_diff(la, lb, (size_t)V) == 0, "f16 KV: a 20-token chunk differs from 20 single tokens");

  int64_t per = ss_engine_kv_bytes_per_token(e);
  ss_engine *e32 = engine_kv(&t.m, SS_DTYPE_F32, 1);
  CHECK(per * 2 == ss_engine_kv_bytes_per_token(e32) && per == (int64_t)t.cfg.n_layers * 2 * t.cfg.n_kv_heads *
                                                                     t.cfg.head_dim * 2,
        "f16 KV bytes per token %lld", (long long)per);
  ss_seq_stats st;
  ss_seq_get_stats(e, a, &st);
  CHECK(st.cache_bytes == 8 * per, "full f16 cache holds 8 x %lld bytes: %lld", (long long)per,
        (long long)st.cache_bytes);
  ss_engine_free(e32);
  ss_engine_free(e);

  ss_engine_params ep = ss_engine_default_params();
  ss_engine *bad = NULL;
  ep.kv_dtype = 9;
  CHECK(ss_engine_create(&t.m, &ep, &bad, NULL, 0) == SS_ERR_INVALID_ARGUMENT && !bad, "kv_dtype 9");
  ep.kv_dtype = SS_DTYPE_Q8_0;
  CHECK(ss_engine_create(&t.m, &ep, &bad, NULL, 0) == SS_ERR_UNSUPPORTED && !bad &&
            strstr(ss_last_error(), "kv_dtype"),
        "kv_dtype Q8_0 on the CPU: %s", ss_last_error());
  setenv("SS_CPU_ISA", "bogus", 1);
  ep = ss_engine_default_params();
  CHECK(ss_engine_create(&t.m, &ep, &bad, NULL, 0) == SS_ERR_UNSUPPORTED && strstr(ss_last_error(), "SS_CPU_ISA"),
        "SS_CPU_ISA=bogus: %s", ss_last_error());
  unsetenv("SS_CPU_ISA");
  free(h), free(f), free(one), free(la), free(lb);
  tiny_model_free(&t);
}

static void test_convert_at_load(void) {
  const char *path = shared_path("models/stories260K/stories260K.bin");
  ss_model *f32 = NULL;
  CHECK(ss_model_load(path, NULL, &f32, NULL, 0) == SS_OK, "%s", ss_last_error());
  if (!f32) return;
  int64_t f32_bytes = f32->info.weight_bytes;
  for (int32_t dt = SS_DTYPE_F16; dt <= SS_DTYPE_Q4_0; dt++) {
    ss_model_params p = ss_model_default_params();
    p.weights = dt;
    ss_model *m = NULL;
    int rc = ss_model_load(path, &p, &m, NULL, 0);
    CHECK(rc == SS_OK, "load as %s: %s", ss_dtype_name(dt), ss_last_error());
    if (!m) continue;
    int block = ss_dtype_block(dt) > 1;
    /* the (tied) classifier gets Q8_0 at Q4_0 */
    CHECK(m->layers[0].wq.dtype == dt && m->tok_embeddings.dtype == (dt == SS_DTYPE_Q4_0 ? SS_DTYPE_Q8_0 : dt) &&
              m->lm_head.data == m->tok_embeddings.data,
          "%s: converted (embeddings %s), still tied", ss_dtype_name(dt), ss_dtype_name(m->tok_embeddings.dtype));
    /* w_down rows are 172 weights: not whole blocks, so F16 */
    CHECK(m->layers[4].w_down.dtype == (block ? SS_DTYPE_F16 : dt), "%s: w_down %s", ss_dtype_name(dt),
          ss_dtype_name(m->layers[4].w_down.dtype));
    CHECK(m->info.weight_dtype == dt && m->info.source_dtype == SS_DTYPE_F32, "%s: info types", ss_dtype_name(dt));
    CHECK(m->info.weight_bytes < f32_bytes * (dt == SS_DTYPE_Q4_0 ? 0.35 : 0.55), "%s: %lld weight bytes (f32 %lld)",
          ss_dtype_name(dt), (long long)m->info.weight_bytes, (long long)f32_bytes);
    /* it decodes: the log-likelihood of a short greedy F32 continuation stays close */
    ss_engine *e = engine_kv(m, SS_KV_DTYPE_DEFAULT, 1);
    ss_seq_params sp = ss_seq_default_params();
    int32_t id, one = 1, tok = 1, next = -1;
    ss_seq_create(e, &sp, &id);
    CHECK(ss_engine_step(e, 1, &id, &one, &tok, NULL, NULL, &next, NULL, NULL, NULL) == SS_OK && next >= 0,
          "%s decodes: %s", ss_dtype_name(dt), ss_last_error());
    ss_engine_free(e);
    ss_model_free(m);
  }
  ss_model_params p = ss_model_default_params();
  p.weights = 11;
  ss_model *m = NULL;
  CHECK(ss_model_load(path, &p, &m, NULL, 0) == SS_ERR_INVALID_ARGUMENT && !m && strstr(ss_last_error(), "weights"),
        "weights 11: %s", ss_last_error());
  ss_model_free(f32);
}

int main(void) {
  test_half_weights_equal_widened();
  test_block_weights();
  test_kv_f16();
  test_convert_at_load();
  return test_summary("test_weight_types");
}
