/*
 * load_gguf.c — GGUF v3 files of the llama architecture (llama.cpp's format).
 *
 * Hyper-parameters from the metadata: llama.embedding_length, .feed_forward_length, .block_count,
 * .attention.head_count, .attention.head_count_kv (default head_count), .attention.key_length
 * (default embedding_length / head_count), .context_length, .rope.freq_base (default 10000),
 * .attention.layer_norm_rms_epsilon (default 1e-5), .vocab_size (default: token_embd's rows);
 * tokenizer.ggml.bos_token_id / eos_token_id. Refused: another general.architecture, a RoPE over part
 * of the head (rope.dimension_count != key_length), RoPE scaling.
 * Tensors: the table of model_tensors.h; matrices F32, F16, BF16, Q8_0, Q4_0 (others are refused naming
 * their type), mapped in place when aligned for their type; norms converted to F32 when stored in
 * another type. Any tensor the table does not name is refused (it would change the model silently).
 * Q/K rows stay in GGUF's adjacent-pair RoPE layout (model.h rope_adjacent). The tokenizer
 * (tokenizer.ggml.*) is read on the TypeScript side (runtime/tokenizer/gguf.ts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "model_tensors.h"
#include "model_util.h"

typedef struct gguf_loader {
  const char *path;
  ss_file file;
  ss_gguf g;
  ss_model *m;
  int use_mmap;
  uint8_t *used; /* [n_tensors] */
} gguf_loader;

static int meta_int(gguf_loader *L, const char *key, int required, int64_t def, int32_t *out) {
  const ss_gguf_kv *kv = ss_gguf_find(&L->g, key);
  int64_t v = def;
  if (!kv) {
    if (required) return ss_fail(SS_ERR_FORMAT, "%s: GGUF: required metadata '%s' is missing", L->path, key);
  } else if (!ss_gguf_int(kv, &v) || v < INT32_MIN || v > INT32_MAX) {
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: metadata '%s' must be an integer in int32 range", L->path, key);
  }
  *out = (int32_t)v;
  return SS_OK;
}

static int meta_float(gguf_loader *L, const char *key, double def, float *out) {
  const ss_gguf_kv *kv = ss_gguf_find(&L->g, key);
  double v = def;
  if (kv && !ss_gguf_num(kv, &v)) return ss_fail(SS_ERR_FORMAT, "%s: GGUF: metadata '%s' must be a number", L->path, key);
  *out = (float)v;
  return SS_OK;
}

static int read_info(gguf_loader *L, ss_model_info *in) {
  const ss_gguf_kv *a = ss_gguf_find(&L->g, "general.architecture");
  ss_gguf_str arch;
  if (!a || !ss_gguf_string(a, &arch))
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: metadata 'general.architecture' (a string) is missing", L->path);
  if (!ss_gguf_str_eq(arch, "llama"))
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF architecture '%.*s' is not supported (supported: llama)", L->path,
                   (int)(arch.n > 64 ? 64 : arch.n), arch.p);
  memset(in, 0, sizeof *in);
  in->arch = SS_ARCH_LLAMA;
  in->format = SS_FORMAT_GGUF;
  int rc;
  if ((rc = meta_int(L, "llama.embedding_length", 1, 0, &in->dim)) ||
      (rc = meta_int(L, "llama.feed_forward_length", 1, 0, &in->hidden_dim)) ||
      (rc = meta_int(L, "llama.block_count", 1, 0, &in->n_layers)) ||
      (rc = meta_int(L, "llama.attention.head_count", 1, 0, &in->n_heads)) ||
      (rc = meta_int(L, "llama.attention.head_count_kv", 0, in->n_heads, &in->n_kv_heads)) ||
      (rc = meta_int(L, "llama.context_length", 1, 0, &in->max_seq_len)) ||
      (rc = meta_float(L, "llama.rope.freq_base", 10000.0, &in->rope_theta)) ||
      (rc = meta_float(L, "llama.attention.layer_norm_rms_epsilon", 1e-5, &in->rms_norm_eps)) ||
      (rc = meta_int(L, "tokenizer.ggml.bos_token_id", 0, -1, &in->bos_token_id)) ||
      (rc = meta_int(L, "tokenizer.ggml.eos_token_id", 0, -1, &in->eos_token_id)))
    return rc;
  if (in->n_heads <= 0)
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: llama.attention.head_count %d must be positive", L->path, in->n_heads);
  if ((rc = meta_int(L, "llama.attention.key_length", 0, in->dim / in->n_heads, &in->head_dim))) return rc;
  int32_t rot = in->head_dim;
  if ((rc = meta_int(L, "llama.rope.dimension_count", 0, in->head_dim, &rot))) return rc;
  if (rot != in->head_dim)
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: llama.rope.dimension_count %d differs from the head size %d (partial "
                   "RoPE is not supported)", L->path, rot, in->head_dim);
  const ss_gguf_kv *sc = ss_gguf_find(&L->g, "llama.rope.scaling.type");
  ss_gguf_str st;
  if (sc && (!ss_gguf_string(sc, &st) || !ss_gguf_str_eq(st, "none")))
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: RoPE scaling (llama.rope.scaling.type) is not supported", L->path);
  const ss_gguf_tensor *emb = ss_gguf_find_tensor(&L->g, "token_embd.weight");
  int64_t rows = emb && emb->n_dims == 2 ? emb->ne[1] : 0;
  if ((rc = meta_int(L, "llama.vocab_size", 0, rows > INT32_MAX ? -1 : rows, &in->vocab_size))) return rc;
  return ss_validate_info(L->path, "GGUF metadata", in);
}

/* Tensor t's bytes in place (mapped, aligned, use_mmap) or an owned copy. */
static int tensor_bytes(gguf_loader *L, const ss_gguf_tensor *t, size_t nbytes, size_t align, const void **out) {
  const uint8_t *src = L->g.data + L->g.data_start + t->offset;
  if (L->use_mmap && (uintptr_t)src % align == 0) {
    int kept, rc = ss_model_keep_file(L->m, &L->file, &kept);
    if (rc != SS_OK) return rc;
    if (kept) {
      *out = src;
      return SS_OK;
    }
  }
  void *copy = malloc(nbytes ? nbytes : 1);
  if (!copy)
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for '%.*s'", L->path, nbytes, (int)t->name.n,
                   t->name.p);
  int rc = ss_model_own(L->m, copy);
  if (rc != SS_OK) return rc;
  memcpy(copy, src, nbytes);
  *out = copy;
  return SS_OK;
}

static int load_tensor(gguf_loader *L, ss_model_tensor *e, size_t *counts) {
  const ss_gguf_tensor *t = ss_gguf_find_tensor(&L->g, e->name);
  if (!t) return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%s' is missing", L->path, e->name);
  L->used[t - L->g.tensors] = 1;
  int matrix = e->w != NULL;
  if (t->n_dims != (matrix ? 2u : 1u) || t->ne[0] != e->cols || (matrix && t->ne[1] != e->rows))
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%s' has shape [%lld, %lld] (ne) but the metadata implies "
                   "[%lld, %lld]", L->path, e->name, (long long)t->ne[0], (long long)t->ne[1], (long long)e->cols,
                   (long long)e->rows);
  int32_t dt = ss_gguf_dtype(t->type);
  char buf[32];
  if (dt < 0)
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%s' has type %s; supported: F32, F16, BF16, Q8_0, Q4_0", L->path,
                   e->name, ss_ggml_type_name(t->type, buf));
  size_t rb = ss_dtype_row_bytes(dt, e->cols), nbytes = rb * (size_t)e->rows; /* checked by ss_gguf_parse */
  L->m->info.n_params += e->rows * e->cols;
  if (matrix) {
    const void *p;
    int rc = tensor_bytes(L, t, nbytes, ss_dtype_align(dt), &p);
    if (rc != SS_OK) return rc;
    *e->w = ss_weight_make(p, dt, e->rows, e->cols);
    counts[dt] += (size_t)(e->rows * e->cols);
    return SS_OK;
  }
  const uint8_t *src = L->g.data + L->g.data_start + t->offset;
  if (dt == SS_DTYPE_F32) {
    const void *p;
    int rc = tensor_bytes(L, t, nbytes, sizeof(float), &p);
    if (rc == SS_OK) *e->vec = p;
    return rc;
  }
  float *dst;
  int rc = ss_model_alloc_f32(L->m, (size_t)e->cols, e->name, &dst);
  if (rc != SS_OK) return rc;
  /* through an aligned copy: a norm of a half or block type may sit at any even address */
  void *tmp = malloc(nbytes ? nbytes : 1);
  if (!tmp) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory converting '%s'", L->path, e->name);
  memcpy(tmp, src, nbytes);
  ss_weight w = ss_weight_make(tmp, dt, 1, e->cols);
  ss_weight_row_f32(&w, 0, dst);
  free(tmp);
  *e->vec = dst;
  return SS_OK;
}

static int load_tensors(gguf_loader *L) {
  ss_model *m = L->m;
  m->layers = calloc((size_t)m->info.n_layers, sizeof *m->layers);
  if (!m->layers) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %d layers", L->path, m->info.n_layers);
  int rc = ss_model_own(m, m->layers);
  if (rc != SS_OK) return rc;
  L->used = calloc(L->g.n_tensors ? (size_t)L->g.n_tensors : 1, 1);
  if (!L->used) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory", L->path);
  int tied = !ss_gguf_find_tensor(&L->g, "output.weight");
  int32_t n = ss_model_tensor_count(m, tied);
  size_t counts[SS_N_DTYPES] = {0};
  m->info.n_params = 0;
  for (int32_t i = 0; i < n; i++) {
    ss_model_tensor e;
    ss_model_tensor_at(m, i, &e);
    if ((rc = load_tensor(L, &e, counts)) != SS_OK) return rc;
  }
  if (tied) m->lm_head = m->tok_embeddings;
  for (uint64_t i = 0; i < L->g.n_tensors; i++)
    if (!L->used[i])
      return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%.*s' is not part of a llama model this runtime runs", L->path,
                     (int)(L->g.tensors[i].name.n > 96 ? 96 : L->g.tensors[i].name.n), L->g.tensors[i].name.p);
  m->info.source_dtype = ss_dominant_dtype(counts);
  m->rope_adjacent = 1;
  return SS_OK;
}

int ss_load_gguf(const char *path, const ss_model_params *params, ss_model **out) {
  gguf_loader L;
  memset(&L, 0, sizeof L);
  L.path = path;
  L.use_mmap = params->use_mmap;
  *out = NULL;
  ss_model_info info;
  int rc = ss_file_open(path, &L.file);
  if (rc != SS_OK) return rc;
  if ((rc = ss_gguf_parse(&L.g, L.file.data, L.file.size, path)) == SS_OK && (rc = read_info(&L, &info)) == SS_OK &&
      (rc = ss_model_new(path, &L.m)) == SS_OK) {
    L.m->info = info;
    rc = load_tensors(&L);
  }
  free(L.used);
  ss_gguf_free(&L.g);
  ss_file_close(&L.file); /* a kept mapping now belongs to the model */
  if (rc != SS_OK) {
    ss_model_free(L.m);
    return rc;
  }
  *out = L.m;
  return SS_OK;
}
