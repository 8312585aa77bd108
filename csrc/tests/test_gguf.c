/*
 * test_gguf.c — GGUF files: written here from a loaded model through the export API
 * (ss_model_export_*, with a small GGUF writer of this test), loaded back by ss_model_load:
 * - round trips at F32 / F16 / BF16 / Q8_0 / Q4_0 (and as loaded): same info, every tensor as exported,
 *   Q/K rows in the adjacent-pair layout (and the engine's greedy tokens from BOS equal the F32 file's
 *   at F32 / F16 / BF16), tied and untied classifiers, mapped in place;
 * - every malformed file we can think of gets SS_ERR_FORMAT with a message naming the problem (and a
 *   seeded mutation loop: never a crash, never a model from a corrupt header);
 * - unknown formats: a file that is neither GGUF nor llama2.c names the known formats.
 * Files go to a mkdtemp folder.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "model.h"
#include "model_tensors.h"
#include "model_util.h"
#include "sinkstream.h"
#include "test_util.h"

static char g_tmp[64];

static const char *tmp_file(const char *name) {
  static char buf[4][512];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, sizeof buf[0], "%s/%s", g_tmp, name);
  return b;
}

static void write_bytes(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n)) exit(2);
  fclose(f);
}

static const char *write_gguf(const char *name, const ss_model *m, int32_t dtype, const write_opts *o) {
  buf b = gguf_bytes(m, dtype, o);
  const char *p = tmp_file(name);
  write_bytes(p, b.p, b.n);
  free(b.p);
  return p;
}

static ss_model *load(const char *path, int use_mmap) {
  ss_model_params p = ss_model_default_params();
  p.use_mmap = use_mmap;
  ss_model *m = NULL;
  int rc = ss_model_load(path, &p, &m, NULL, 0);
  CHECK(rc == SS_OK && m, "load %s: %s", path, ss_last_error());
  return m;
}

#define EXPECT_FAIL(path, status, needle)                                                                     \
  do {                                                                                                        \
    ss_model *m_ = NULL;                                                                                      \
    int rc_ = ss_model_load((path), NULL, &m_, NULL, 0);                                                      \
    CHECK(rc_ == (status) && !m_ && strstr(ss_last_error(), (needle)) && strstr(ss_last_error(), g_tmp),      \
          "%s: want %s containing '%s', got %s: %s", (path), ss_status_name(status), (needle), ss_status_name(rc_), \
          ss_last_error());                                                                                   \
    ss_model_free(m_);                                                                                        \
  } while (0)

static const write_opts PLAIN = {.skip = -1};

/* greedy tokens from BOS */
static void greedy(const ss_model *m, int32_t *out, int n) {
  ss_engine_params ep = ss_engine_default_params();
  ep.n_threads = 1;
  ss_engine *e = NULL;
  CHECK(ss_engine_create(m, &ep, &e, NULL, 0) == SS_OK, "%s", ss_last_error());
  if (!e) return;
  ss_seq_params sp = ss_seq_default_params();
  sp.policy = SS_POLICY_DENSE;
  sp.capacity = 128;
  int32_t id, one = 1;
  ss_seq_create(e, &sp, &id);
  out[0] = 1;
  for (int i = 1; i < n; i++) ss_engine_step(e, 1, &id, &one, &out[i - 1], NULL, NULL, &out[i], NULL, NULL, NULL);
  ss_engine_free(e);
}

static void test_round_trips(void) {
  ss_model *src = load(shared_path("models/stories260K/stories260K.bin"), 1);
  if (!src) return;
  enum { NTOK = 48 };
  int32_t ref[NTOK], got[NTOK];
  greedy(src, ref, NTOK);
  for (int32_t dt = SS_WEIGHTS_AS_FILE; dt <= SS_DTYPE_Q4_0; dt++) {
    char name[64];
    snprintf(name, sizeof name, "rt_%d.gguf", dt);
    const char *path = write_gguf(name, src, dt, &PLAIN);
    for (int mm = 1; mm >= 0; mm--) {
      ss_model *m = load(path, mm);
      if (!m) continue;
      ss_model_info a = src->info, b = m->info;
      CHECK(b.format == SS_FORMAT_GGUF && m->rope_adjacent == 1, "gguf format, adjacent RoPE rows");
      CHECK(a.dim == b.dim && a.hidden_dim == b.hidden_dim && a.n_layers == b.n_layers && a.n_heads == b.n_heads &&
                a.n_kv_heads == b.n_kv_heads && a.head_dim == b.head_dim && a.vocab_size == b.vocab_size &&
                a.max_seq_len == b.max_seq_len && a.bos_token_id == b.bos_token_id && a.eos_token_id == b.eos_token_id &&
                a.rope_theta == b.rope_theta && a.rms_norm_eps == b.rms_norm_eps && a.n_params == b.n_params,
            "dtype %d: info round trip (n_params %lld)", dt, (long long)b.n_params);
      CHECK(m->lm_head.data == m->tok_embeddings.data, "tied stays tied");
      CHECK(mm ? m->n_maps == 1 : m->n_maps == 0, "mapped %d: %d maps", mm, m->n_maps);
      int32_t want = dt == SS_WEIGHTS_AS_FILE ? SS_DTYPE_F32 : dt;
      CHECK(b.source_dtype == want && b.weight_dtype == want, "dtype %d: types %d %d", dt, b.source_dtype,
            b.weight_dtype);
      /* every tensor exported again from the loaded model is byte-identical to what was written */
      int32_t n;
      ss_model_export_count(m, &n);
      int bad = 0;
      for (int32_t i = 0; i < n; i++) {
        ss_tensor_info x, y;
        ss_model_export_info(src, i, dt, &x);
        ss_model_export_info(m, i, SS_WEIGHTS_AS_FILE, &y);
        size_t bytes = (size_t)x.row_bytes * (size_t)x.ne[1];
        uint8_t *p = malloc(bytes), *q = malloc(bytes);
        ss_model_export_rows(src, i, dt, 0, x.ne[1], p, bytes);
        ss_model_export_rows(m, i, SS_WEIGHTS_AS_FILE, 0, y.ne[1], q, bytes);
        bad += strcmp(x.name, y.name) || x.dtype != y.dtype || memcmp(p, q, bytes);
        free(p);
        free(q);
      }
      CHECK(bad == 0, "dtype %d: %d tensors differ after the round trip", dt, bad);
      if (dt <= SS_DTYPE_BF16 && mm) {
        greedy(m, got, NTOK);
        CHECK(memcmp(ref, got, sizeof ref) == 0, "dtype %d: greedy tokens differ from the llama2.c file", dt);
      }
      ss_model_free(m);
    }
  }
  /* Q rows really are in the adjacent layout: exported row 2j of a head is the model's row j */
  ss_tensor_info q;
  ss_model_export_info(src, 2, SS_DTYPE_F32, &q);
  CHECK(!strcmp(q.name, "blk.0.attn_q.weight"), "tensor 2 is %s", q.name);
  float *rows = malloc((size_t)q.row_bytes * 64);
  ss_model_export_rows(src, 2, SS_DTYPE_F32, 0, 64, rows, (size_t)q.row_bytes * 64);
  CHECK(!memcmp(rows + 2 * 64, (const float *)src->layers[0].wq.data + 1 * 64, 256) &&
            !memcmp(rows + 3 * 64, (const float *)src->layers[0].wq.data + 5 * 64, 256),
        "adjacent-pair export of Q");
  free(rows);

  /* an untied classifier, and a conversion at load of a GGUF file */
  ss_model copy = *src;
  float *head = malloc(512 * 64 * sizeof(float));
  for (int i = 0; i < 512 * 64; i++) head[i] = 0.25f * ((const float *)src->tok_embeddings.data)[i];
  copy.lm_head = ss_weight_make(head, SS_DTYPE_F32, 512, 64);
  const char *path = write_gguf("untied.gguf", &copy, SS_DTYPE_F16, &PLAIN);
  ss_model *m = load(path, 1);
  if (m) {
    CHECK(m->lm_head.data != m->tok_embeddings.data && m->lm_head.dtype == SS_DTYPE_F16 &&
              m->info.n_params == src->info.n_params + 512 * 64,
          "untied output.weight");
    ss_model_free(m);
  }
  ss_model_params p = ss_model_default_params();
  p.weights = SS_DTYPE_Q8_0;
  m = NULL;
  CHECK(ss_model_load(path, &p, &m, NULL, 0) == SS_OK && m && m->layers[0].wq.dtype == SS_DTYPE_Q8_0 &&
            m->lm_head.dtype == SS_DTYPE_Q8_0 && m->info.source_dtype == SS_DTYPE_F16,
        "GGUF F16 converted to Q8_0 at load: %s", ss_last_error());
  ss_model_free(m);
  free(head);

  /* export arguments */
  ss_tensor_info ti;
  int32_t n;
  CHECK(ss_model_export_info(src, -1, SS_DTYPE_F32, &ti) == SS_ERR_INVALID_ARGUMENT, "index -1");
  CHECK(ss_model_export_info(src, 0, 17, &ti) == SS_ERR_INVALID_ARGUMENT, "dtype 17");
  CHECK(ss_model_export_count(NULL, &n) == SS_ERR_INVALID_ARGUMENT, "NULL model");
  uint8_t small[8];
  CHECK(ss_model_export_rows(src, 0, SS_DTYPE_F32, 0, 1, small, sizeof small) == SS_ERR_INVALID_ARGUMENT &&
            strstr(ss_last_error(), "do not fit"),
        "small buffer: %s", ss_last_error());
  CHECK(ss_model_export_rows(src, 0, SS_DTYPE_F32, 510, 3, small, sizeof small) == SS_ERR_INVALID_ARGUMENT,
        "rows past the end");
  ss_model_free(src);
}

static void test_bad_files(void) {
  ss_model *src = load(shared_path("models/stories260K/stories260K.bin"), 1);
  if (!src) return;
  buf good = gguf_bytes(src, SS_DTYPE_Q8_0, &PLAIN);
  const char *p = tmp_file("bad.gguf");

  write_bytes(p, good.p, 20);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "shorter than the 24-byte header");
  write_bytes(p, good.p, 600);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "GGUF");
  write_bytes(p, good.p, good.n - 100);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "runs past the end of the file");
  uint8_t *c = malloc(good.n);
  memcpy(c, good.p, good.n);
  c[4] = 4;
  write_bytes(p, c, good.n);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "GGUF version 4 is not supported");
  memcpy(c, good.p, good.n);
  memset(c + 8, 0xff, 8); /* n_tensors 2^64 - 1 */
  write_bytes(p, c, good.n);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "cannot fit");
  memcpy(c, good.p, good.n);
  memset(c + 24, 0xff, 8); /* the first key's length */
  write_bytes(p, c, good.n);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "metadata key");
  free(c);

  struct {
    const char *what;
    write_opts o;
    const char *needle;
  } cases[] = {
      {"arch", {.skip = -1, .arch = "qwen2"}, "architecture 'qwen2' is not supported (supported: llama)"},
      {"missing", {.skip = 7}, "tensor 'blk.0.ffn_gate.weight' is missing"},
      {"extra", {.skip = -1, .extra_tensor = 1}, "tensor 'rope_freqs.weight' is not part of a llama model"},
      {"dup", {.skip = -1, .dup_tensor = 1}, "appears twice"},
      {"q4_k", {.skip = -1, .force_type = 12}, "has type Q4_K; supported: F32, F16, BF16, Q8_0, Q4_0"},
      {"misaligned", {.skip = -1, .misalign_offset = 1}, "is not a multiple of the alignment 32"},
      {"past_end", {.skip = -1, .past_end = 1}, "runs past the end of the file"},
      {"alignment", {.skip = -1, .bad_alignment = 1}, "general.alignment must be a power of two"},
      {"nested", {.skip = -1, .nested_array = 1}, "nested arrays are not supported"},
      {"shape", {.skip = -1, .wrong_shape = 1}, "GGUF"},
      {"scaling", {.skip = -1, .extra_meta = 1}, "RoPE scaling"},
      {"version2", {.skip = -1, .version = 1}, "GGUF version 1 is not supported"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    buf b = gguf_bytes(src, SS_DTYPE_Q8_0, &cases[k].o);
    write_bytes(p, b.p, b.n);
    free(b.p);
    EXPECT_FAIL(p, SS_ERR_FORMAT, cases[k].needle);
  }

  /* seeded mutations of the header and tensor table: a typed error or a model, never a crash */
  uint64_t s = 99;
  uint8_t *mut = malloc(good.n);
  int loaded = 0, failed = 0, bad_status = 0;
  size_t head = 2048 < good.n ? 2048 : good.n;
  for (int it = 0; it < 400; it++) {
    memcpy(mut, good.p, good.n);
    int flips = 1 + (int)(s % 4);
    for (int f = 0; f < flips; f++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      mut[(s >> 33) % head] ^= (uint8_t)(1u << ((s >> 20) % 8));
    }
    size_t len = it % 10 == 0 ? (size_t)((s >> 7) % good.n) : good.n;
    write_bytes(p, mut, len);
    ss_model *m = NULL;
    int rc = ss_model_load(p, NULL, &m, NULL, 0);
    if (rc == SS_OK) {
      loaded++;
      ss_model_free(m);
    } else {
      failed++;
      bad_status += (rc != SS_ERR_FORMAT && rc != SS_ERR_IO) || !ss_last_error()[0];
    }
  }
  CHECK(bad_status == 0 && failed > 100, "mutations: %d loaded, %d failed, %d with a wrong status", loaded, failed,
        bad_status);
  free(mut);
  free(good.p);

  /* unknown formats name the known ones */
  const char *u = tmp_file("weights.dat");
  write_bytes(u, (const uint8_t *)"hello world, not a model at all!", 32);
  EXPECT_FAIL(u, SS_ERR_FORMAT, "unknown model format");
  EXPECT_FAIL(u, SS_ERR_FORMAT, "GGUF v3 file (.gguf)");
  const char *g = tmp_file("x.gguf");
  write_bytes(g, (const uint8_t *)"GGUX0000000000000000000000000000", 32);
  EXPECT_FAIL(g, SS_ERR_FORMAT, "does not start with the 'GGUF' magic");
  const char *st = tmp_file("model.safetensors");
  write_bytes(st, (const uint8_t *)"\x10\0\0\0\0\0\0\0{}              ", 24);
  EXPECT_FAIL(st, SS_ERR_FORMAT, "pass the folder");
  ss_model_free(src);
}

static void remove_tmp(void) {
  DIR *d = opendir(g_tmp);
  if (!d) return;
  struct dirent *e;
  char p[700];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", g_tmp, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(g_tmp);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/ss_gguf_XXXXXX");
  if (!mkdtemp(g_tmp)) return 2;
  test_round_trips();
  test_bad_files();
  remove_tmp();
  return test_summary("test_gguf");
}
