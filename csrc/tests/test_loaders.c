/*
 * test_loaders.c — model loaders: llama2.c and Hugging Face agree on
 * stories260K (which proves the RoPE row permutation), F16/BF16 conversion,
 * sharded folders, Qwen2 biases, and every malformed input we can think of
 * returns SS_ERR_FORMAT / SS_ERR_IO with a message naming the file (plus a
 * seeded mutation loop over the real files). Corrupt files are written to a
 * mkdtemp folder, never into the shared material.
 */
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "json.h"
#include "model.h"
#include "model_util.h"
#include "sinkstream.h"
#include "test_util.h"

static char g_tmp[64];

/* ---------------------------------------------------------------------------
 * small file helpers */

static const char *tmp_path(const char *rel) {
  static char buf[8][512];
  static int k = 0;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%s/%s", g_tmp, rel);
  return b;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  if (n && fwrite(data, 1, n, f) != n) {
    perror(path);
    exit(2);
  }
  fclose(f);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static uint8_t *read_whole(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)sz + 1);
  if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) exit(2);
  fclose(f);
  *n = (size_t)sz;
  return b;
}

/* Empty (and create) the folder tmp/<name>. */
static const char *fresh_dir(const char *name) {
  const char *d = tmp_path(name);
  DIR *dir = opendir(d);
  if (dir) {
    struct dirent *e;
    char p[1024];
    while ((e = readdir(dir))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      snprintf(p, sizeof p, "%s/%s", d, e->d_name);
      unlink(p);
    }
    closedir(dir);
  } else {
    mkdir(d, 0700);
  }
  return d;
}

static void remove_tmp(void) {
  DIR *dir = opendir(g_tmp);
  if (!dir) return;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(dir))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", g_tmp, e->d_name);
    if (unlink(p) != 0) { /* a folder */
      char name[256];
      snprintf(name, sizeof name, "%s", e->d_name);
      fresh_dir(name);
      rmdir(p);
    }
  }
  closedir(dir);
  rmdir(g_tmp);
}

/* Load `path`; expect failure `status` with a message naming `mention`
 * (the file at fault) and containing `what`. */
#define EXPECT_FAIL2(path, mention, status, what)                                                    \
  do {                                                                                               \
    ss_model *m_ = (ss_model *)1;                                                                    \
    int rc_ = ss_model_load(path, NULL, &m_, NULL, 0);                                                        \
    const char *e_ = ss_last_error();                                                                \
    CHECK(rc_ == (status), "%s: got %s want %s (%s)", path, ss_status_name(rc_), ss_status_name(status), e_); \
    CHECK(rc_ != SS_OK || m_ != NULL, "out not set");                                                \
    CHECK(rc_ == SS_OK || m_ == NULL, "out not cleared");                                            \
    CHECK(strstr(e_, mention) != NULL, "message does not name %s: %s", mention, e_);                 \
    CHECK(strstr(e_, what) != NULL, "message lacks '%s': %s", what, e_);                             \
    if (rc_ == SS_OK) ss_model_free(m_);                                                             \
  } while (0)
#define EXPECT_FAIL(path, status, what) EXPECT_FAIL2(path, path, status, what)

/* ---------------------------------------------------------------------------
 * half precision (test-side reference, independent of the library) */

static float ref_f16(uint16_t h) {
  int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  float v;
  if (exp == 31)
    v = mant ? NAN : INFINITY;
  else if (exp == 0)
    v = ldexpf((float)mant, -24);
  else
    v = ldexpf((float)(1024 + mant), exp - 25);
  return sign ? -v : v;
}

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* f32 -> f16 bits, round to nearest even, normal range only (test data). */
static uint16_t to_f16(float f) {
  uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000;
  float a = fabsf(f);
  if (a < ldexpf(1, -14)) { /* subnormal or zero: multiple of 2^-24 */
    long q = lrintf(a * ldexpf(1, 24));
    return (uint16_t)(sign | (uint32_t)q);
  }
  int e;
  float fr = frexpf(a, &e); /* a = fr * 2^e, fr in [0.5, 1) */
  long mant = lrintf(fr * 2048.0f); /* 11 significant bits */
  if (mant == 2048) {
    mant = 1024;
    e++;
  }
  int exp = e - 1 + 15;
  if (exp >= 31) return (uint16_t)(sign | 0x7c00);
  return (uint16_t)(sign | (uint32_t)exp << 10 | (uint32_t)(mant - 1024));
}

static void test_half_conversion(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float got = ss_f16_to_f32((uint16_t)h), want = ref_f16((uint16_t)h);
    int exp = (h >> 10) & 31, mant = h & 1023;
    if (exp == 31 && mant) { /* NaN: sign and payload kept */
      uint32_t w = ((h & 0x8000u) << 16) | 0x7f800000u | ((uint32_t)mant << 13);
      if (bits_of(got) != w) bad++;
    } else if (bits_of(got) != bits_of(want)) {
      bad++;
    }
  }
  CHECK(bad == 0, "%d of 65536 f16 values convert wrongly", bad);
  CHECK(ss_f16_to_f32(0x0001) == ldexpf(1, -24), "smallest f16 subnormal");
  CHECK(ss_f16_to_f32(0x03ff) == ldexpf(1023, -24), "largest f16 subnormal");
  CHECK(bits_of(ss_f16_to_f32(0x8000)) == 0x80000000u, "-0");
  CHECK(ss_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
  CHECK(ss_f16_to_f32(0xfc00) == -INFINITY, "-inf");

  CHECK(ss_bf16_to_f32(0x3f80) == 1.0f, "bf16 1");
  CHECK(ss_bf16_to_f32(0xc000) == -2.0f, "bf16 -2");
  CHECK(ss_bf16_to_f32(0x7f80) == INFINITY, "bf16 inf");
  CHECK(ss_bf16_to_f32(0xff80) == -INFINITY, "bf16 -inf");
  CHECK(isnan(ss_bf16_to_f32(0x7fc1)) && bits_of(ss_bf16_to_f32(0x7fc1)) == 0x7fc10000u, "bf16 nan payload");
  CHECK(ss_bf16_to_f32(0x0001) == ldexpf(1, -133), "bf16 subnormal");
  CHECK(bits_of(ss_bf16_to_f32(0x8000)) == 0x80000000u, "bf16 -0");

  /* the unaligned bulk path */
  uint8_t raw[7] = {0, 0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00}; /* f16 1.0, -2.0, 2^-24 at offset 1 */
  float out[3];
  ss_convert_to_f32(out, raw + 1, 3, SS_DTYPE_F16);
  CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1, -24), "bulk f16 %g %g %g", out[0], out[1], out[2]);
  CHECK(to_f16(1.0f) == 0x3c00 && to_f16(-2.0f) == 0xc000 && to_f16(ldexpf(1, -24)) == 1, "test-side to_f16");
}

/* ---------------------------------------------------------------------------
 * JSON parser */

static int parses(const char *s) {
  ss_json_doc d;
  int rc = ss_json_parse(&d, s, strlen(s));
  ss_json_free(&d);
  return rc == 0;
}

static void test_json(void) {
  const char *text =
      "{\"s\":\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0000z\", \"n\": -1.5e3, \"i\":42,"
      " \"arr\":[1,[2,[]],{}], \"t\":true, \"f\":false, \"z\":null, \"dup\":1, \"dup\":2,"
      " \"lone\":\"\\ud800x\", \"e\": 1E+2, \"zero\": -0}";
  ss_json_doc d;
  int rc = ss_json_parse(&d, text, strlen(text));
  CHECK(rc == 0, "parse: %s", d.error);
  if (rc == 0) {
    const ss_json *r = ss_json_root(&d);
    const ss_json *s = ss_json_get(&d, r, "s");
    const char want[] = "q\"b\\s/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\0z";
    CHECK(s && s->type == SS_JSON_STRING && s->str_len == sizeof want - 1 && !memcmp(s->str, want, sizeof want - 1),
          "escapes");
    CHECK(ss_json_get(&d, r, "n")->number == -1500.0, "number");
    int64_t i;
    CHECK(ss_json_as_int64(ss_json_get(&d, r, "i"), &i) && i == 42, "int");
    CHECK(!ss_json_as_int64(ss_json_get(&d, r, "n"), &i) || i == -1500, "int of -1.5e3");
    const ss_json *arr = ss_json_get(&d, r, "arr");
    CHECK(arr && arr->type == SS_JSON_ARRAY && arr->n_children == 3, "array");
    const ss_json *inner = ss_json_next(&d, ss_json_first(&d, arr));
    CHECK(inner && inner->n_children == 2 && ss_json_first(&d, inner)->number == 2.0, "nested");
    CHECK(ss_json_get(&d, r, "t")->boolean == 1 && ss_json_get(&d, r, "f")->boolean == 0, "bools");
    CHECK(ss_json_get(&d, r, "z")->type == SS_JSON_NULL, "null");
    CHECK(ss_json_get(&d, r, "dup")->number == 2.0, "duplicate key: last wins");
    CHECK(!strcmp(ss_json_get(&d, r, "lone")->str, "\xef\xbf\xbdx"), "lone surrogate -> U+FFFD");
    CHECK(ss_json_get(&d, r, "e")->number == 100.0, "exponent");
    CHECK(ss_json_get(&d, r, "missing") == NULL, "missing key");
    CHECK(ss_json_get(&d, arr, "s") == NULL, "get on array");
  }
  ss_json_free(&d);

  /* only [text, text + len) is read: no NUL terminator needed */
  char buf[8] = {'[', '1', ',', '2', ']', 'x', 'x', 'x'};
  CHECK(ss_json_parse(&d, buf, 5) == 0 && d.nodes[0].n_children == 2, "bounded length");
  ss_json_free(&d);

  const char *good[] = {"0", "-0", "1e400", "\"\"", "[]", "{}", " [ 1 , { \"a\" : [ ] } ] ", "1.25e-7"};
  for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) CHECK(parses(good[k]), "should parse: %s", good[k]);
  const char *bad[] = {"",        "{",        "[1,]",      "{\"a\" 1}",  "{\"a\":1,}",  "tru",      "\"abc",
                       "\"\\x\"", "[1] 2",    "\"a\tb\"",  "{1:2}",      "01",         "1.",       ".5",
                       "-",       "1e",       "+1",        "[1 2]",      "\"\\u12\"",   "nul",      "{\"a\":}",
                       "[\"\\",   "\"\\u00",  "{\"a\":1]", "[1}",        "\xff",       "[-]",      "1e+"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) CHECK(!parses(bad[k]), "should fail: %s", bad[k]);

  /* depth limit: 64 nested arrays parse, 65 and 100000 do not (no recursion) */
  size_t deep = 100000;
  char *s = malloc(2 * deep + 1);
  for (size_t k = 0; k < deep; k++) s[k] = '[', s[2 * deep - 1 - k] = ']';
  s[2 * deep] = '\0';
  CHECK(ss_json_parse(&d, s + deep - 64, 128) == 0, "depth 64: %s", d.error);
  ss_json_free(&d);
  CHECK(ss_json_parse(&d, s + deep - 65, 130) == -1 && strstr(d.error, "deep"), "depth 65");
  ss_json_free(&d);
  CHECK(ss_json_parse(&d, s, 2 * deep) == -1, "depth 100000");
  ss_json_free(&d);
  free(s);

  ss_json v = {.type = SS_JSON_NUMBER, .number = 1e20};
  int64_t i;
  CHECK(!ss_json_as_int64(&v, &i), "1e20 is not an int64");
  v.number = 1.5;
  CHECK(!ss_json_as_int64(&v, &i), "1.5 is not an int");
  v.number = NAN;
  CHECK(!ss_json_as_int64(&v, &i), "NaN is not an int");
  v.number = -9007199254740992.0;
  CHECK(ss_json_as_int64(&v, &i) && i == -9007199254740992LL, "-2^53");
}

/* ---------------------------------------------------------------------------
 * the reference model in both formats */

static const char *bin_path(void) { return shared_path("models/stories260K/stories260K.bin"); }
static const char *hf_path(void) { return shared_path("models/stories260K-hf"); }

static ss_model *load_ok(const char *path, int use_mmap) {
  ss_model_params p = ss_model_default_params();
  p.use_mmap = use_mmap;
  ss_model *m = NULL;
  int rc = ss_model_load(path, &p, &m, NULL, 0);
  CHECK(rc == SS_OK && m, "load %s (mmap %d): %s %s", path, use_mmap, ss_status_name(rc), ss_last_error());
  return rc == SS_OK ? m : NULL;
}

/* The f32 values of a matrix: its data when F32, else a widened copy (freed by free_wide). */
static void *g_wide[4096];
static int g_n_wide;
static const float *wide(const ss_weight *w) {
  if (w->dtype == SS_DTYPE_F32) return w->data;
  float *f = malloc((size_t)w->rows * w->cols * sizeof(float));
  if (!f || g_n_wide == 4096) exit(2);
  for (int r = 0; r < w->rows; r++) ss_weight_row_f32(w, r, f + (size_t)r * w->cols);
  g_wide[g_n_wide++] = f;
  return f;
}
static void free_wide(void) {
  while (g_n_wide > 0) free(g_wide[--g_n_wide]);
}

/* Every tensor of the model with its size in floats (lm_head last). */
typedef struct tensor_ref {
  char name[96];
  const float *data;
  size_t rows, cols; /* cols 0: 1-D */
} tensor_ref;

static int list_tensors(const ss_model *m, tensor_ref *out, int with_bias) {
  const ss_model_info *in = &m->info;
  size_t dim = (size_t)in->dim, hid = (size_t)in->hidden_dim, q = (size_t)in->n_heads * in->head_dim,
         kv = (size_t)in->n_kv_heads * in->head_dim;
  int n = 0;
#define ADD(nm, ptr, r, c) (snprintf(out[n].name, sizeof out[n].name, "%s", nm), out[n].data = (ptr), \
                            out[n].rows = (r), out[n].cols = (c), n++)
  ADD("model.embed_tokens.weight", wide(&m->tok_embeddings), (size_t)in->vocab_size, dim);
  for (int l = 0; l < in->n_layers; l++) {
    const ss_layer_weights *w = &m->layers[l];
    char nm[96];
#define LADD(suffix, ptr, r, c) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), ADD(nm, ptr, r, c))
    LADD("input_layernorm.weight", w->attn_norm, dim, 0);
    LADD("self_attn.q_proj.weight", wide(&w->wq), q, dim);
    LADD("self_attn.k_proj.weight", wide(&w->wk), kv, dim);
    LADD("self_attn.v_proj.weight", wide(&w->wv), kv, dim);
    if (with_bias) {
      LADD("self_attn.q_proj.bias", w->bq, q, 0);
      LADD("self_attn.k_proj.bias", w->bk, kv, 0);
      LADD("self_attn.v_proj.bias", w->bv, kv, 0);
    }
    LADD("self_attn.o_proj.weight", wide(&w->wo), dim, q);
    LADD("post_attention_layernorm.weight", w->ffn_norm, dim, 0);
    LADD("mlp.gate_proj.weight", wide(&w->w_gate), hid, dim);
    LADD("mlp.up_proj.weight", wide(&w->w_up), hid, dim);
    LADD("mlp.down_proj.weight", wide(&w->w_down), dim, hid);
#undef LADD
  }
  ADD("model.norm.weight", m->final_norm, dim, 0);
  ADD("lm_head.weight", wide(&m->lm_head), (size_t)in->vocab_size, dim);
#undef ADD
  return n;
}

static size_t numel(const tensor_ref *t) { return t->rows * (t->cols ? t->cols : 1); }

static void test_reference_models(void) {
  ss_model *a = load_ok(bin_path(), 1), *b = load_ok(hf_path(), 1);
  if (!a || !b) goto done;
  ss_model_info ia, ib;
  CHECK(ss_model_get_info(a, &ia) == SS_OK && ss_model_get_info(b, &ib) == SS_OK, "get_info");
  CHECK(ia.dim == 64 && ia.hidden_dim == 172 && ia.n_layers == 5 && ia.n_heads == 8 && ia.n_kv_heads == 4 &&
            ia.head_dim == 8 && ia.vocab_size == 512 && ia.max_seq_len == 512,
        "llama2.c shape");
  CHECK(ia.arch == SS_ARCH_LLAMA && ia.bos_token_id == 1 && ia.eos_token_id == 2 && ia.source_dtype == SS_DTYPE_F32 &&
            ia.rope_theta == 10000.0f && ia.rms_norm_eps == 1e-5f,
        "llama2.c metadata");
  CHECK(ia.n_params == 260032, "llama2.c n_params %lld", (long long)ia.n_params);
  CHECK(ia.format == SS_FORMAT_LLAMA2C && ib.format == SS_FORMAT_HF, "formats %d %d", ia.format, ib.format);
  CHECK(ia.weight_dtype == SS_DTYPE_F32 && ia.weight_bytes == 4 * 260032, /* tied: the table is read whole as the classifier */
        "weight bytes per token %lld", (long long)ia.weight_bytes);
  ib.format = ia.format;
  CHECK(memcmp(&ia, &ib, sizeof ia) == 0, "llama2.c and HF infos differ (hf n_params %lld eps %g)",
        (long long)ib.n_params, (double)ib.rms_norm_eps);
  CHECK(a->lm_head.data == a->tok_embeddings.data && b->lm_head.data == b->tok_embeddings.data, "tied classifier");
  CHECK(a->n_maps == 1 && b->n_maps == 1, "mmap used: %d %d", a->n_maps, b->n_maps);
  for (int l = 0; l < 5; l++) CHECK(!a->layers[l].bq && !b->layers[l].bq, "no biases");

  /* Every tensor identical, bit for bit: this is what proves the llama2.c
   * Q/K permutation produces the HF rotate-half layout. */
  static tensor_ref ta[128], tb[128];
  int n = list_tensors(a, ta, 0);
  CHECK(list_tensors(b, tb, 0) == n, "tensor count");
  for (int k = 0; k < n; k++)
    CHECK(memcmp(ta[k].data, tb[k].data, numel(&ta[k]) * sizeof(float)) == 0, "%s differs", ta[k].name);

  /* ... and the permutation is not the identity: raw llama2.c wq row 2j of a
   * head is HF row j, row 2j+1 is HF row hd/2 + j. */
  size_t nbytes;
  uint8_t *raw = read_whole(bin_path(), &nbytes);
  const float *raw_wq = (const float *)(const void *)(raw + 28) + 512 * 64 + 5 * 64;
  const float *b_wq = wide(&b->layers[0].wq);
  CHECK(memcmp(raw_wq, b_wq, 64 * 64 * sizeof(float)) != 0, "raw wq should be in Meta layout");
  int perm_ok = 1;
  for (int h = 0; h < 8; h++)
    for (int j = 0; j < 4; j++) {
      perm_ok &= !memcmp(b_wq + (h * 8 + j) * 64, raw_wq + (h * 8 + 2 * j) * 64, 64 * sizeof(float));
      perm_ok &= !memcmp(b_wq + (h * 8 + 4 + j) * 64, raw_wq + (h * 8 + 2 * j + 1) * 64, 256);
    }
  CHECK(perm_ok, "row permutation direction");
  free(raw);

  /* use_mmap = 0: same values, owned memory only */
  ss_model *c = load_ok(bin_path(), 0), *d = load_ok(hf_path(), 0);
  if (c && d) {
    CHECK(c->n_maps == 0 && d->n_maps == 0, "no mappings without use_mmap");
    static tensor_ref tc[128], td[128];
    list_tensors(c, tc, 0);
    list_tensors(d, td, 0);
    for (int k = 0; k < n; k++) {
      CHECK(!memcmp(ta[k].data, tc[k].data, numel(&ta[k]) * 4), "%s (no mmap, llama2.c)", ta[k].name);
      CHECK(!memcmp(ta[k].data, td[k].data, numel(&ta[k]) * 4), "%s (no mmap, hf)", ta[k].name);
    }
  }
  ss_model_free(c);
  ss_model_free(d);
done:
  ss_model_free(a);
  ss_model_free(b);
}

static void test_api_arguments(void) {
  ss_model_params p = ss_model_default_params();
  CHECK(p.use_mmap == 1 && sizeof p == 32, "defaults");
  ss_model *m = (ss_model *)1;
  CHECK(ss_model_load(NULL, NULL, &m, NULL, 0) == SS_ERR_INVALID_ARGUMENT && m == NULL, "NULL path");
  CHECK(ss_model_load("", NULL, &m, NULL, 0) == SS_ERR_INVALID_ARGUMENT, "empty path");
  CHECK(ss_model_load(bin_path(), NULL, NULL, NULL, 0) == SS_ERR_INVALID_ARGUMENT, "NULL out");
  p.use_mmap = 2;
  CHECK(ss_model_load(bin_path(), &p, &m, NULL, 0) == SS_ERR_INVALID_ARGUMENT, "use_mmap 2");
  ss_model_info info;
  CHECK(ss_model_get_info(NULL, &info) == SS_ERR_INVALID_ARGUMENT, "get_info NULL");
  ss_model_free(NULL);
  EXPECT_FAIL(tmp_path("does-not-exist"), SS_ERR_IO, "cannot access");
  EXPECT_FAIL("/dev/null", SS_ERR_IO, "neither");
}

/* ---------------------------------------------------------------------------
 * writing Hugging Face folders from a loaded model */

typedef struct export_opts {
  const char *dtype;      /* "F32", "F16", "BF16" */
  int n_shards;           /* 0: model.safetensors, else an index + shards */
  const char *arch;       /* config "architectures" entry */
  int biases;             /* write q/k/v biases (synthetic values) */
  int untied;             /* write lm_head.weight (= 0.5 * embeddings) and tie false */
  int misalign;           /* data region starting at an address % 4 == 2 */
  const char *skip;       /* tensor left out */
  const char *config_extra; /* appended to config.json (",\"key\": value") */
  const char *bos_eos;    /* bos/eos config fields, default "\"bos_token_id\": 1, \"eos_token_id\": 2" */
} export_opts;

static float *g_bias; /* synthetic bias values: bias[i] = (i % 17) / 64 */
static float *g_head; /* untied classifier: 0.5 * embeddings */

static void put_value(uint8_t *dst, float v, const char *dtype) {
  if (!strcmp(dtype, "F32")) {
    memcpy(dst, &v, 4);
  } else {
    uint16_t h = !strcmp(dtype, "F16") ? to_f16(v) : (uint16_t)(bits_of(v) >> 16);
    dst[0] = (uint8_t)h;
    dst[1] = (uint8_t)(h >> 8);
  }
}

/* The value a loader must produce for v written as dtype. */
static float stored_value(float v, const char *dtype) {
  if (!strcmp(dtype, "F32")) return v;
  if (!strcmp(dtype, "F16")) return ref_f16(to_f16(v));
  uint32_t u = bits_of(v) & 0xffff0000u;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Write tensors [from, to) of list to a safetensors file. */
static void write_safetensors(const char *path, const tensor_ref *list, int from, int to, const char *dtype,
                              int misalign) {
  size_t es = !strcmp(dtype, "F32") ? 4 : 2, cap = 65536, len = 0, off = 0;
  char *h = malloc(cap);
  len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (int k = from; k < to; k++) {
    size_t nb = numel(&list[k]) * es;
    if (list[k].cols)
      len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%zu,%zu],\"data_offsets\":[%zu,%zu]}",
                              list[k].name, dtype, list[k].rows, list[k].cols, off, off + nb);
    else
      len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}",
                              list[k].name, dtype, list[k].rows, off, off + nb);
    off += nb;
  }
  h[len++] = '}';
  while ((8 + len) % 8 != (misalign ? 2u : 0u)) h[len++] = ' ';
  uint8_t *file = malloc(8 + len + off);
  for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)len >> (8 * i));
  memcpy(file + 8, h, len);
  uint8_t *p = file + 8 + len;
  for (int k = from; k < to; k++)
    for (size_t i = 0; i < numel(&list[k]); i++, p += es) put_value(p, list[k].data[i], dtype);
  write_file(path, file, 8 + len + off);
  free(file);
  free(h);
}

static void write_config(const char *dir, const ss_model_info *in, const export_opts *o) {
  char path[512], text[2048];
  snprintf(path, sizeof path, "%s/config.json", dir);
  snprintf(text, sizeof text,
           "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": %d, "
           "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
           "\"vocab_size\": %d, \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-05, "
           "\"rope_theta\": 10000.0, \"hidden_act\": \"silu\", \"tie_word_embeddings\": %s, %s%s}",
           o->arch ? o->arch : "LlamaForCausalLM", in->dim, in->hidden_dim, in->n_layers, in->n_heads,
           in->n_kv_heads, in->vocab_size, in->max_seq_len, o->untied ? "false" : "true",
           o->bos_eos ? o->bos_eos : "\"bos_token_id\": 1, \"eos_token_id\": 2",
           o->config_extra ? o->config_extra : "");
  write_text(path, text);
}

/* Export model m into tmp/<name> and return the folder. */
static const char *export_hf(const char *name, const ss_model *m, const export_opts *o) {
  const char *dir = fresh_dir(name);
  static tensor_ref all[160], list[160];
  ss_model copy = *m;
  ss_layer_weights layers[8];
  memcpy(layers, m->layers, sizeof(ss_layer_weights) * (size_t)m->info.n_layers);
  for (int l = 0; l < m->info.n_layers; l++) layers[l].bq = layers[l].bk = layers[l].bv = g_bias;
  copy.layers = layers;
  copy.lm_head = ss_weight_make(g_head, SS_DTYPE_F32, 512, 64);
  int n = list_tensors(&copy, all, o->biases), k = 0;
  for (int i = 0; i < n; i++) {
    if (o->skip && !strcmp(all[i].name, o->skip)) continue;
    if (!o->untied && !strcmp(all[i].name, "lm_head.weight")) continue;
    list[k++] = all[i];
  }
  write_config(dir, &m->info, o);
  char path[512];
  if (o->n_shards == 0) {
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, list, 0, k, o->dtype, o->misalign);
    return dir;
  }
  /* shards of consecutive tensors + index */
  size_t cap = 65536, len = 0;
  int first = 1;
  char *idx = malloc(cap);
  len += (size_t)snprintf(idx, cap, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
  for (int s = 0; s < o->n_shards; s++) {
    int from = k * s / o->n_shards, to = k * (s + 1) / o->n_shards;
    char shard[64];
    snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", s + 1, o->n_shards);
    snprintf(path, sizeof path, "%s/%s", dir, shard);
    write_safetensors(path, list, from, to, o->dtype, o->misalign);
    for (int i = from; i < to; i++)
      len += (size_t)snprintf(idx + len, cap - len, "%s\"%s\": \"%s\"", first ? "" : ", ", list[i].name, shard),
          first = 0;
  }
  len += (size_t)snprintf(idx + len, cap - len, "}}");
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  write_text(path, idx);
  free(idx);
  return dir;
}

/* Loaded model b must hold a's values as stored in dtype. */
static void compare_exported(const ss_model *a, const ss_model *b, const export_opts *o) {
  static tensor_ref ta[160], tb[160];
  ss_model copy = *a;
  ss_layer_weights layers[8];
  memcpy(layers, a->layers, sizeof(ss_layer_weights) * (size_t)a->info.n_layers);
  for (int l = 0; l < a->info.n_layers; l++) layers[l].bq = layers[l].bk = layers[l].bv = g_bias;
  copy.layers = layers;
  copy.lm_head = o->untied ? ss_weight_make(g_head, SS_DTYPE_F32, 512, 64) : a->tok_embeddings;
  int n = list_tensors(&copy, ta, o->biases);
  CHECK(list_tensors(b, tb, o->biases) == n, "count");
  for (int k = 0; k < n; k++) {
    size_t bad = 0;
    for (size_t i = 0; i < numel(&ta[k]); i++)
      if (bits_of(tb[k].data[i]) != bits_of(stored_value(ta[k].data[i], o->dtype))) bad++;
    CHECK(bad == 0, "%s: %zu values differ (%s)", ta[k].name, bad, o->dtype);
  }
}

static void test_exports(void) {
  ss_model *ref = load_ok(hf_path(), 1);
  if (!ref) return;
  g_bias = malloc(64 * sizeof(float));
  g_head = malloc(512 * 64 * sizeof(float));
  for (int i = 0; i < 64; i++) g_bias[i] = (float)(i % 17) / 64.0f;
  for (int i = 0; i < 512 * 64; i++) g_head[i] = 0.5f * wide(&ref->tok_embeddings)[i];

  struct {
    const char *name;
    export_opts o;
    int32_t arch, dtype, n_maps;
  } cases[] = {
      /* half-precision weights are mapped as they are in the file (n_maps), like F32 */
      {"f16", {.dtype = "F16"}, SS_ARCH_LLAMA, SS_DTYPE_F16, 1},
      {"bf16_sharded", {.dtype = "BF16", .n_shards = 3}, SS_ARCH_LLAMA, SS_DTYPE_BF16, 3},
      {"f32_sharded", {.dtype = "F32", .n_shards = 4, .arch = "MistralForCausalLM"}, SS_ARCH_MISTRAL,
       SS_DTYPE_F32, 4},
      {"f32_misaligned", {.dtype = "F32", .misalign = 1}, SS_ARCH_LLAMA, SS_DTYPE_F32, 0},
      {"qwen2", {.dtype = "BF16", .arch = "Qwen2ForCausalLM", .biases = 1, .untied = 1}, SS_ARCH_QWEN2,
       SS_DTYPE_BF16, 1},
      {"llama_bias_f32", {.dtype = "F32", .biases = 1, .untied = 1}, SS_ARCH_LLAMA, SS_DTYPE_F32, 1},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *dir = export_hf(cases[c].name, ref, &cases[c].o);
    ss_model *m = load_ok(dir, 1);
    if (!m) continue;
    CHECK(m->info.arch == cases[c].arch, "%s arch", cases[c].name);
    CHECK(m->info.source_dtype == cases[c].dtype, "%s dtype %d", cases[c].name, m->info.source_dtype);
    CHECK(m->n_maps == cases[c].n_maps, "%s n_maps %d", cases[c].name, m->n_maps);
    CHECK((m->lm_head.data == m->tok_embeddings.data) == !cases[c].o.untied, "%s tying", cases[c].name);
    CHECK((m->layers[2].bq != NULL) == cases[c].o.biases && (m->layers[4].bv != NULL) == cases[c].o.biases,
          "%s biases", cases[c].name);
    CHECK(m->info.n_params == 260032 + (cases[c].o.untied ? 32768 : 0) + (cases[c].o.biases ? 5 * 128 : 0),
          "%s n_params %lld", cases[c].name, (long long)m->info.n_params);
    compare_exported(ref, m, &cases[c].o);
    ss_model_free(m);
    m = load_ok(dir, 0);
    if (m) {
      CHECK(m->n_maps == 0, "%s: no maps without mmap", cases[c].name);
      compare_exported(ref, m, &cases[c].o);
    }
    ss_model_free(m);
  }

  /* ids: arrays take the first; missing -> generation_config.json, else -1 */
  export_opts o = {.dtype = "F32", .bos_eos = "\"eos_token_id\": [2, 5]"};
  const char *dir = export_hf("ids", ref, &o);
  char path[512];
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  write_text(path, "{\"bos_token_id\": 1, \"eos_token_id\": 7}");
  ss_model *m = load_ok(dir, 1);
  if (m) CHECK(m->info.bos_token_id == 1 && m->info.eos_token_id == 2, "ids %d %d", m->info.bos_token_id,
               m->info.eos_token_id);
  ss_model_free(m);
  unlink(path);
  m = load_ok(dir, 1);
  if (m) CHECK(m->info.bos_token_id == -1 && m->info.eos_token_id == 2, "no bos");
  ss_model_free(m);

  /* a trailing slash, defaults for head_dim / kv heads / theta */
  o = (export_opts){.dtype = "F32", .config_extra = ", \"head_dim\": null, \"rope_scaling\": null"};
  dir = export_hf("slash", ref, &o);
  snprintf(path, sizeof path, "%s/", dir);
  m = load_ok(path, 1);
  if (m) CHECK(m->info.head_dim == 8, "head_dim default");
  ss_model_free(m);

  /* ---- structurally broken folders ---- */
  o = (export_opts){.dtype = "F32", .skip = "model.layers.3.mlp.up_proj.weight"};
  dir = export_hf("missing_tensor", ref, &o);
  EXPECT_FAIL(dir, SS_ERR_FORMAT, "model.layers.3.mlp.up_proj.weight' is missing");

  o = (export_opts){.dtype = "F32", .untied = 1, .skip = "lm_head.weight"};
  dir = export_hf("missing_head", ref, &o);
  EXPECT_FAIL(dir, SS_ERR_FORMAT, "lm_head.weight' is missing");

  o = (export_opts){.dtype = "F32", .arch = "Qwen2ForCausalLM"};
  dir = export_hf("qwen_no_bias", ref, &o);
  EXPECT_FAIL(dir, SS_ERR_FORMAT, "q_proj.bias' is missing");

  /* shape mismatch vs config: config says intermediate_size 170 */
  ss_model_info shrunk = ref->info;
  o = (export_opts){.dtype = "F32"};
  dir = export_hf("shape_mismatch", ref, &o);
  shrunk.hidden_dim = 170;
  write_config(dir, &shrunk, &o);
  EXPECT_FAIL(dir, SS_ERR_FORMAT, "has shape [172, 64] but config.json implies [170, 64]");

  /* absurd but representable config: rejected on the first shape, no huge allocation */
  shrunk = ref->info;
  shrunk.dim = 1 << 20;
  shrunk.hidden_dim = 1 << 20;
  shrunk.vocab_size = 1 << 24;
  shrunk.n_layers = 4096;
  shrunk.n_heads = 16384;
  shrunk.n_kv_heads = 16384;
  write_config(dir, &shrunk, &o);
  EXPECT_FAIL(dir, SS_ERR_FORMAT, "implies");

  o = (export_opts){.dtype = "F32", .n_shards = 2};
  dir = export_hf("index_bad", ref, &o);
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  write_text(path, "{\"weight_map\": {\"model.norm.weight\": \"../model-00001-of-00002.safetensors\"}}");
  EXPECT_FAIL2(dir, path, SS_ERR_FORMAT, "must name a file");
  write_text(path, "{\"weight_map\": {\"model.norm.weight\": \"model-00009-of-00009.safetensors\"}}");
  EXPECT_FAIL(dir, SS_ERR_IO, "model-00009-of-00009.safetensors: cannot open");
  write_text(path, "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}");
  EXPECT_FAIL2(dir, path, SS_ERR_FORMAT, "does not hold");
  write_text(path, "{\"weight_map\": {}}");
  EXPECT_FAIL2(dir, path, SS_ERR_FORMAT, "weight_map");
  write_text(path, "{\"weight_map\": ");
  EXPECT_FAIL2(dir, path, SS_ERR_FORMAT, "not valid JSON");
  /* the same tensor in two shards */
  write_text(path, "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\", "
                   "\"x\": \"model-00002-of-00002.safetensors\", \"y\": \"model-00003.safetensors\"}}");
  char shard3[512], shard2[512];
  snprintf(shard2, sizeof shard2, "%s/model-00002-of-00002.safetensors", dir);
  snprintf(shard3, sizeof shard3, "%s/model-00003.safetensors", dir);
  size_t n2;
  uint8_t *b2 = read_whole(shard2, &n2);
  write_file(shard3, b2, n2);
  free(b2);
  EXPECT_FAIL(dir, SS_ERR_FORMAT, "appears twice");

  ss_model_free(ref);
  free(g_bias);
  free(g_head);
}

/* ---------------------------------------------------------------------------
 * config.json problems (a valid weight file next to it) */

static void test_bad_configs(void) {
  const char *dir = fresh_dir("cfg");
  char st[512], cfg[512];
  snprintf(st, sizeof st, "%s/model.safetensors", dir);
  snprintf(cfg, sizeof cfg, "%s/config.json", dir);

  EXPECT_FAIL(dir, SS_ERR_IO, "missing config.json");
  size_t n;
  uint8_t *w = read_whole(shared_path("models/stories260K-hf/config.json"), &n);
  write_file(cfg, w, n);
  free(w);
  EXPECT_FAIL(dir, SS_ERR_IO, "neither model.safetensors nor model.safetensors.index.json");
  w = read_whole(shared_path("models/stories260K-hf/model.safetensors"), &n);
  write_file(st, w, n);
  free(w);
  ss_model *m = load_ok(dir, 1);
  ss_model_free(m);

  const char *base =
      "\"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 5, \"num_attention_heads\": 8, "
      "\"num_key_value_heads\": 4, \"vocab_size\": 512, \"tie_word_embeddings\": true";
  struct {
    const char *text, *what;
  } cases[] = {
      {"not json at all", "not valid JSON"},
      {"{\"hidden_size\": 64,", "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {"", "not valid JSON"},
      {"{\"architectures\": [\"GPT2LMHeadModel\"], %s}", "unsupported architecture 'GPT2LMHeadModel'"},
      {"{\"architectures\": [], %s}", "unsupported architecture"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}", "required field 'intermediate_size'"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"hidden_size\": -64}", "dim = -64 is out of range"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"hidden_size\": 0}", "dim = 0 is out of range"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"hidden_size\": 1073741824}", "out of range"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"hidden_size\": 1e300}", "int32 range"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"hidden_size\": 64.5}", "must be an integer"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"hidden_size\": \"64\"}", "must be an integer"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"num_attention_heads\": 0}", "must be positive"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"num_key_value_heads\": 3}", "not a multiple"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"num_key_value_heads\": 16}", "n_kv_heads = 16"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"num_hidden_layers\": 2147483647}", "n_layers"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"vocab_size\": 2147483648}", "int32 range"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"head_dim\": 7}", "must be even"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"rope_theta\": -1}", "rope_theta"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"rms_norm_eps\": \"x\"}", "must be a number"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"eos_token_id\": \"x\"}", "token id"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"eos_token_id\": 512}", "outside the vocabulary"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"tie_word_embeddings\": 1}", "true or false"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"hidden_act\": \"gelu\"}", "hidden_act 'gelu'"},
      {"{\"architectures\": [\"LlamaForCausalLM\"], %s, \"rope_scaling\": {\"rope_type\": \"llama3\"}}",
       "rope_scaling of type 'llama3'"},
      {"{\"architectures\": [\"Qwen2ForCausalLM\"], %s, \"use_sliding_window\": true}", "use_sliding_window"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char text[2048];
    snprintf(text, sizeof text, cases[k].text, base);
    write_text(cfg, text);
    EXPECT_FAIL(dir, SS_ERR_FORMAT, cases[k].what);
  }
  /* model_type is accepted when "architectures" is absent */
  char text[2048];
  snprintf(text, sizeof text, "{\"model_type\": \"mistral\", %s}", base);
  write_text(cfg, text);
  m = load_ok(dir, 1);
  if (m) CHECK(m->info.arch == SS_ARCH_MISTRAL && m->info.max_seq_len == 2048 && m->info.bos_token_id == -1 &&
                   m->info.rms_norm_eps == 1e-6f,
               "model_type fallback and defaults");
  ss_model_free(m);
}

/* ---------------------------------------------------------------------------
 * safetensors problems */

/* Write config.json (stories260K) and a model.safetensors with a header and
 * `data_len` zero bytes of data; `len_override` != 0 replaces the length. */
static const char *st_case(const char *header, size_t data_len, uint64_t len_override) {
  const char *dir = fresh_dir("st");
  char p[512];
  size_t n;
  uint8_t *cfg = read_whole(shared_path("models/stories260K-hf/config.json"), &n);
  snprintf(p, sizeof p, "%s/config.json", dir);
  write_file(p, cfg, n);
  free(cfg);
  size_t hl = strlen(header);
  uint64_t len = len_override ? len_override : hl;
  uint8_t *f = calloc(1, 8 + hl + data_len);
  for (int i = 0; i < 8; i++) f[i] = (uint8_t)(len >> (8 * i));
  memcpy(f + 8, header, hl);
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  write_file(p, f, 8 + hl + data_len);
  free(f);
  return tmp_path("st/model.safetensors");
}

static void test_bad_safetensors(void) {
  const char *p;
  p = st_case("", 0, 0);
  write_file(p, "\x01\x02\x03", 3);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "too short");
  p = st_case("{}", 0, 1000);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "header length 1000 exceeds the file size");
  p = st_case("{}", 0, UINT64_MAX);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "exceeds the file size");
  p = st_case("{\"a\": ", 0, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "header is not valid JSON");
  p = st_case("[]", 0, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "not a JSON object");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 8, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "outside the data region");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [16, 0]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "outside the data region");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [-4, 12]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "outside the data region");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "span 12 bytes but shape x F32 needs 16");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 8], \"data_offsets\": [0, 16]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "'t'");
  p = st_case("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
              " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "overlap");
  p = st_case("{\"t\": {\"dtype\": \"F17\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "unknown dtype 'F17'");
  p = st_case("{\"t\": {\"dtype\": 3, \"shape\": [4], \"data_offsets\": [0, 16]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "unknown dtype");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "negative");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "shape must be an array");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "shape must be an array");
  p = st_case("{\"t\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0]}}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "data_offsets must be");
  p = st_case("{\"t\": 5}", 16, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "not an object");
  /* valid file, but the needed tensor has a dtype we cannot convert */
  p = st_case("{\"model.embed_tokens.weight\": {\"dtype\": \"I8\", \"shape\": [512, 64], \"data_offsets\": [0, 32768]}}",
              32768, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "has dtype I8; only F32, F16 and BF16");
  /* valid and empty: first tensor missing */
  p = st_case("{\"__metadata__\": {\"x\": \"y\"}}", 0, 0);
  EXPECT_FAIL(tmp_path("st"), SS_ERR_FORMAT, "model.embed_tokens.weight' is missing");

  /* truncations of the real file: inside the header, inside the data */
  size_t n;
  uint8_t *real = read_whole(shared_path("models/stories260K-hf/model.safetensors"), &n);
  p = st_case("", 0, 0);
  write_file(p, real, 100);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "exceeds the file size");
  write_file(p, real, n / 2);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "outside the data region");
  write_file(p, real, n - 1);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "outside the data region");
  write_file(p, real, 0);
  EXPECT_FAIL2(tmp_path("st"), p, SS_ERR_FORMAT, "too short");
  free(real);
}

/* ---------------------------------------------------------------------------
 * llama2.c problems */

static void put_i32(uint8_t *p, int32_t v) { memcpy(p, &v, 4); }

static void test_bad_llama2c(void) {
  size_t n;
  uint8_t *real = read_whole(bin_path(), &n);
  const char *p = tmp_path("bad.bin");

  write_file(p, real, 10);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "shorter than the 28-byte llama2.c header");
  write_file(p, real, 0);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "shorter than the 28-byte");
  write_file(p, real, 28);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "implies 1056540");
  write_file(p, real, n - 4);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "file is 1056536 bytes");
  uint8_t *longer = calloc(1, n + 4);
  memcpy(longer, real, n);
  write_file(p, longer, n + 4);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "implies");

  /* field index, value, expected message part */
  struct {
    int field;
    int32_t value;
    const char *what;
  } cases[] = {
      {0, -64, "dim -64 must be a positive multiple"},
      {0, 0, "dim 0"},
      {0, 1 << 30, "dim = 1073741824 is out of range"},
      {0, 60, "multiple of n_heads"},
      {1, 0, "hidden_dim = 0"},
      {1, -1, "hidden_dim = -1"},
      {1, 1 << 30, "hidden_dim = 1073741824"},
      {2, 0, "n_layers = 0"},
      {2, INT32_MAX, "n_layers"},
      {3, 0, "n_heads 0 must be positive"},
      {3, -8, "n_heads -8"},
      {4, 0, "n_kv_heads = 0"},
      {4, 16, "n_kv_heads = 16"},
      {4, 3, "not a multiple of n_kv_heads"},
      {5, 0, "vocab_size = 0"},
      {5, INT32_MIN, "vocab_size -2147483648"},
      {5, INT32_MAX, "vocab_size = 2147483647"},
      {5, -512, "unshared"},          /* unshared classifier, but no wcls in the file */
      {5, 1 << 24, "implies"},        /* allowed size, wrong file length */
      {6, 0, "max_seq_len = 0"},
      {6, 1 << 30, "implies"},
      {6, -1, "max_seq_len = -1"},
      {0, (int32_t)0x616b3432, "magic 'ak42'"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    memcpy(longer, real, n);
    put_i32(longer + 4 * cases[k].field, cases[k].value);
    write_file(p, longer, n);
    EXPECT_FAIL(p, SS_ERR_FORMAT, cases[k].what);
  }
  /* head_dim 8 / 1 heads -> head_dim 64 etc. are fine shapes; odd head_dim is not */
  memcpy(longer, real, n);
  put_i32(longer + 12, 64); /* 64 heads of 1 */
  put_i32(longer + 16, 64);
  write_file(p, longer, n);
  EXPECT_FAIL(p, SS_ERR_FORMAT, "must be even");

  /* an unshared classifier appended: loads, lm_head is the appended copy */
  uint8_t *unshared = malloc(n + 512 * 64 * 4);
  memcpy(unshared, real, n);
  put_i32(unshared + 20, -512);
  float *wcls = (float *)(void *)(unshared + n);
  for (int i = 0; i < 512 * 64; i++) wcls[i] = (float)i;
  write_file(p, unshared, n + 512 * 64 * 4);
  for (int mm = 0; mm < 2; mm++) {
    ss_model *m = load_ok(p, mm);
    if (m) {
      CHECK(m->lm_head.data != m->tok_embeddings.data && wide(&m->lm_head)[5] == 5.0f &&
                wide(&m->lm_head)[512 * 64 - 1] == 32767.0f,
            "unshared wcls");
      CHECK(m->info.vocab_size == 512 && m->info.n_params == 260032 + 32768, "unshared info");
    }
    ss_model_free(m);
  }
  free(unshared);
  free(longer);
  free(real);
}

/* ---------------------------------------------------------------------------
 * seeded mutation loop over the real files: never a crash, always a status */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Touch every weight so ASan sees any out-of-bounds pointer. */
static double touch_all(const ss_model *m) {
  static tensor_ref t[160];
  int n = list_tensors(m, t, m->layers[0].bq != NULL);
  double s = 0;
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < numel(&t[k]); i++) s += t[k].data[i];
  return s;
}

static void mutate(uint8_t *b, size_t *n, size_t hot) {
  int kind = (int)(rng() % 4);
  if (kind == 0) { /* truncate, mostly near the header */
    *n = rng() % 2 ? (size_t)(rng() % (hot + 1)) : (size_t)(rng() % (*n + 1));
    return;
  }
  int flips = 1 + (int)(rng() % 8);
  for (int i = 0; i < flips && *n; i++) {
    size_t at = kind == 3 ? (size_t)(rng() % *n) : (size_t)(rng() % (hot < *n ? hot : *n));
    if (kind == 1)
      b[at] ^= (uint8_t)(1u << (rng() % 8));
    else
      b[at] = (uint8_t)rng();
  }
}

static void test_fuzz_loop(void) {
  size_t n_bin, n_st, n_cfg;
  uint8_t *bin = read_whole(bin_path(), &n_bin);
  uint8_t *st = read_whole(shared_path("models/stories260K-hf/model.safetensors"), &n_st);
  uint8_t *cfg = read_whole(shared_path("models/stories260K-hf/config.json"), &n_cfg);
  uint8_t *buf = malloc(n_bin > n_st ? n_bin : n_st);
  size_t st_hot = 8 + 4848;
  int ok = 0, failed = 0, bad_status = 0;
  const char *fdir = fresh_dir("fuzz");
  char st_path[512], cfg_path[512];
  snprintf(st_path, sizeof st_path, "%s/model.safetensors", fdir);
  snprintf(cfg_path, sizeof cfg_path, "%s/config.json", fdir);
  const char *bin_out = tmp_path("fuzz.bin");
  for (int it = 0; it < 300; it++) {
    int target = (int)(rng() % 3);
    const char *path;
    size_t n;
    if (target == 0) {
      memcpy(buf, bin, n_bin);
      n = n_bin;
      mutate(buf, &n, 28);
      write_file(bin_out, buf, n);
      path = bin_out;
    } else if (target == 1) {
      memcpy(buf, st, n_st);
      n = n_st;
      mutate(buf, &n, st_hot);
      write_file(st_path, buf, n);
      write_file(cfg_path, cfg, n_cfg);
      path = fdir;
    } else {
      memcpy(buf, cfg, n_cfg);
      n = n_cfg;
      mutate(buf, &n, n_cfg);
      write_file(cfg_path, buf, n);
      write_file(st_path, st, n_st);
      path = fdir;
    }
    ss_model_params p = ss_model_default_params();
    p.use_mmap = (int32_t)(rng() % 2);
    ss_model *m = NULL;
    ss_clear_error();
    int rc = ss_model_load(path, &p, &m, NULL, 0);
    if (rc == SS_OK) {
      ok++;
      ss_model_info info;
      ss_model_get_info(m, &info);
      (void)touch_all(m);
      ss_model_free(m);
    } else {
      failed++;
      if ((rc != SS_ERR_FORMAT && rc != SS_ERR_IO) || ss_last_error()[0] == '\0' || m != NULL) {
        bad_status++;
        fprintf(stderr, "fuzz it %d: %s '%s'\n", it, ss_status_name(rc), ss_last_error());
      }
    }
  }
  printf("fuzz loop: 300 mutations, %d loaded, %d rejected\n", ok, failed);
  CHECK(bad_status == 0, "%d mutations failed without SS_ERR_FORMAT/IO and a message", bad_status);
  CHECK(failed > 50, "mutations should mostly be rejected (%d)", failed);
  free(buf);
  free(bin);
  free(st);
  free(cfg);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/ss_loaders_XXXXXX");
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 2;
  }
  void (*tests[])(void) = {test_half_conversion, test_json,          test_api_arguments,  test_reference_models,
                           test_exports,         test_bad_configs,   test_bad_safetensors, test_bad_llama2c,
                           test_fuzz_loop};
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    tests[i]();
    free_wide();
  }
  remove_tmp();
  return test_summary("test_loaders");
}
