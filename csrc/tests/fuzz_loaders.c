/*
 * fuzz_loaders.c — libFuzzer harness for the model loaders and the JSON
 * parser (clang -fsanitize=fuzzer,address,undefined; `make -C csrc fuzz`).
 *
 * The first input byte picks the target (low 3 bits) and use_mmap (bit 3); the rest is the file content:
 *   0: a llama2.c checkpoint
 *   1: model.safetensors next to a valid config.json (tiny model)
 *   2: config.json next to a valid model.safetensors (tiny model)
 *   3: the JSON parser alone
 *   4-7: a GGUF file (seeds: the tiny model at F32 and Q8_0, written through the export API)
 * Files go to a private mkdtemp folder. With SS_FUZZ_SEEDS=<dir> the
 * harness writes one valid seed per target into <dir> at start-up.
 * Invariant checked: the load succeeds, or fails with SS_ERR_FORMAT /
 * SS_ERR_IO and a non-empty message; a loaded model's weights are readable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_writer.h"
#include "json.h"
#include "model.h"
#include "model_tensors.h"
#include "sinkstream.h"

/* tiny model: dim 8, hidden 16, 1 layer, 2 heads of 4, 1 kv head, vocab 16, seq 8 */
enum { DIM = 8, HID = 16, HEADS = 2, KV = 1, HD = 4, VOCAB = 16, SEQ = 8 };

static const char TINY_CONFIG[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 16, "
    "\"max_position_embeddings\": 8, \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": true, "
    "\"bos_token_id\": 1, \"eos_token_id\": [2, 3]}";

static char g_dir[64];
static uint8_t *g_st, *g_bin; /* valid tiny files */
static size_t g_st_len, g_bin_len;

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (n && fwrite(data, 1, n, f) != n) abort();
  fclose(f);
}

static const char *in_dir(const char *name) {
  static char p[128];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  return p;
}

/* Tiny model.safetensors: all F32, values i / 64. */
static void build_safetensors(void) {
  static const struct {
    const char *name;
    int rows, cols;
  } T[] = {{"model.embed_tokens.weight", VOCAB, DIM},
           {"model.layers.0.input_layernorm.weight", DIM, 0},
           {"model.layers.0.self_attn.q_proj.weight", HEADS * HD, DIM},
           {"model.layers.0.self_attn.k_proj.weight", KV * HD, DIM},
           {"model.layers.0.self_attn.v_proj.weight", KV * HD, DIM},
           {"model.layers.0.self_attn.o_proj.weight", DIM, HEADS * HD},
           {"model.layers.0.post_attention_layernorm.weight", DIM, 0},
           {"model.layers.0.mlp.gate_proj.weight", HID, DIM},
           {"model.layers.0.mlp.up_proj.weight", HID, DIM},
           {"model.layers.0.mlp.down_proj.weight", DIM, HID},
           {"model.norm.weight", DIM, 0}};
  char h[4096];
  size_t len = 0, off = 0;
  h[len++] = '{';
  for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
    size_t nb = (size_t)T[k].rows * (size_t)(T[k].cols ? T[k].cols : 1) * 4;
    if (T[k].cols)
      len += (size_t)snprintf(h + len, sizeof h - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                              k ? "," : "", T[k].name, T[k].rows, T[k].cols, off, off + nb);
    else
      len += (size_t)snprintf(h + len, sizeof h - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                              k ? "," : "", T[k].name, T[k].rows, off, off + nb);
    off += nb;
  }
  h[len++] = '}';
  while ((8 + len) % 8) h[len++] = ' ';
  g_st_len = 8 + len + off;
  g_st = malloc(g_st_len);
  if (!g_st) abort();
  for (int i = 0; i < 8; i++) g_st[i] = (uint8_t)((uint64_t)len >> (8 * i));
  memcpy(g_st + 8, h, len);
  for (size_t i = 0; i < off / 4; i++) {
    float v = (float)(i % 97) / 64.0f;
    memcpy(g_st + 8 + len + 4 * i, &v, 4);
  }
}

/* Tiny llama2.c checkpoint with the same shape (shared classifier). */
static void build_llama2c(void) {
  int32_t hdr[7] = {DIM, HID, 1, HEADS, KV, VOCAB, SEQ};
  size_t floats = VOCAB * DIM + DIM + DIM * HEADS * HD + 2 * KV * HD * DIM + DIM * HEADS * HD + DIM + 3 * HID * DIM +
                  DIM + SEQ * HD;
  g_bin_len = sizeof hdr + floats * 4;
  g_bin = calloc(1, g_bin_len);
  if (!g_bin) abort();
  memcpy(g_bin, hdr, sizeof hdr);
}

static void write_seed(const char *dir, const char *name, uint8_t mode, const void *data, size_t n) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  uint8_t *b = malloc(n + 1);
  if (!b) abort();
  b[0] = mode;
  memcpy(b + 1, data, n);
  write_file(p, b, n + 1);
  free(b);
}

static void remove_dir(void) {
  const char *names[] = {"model.bin", "config.json", "model.safetensors", "model.gguf"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(in_dir(names[i]));
  rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ss_fuzz_XXXXXX");
  if (!mkdtemp(g_dir)) abort();
  atexit(remove_dir);
  build_safetensors();
  build_llama2c();
  const char *seeds = getenv("SS_FUZZ_SEEDS");
  if (seeds) {
    mkdir(seeds, 0700);
    write_seed(seeds, "seed_llama2c", 0, g_bin, g_bin_len);
    write_seed(seeds, "seed_safetensors", 1, g_st, g_st_len);
    write_seed(seeds, "seed_config", 2, TINY_CONFIG, sizeof TINY_CONFIG - 1);
    write_seed(seeds, "seed_json", 3, TINY_CONFIG, sizeof TINY_CONFIG - 1);
    /* GGUF seeds: the tiny llama2.c model exported (its weights are zeros, the structure is real) */
    write_file(in_dir("model.bin"), g_bin, g_bin_len);
    ss_model *m = NULL;
    if (ss_model_load(in_dir("model.bin"), NULL, &m, NULL, 0) != SS_OK) abort();
    static const write_opts plain = {.skip = -1};
    buf f32 = gguf_bytes(m, SS_DTYPE_F32, &plain), q8 = gguf_bytes(m, SS_DTYPE_Q8_0, &plain);
    if (!f32.n || !q8.n) abort();
    write_seed(seeds, "seed_gguf_f32", 4 | 8, f32.p, f32.n);
    write_seed(seeds, "seed_gguf_q8", 4, q8.p, q8.n);
    free(f32.p);
    free(q8.p);
    ss_model_free(m);
  }
  return 0;
}

static void check_load(const char *path, int use_mmap) {
  ss_model_params p = ss_model_default_params();
  p.use_mmap = use_mmap;
  ss_model *m = NULL;
  int rc = ss_model_load(path, &p, &m, NULL, 0);
  if (rc != SS_OK) {
    if ((rc != SS_ERR_FORMAT && rc != SS_ERR_IO) || !ss_last_error()[0] || m) abort();
    return;
  }
  /* read every weight once (each matrix dequantized row by row) so ASan sees a bad pointer */
  volatile float s = 0;
  const ss_model_info *in = &m->info;
  size_t dim = (size_t)in->dim;
  int32_t n = ss_model_tensor_count(m, ss_model_tied(m));
  for (int32_t i = 0; i < n; i++) {
    ss_model_tensor t;
    ss_model_tensor_at(m, i, &t);
    if (!t.w) {
      for (int64_t k = 0; k < t.cols; k++) s += (*t.vec)[k];
      continue;
    }
    float *row = malloc((size_t)t.w->cols * sizeof(float));
    if (!row || t.w->rows != t.rows || t.w->cols != t.cols) abort();
    for (int64_t r = 0; r < t.w->rows; r++) {
      ss_weight_row_f32(t.w, r, row);
      for (int64_t k = 0; k < t.w->cols; k++) s += row[k];
    }
    free(row);
  }
  (void)s;
  (void)dim;
  ss_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0] & 7;
  int use_mmap = (data[0] >> 3) & 1;
  data++;
  size--;
  switch (mode) {
    case 0:
      write_file(in_dir("model.bin"), data, size);
      check_load(in_dir("model.bin"), use_mmap);
      break;
    case 1:
      write_file(in_dir("config.json"), TINY_CONFIG, sizeof TINY_CONFIG - 1);
      write_file(in_dir("model.safetensors"), data, size);
      check_load(g_dir, use_mmap);
      break;
    case 2:
      write_file(in_dir("config.json"), data, size);
      write_file(in_dir("model.safetensors"), g_st, g_st_len);
      check_load(g_dir, use_mmap);
      break;
    case 4:
    case 5:
    case 6:
    case 7:
      write_file(in_dir("model.gguf"), data, size);
      check_load(in_dir("model.gguf"), use_mmap);
      break;
    default: {
      ss_json_doc d;
      if (ss_json_parse(&d, (const char *)data, size) == 0) {
        /* walk the whole tree */
        size_t seen = 0;
        for (size_t i = 0; i < d.n_nodes; i++) seen += d.nodes[i].str_len + d.nodes[i].key_len;
        (void)seen;
      }
      ss_json_free(&d);
    }
  }
  return 0;
}
