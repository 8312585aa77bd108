/*
 * load_hf.c — Hugging Face model folders: config.json plus model.safetensors,
 * or shards listed by model.safetensors.index.json ("weight_map": name -> file).
 *
 * Architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM.
 * Tensors (shapes as [rows, cols], row-major, q_dim = n_heads * head_dim,
 * kv_dim = n_kv_heads * head_dim):
 *   model.embed_tokens.weight                         [vocab, dim]
 *   model.layers.{i}.input_layernorm.weight           [dim]
 *   model.layers.{i}.self_attn.q_proj.weight          [q_dim, dim]
 *   model.layers.{i}.self_attn.k_proj.weight          [kv_dim, dim]
 *   model.layers.{i}.self_attn.v_proj.weight          [kv_dim, dim]
 *   model.layers.{i}.self_attn.{q,k,v}_proj.bias      [q_dim] / [kv_dim]  (Qwen2; optional otherwise)
 *   model.layers.{i}.self_attn.o_proj.weight          [dim, q_dim]
 *   model.layers.{i}.post_attention_layernorm.weight  [dim]
 *   model.layers.{i}.mlp.gate_proj.weight             [hidden, dim]
 *   model.layers.{i}.mlp.up_proj.weight               [hidden, dim]
 *   model.layers.{i}.mlp.down_proj.weight             [dim, hidden]
 *   model.norm.weight                                 [dim]
 *   lm_head.weight                                    [vocab, dim]  (absent when tied)
 * Q/K rows are already in rotate-half layout and are used as they are.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "json.h"
#include "model_tensors.h"
#include "model_util.h"
#include "safetensors.h"

#define HF_MAX_CONFIG_BYTES (16u << 20)
#define HF_MAX_INDEX_BYTES (64u << 20)
#define HF_MAX_SHARDS 4096

typedef struct hf_loader {
  const char *dir;
  ss_model *m;
  ss_st_set set;
  int use_mmap;
  int64_t n_params;
  size_t numel_by_dtype[SS_N_DTYPES]; /* matrix elements per ss_dtype, for the dominant source dtype */
} hf_loader;

/* ---------------------------------------------------------------------------
 * files */

/* dir + "/" + name, malloc'd (NULL when out of memory). */
static char *join_path(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  int slash = a > 0 && dir[a - 1] != '/';
  char *p = malloc(a + (size_t)slash + b + 1);
  if (!p) return NULL;
  memcpy(p, dir, a);
  if (slash) p[a] = '/';
  memcpy(p + a + slash, name, b + 1);
  return p;
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Parse a whole JSON file. SS_ERR_IO when it cannot be read, SS_ERR_FORMAT
 * when it is too big or not JSON. */
static int read_json(const char *path, size_t max_bytes, ss_json_doc *doc) {
  memset(doc, 0, sizeof *doc);
  ss_file f;
  int rc = ss_file_open(path, &f);
  if (rc != SS_OK) return rc;
  if (f.size > max_bytes) {
    rc = ss_fail(SS_ERR_FORMAT, "%s: %zu bytes is larger than the %zu-byte limit", path, f.size, max_bytes);
  } else {
    int jrc = ss_json_parse(doc, (const char *)f.data, f.size);
    if (jrc == -2)
      rc = ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory parsing JSON", path);
    else if (jrc != 0)
      rc = ss_fail(SS_ERR_FORMAT, "%s: not valid JSON: %s", path, doc->error);
    else if (!ss_json_root(doc) || ss_json_root(doc)->type != SS_JSON_OBJECT)
      rc = ss_fail(SS_ERR_FORMAT, "%s: top level is not a JSON object", path);
  }
  ss_file_close(&f);
  return rc;
}

/* ---------------------------------------------------------------------------
 * config.json */

/* Integer field: absent or null -> def (has_def) or an error. */
static int cfg_int(const char *path, const ss_json_doc *doc, const char *key, int has_def, int32_t def,
                   int32_t *out) {
  const ss_json *v = ss_json_get(doc, ss_json_root(doc), key);
  int64_t x;
  if (!v || v->type == SS_JSON_NULL) {
    if (!has_def) return ss_fail(SS_ERR_FORMAT, "%s: required field '%s' is missing", path, key);
    *out = def;
    return SS_OK;
  }
  if (!ss_json_as_int64(v, &x) || x < INT32_MIN || x > INT32_MAX)
    return ss_fail(SS_ERR_FORMAT, "%s: field '%s' must be an integer in int32 range", path, key);
  *out = (int32_t)x;
  return SS_OK;
}

static int cfg_float(const char *path, const ss_json_doc *doc, const char *key, float def, float *out) {
  const ss_json *v = ss_json_get(doc, ss_json_root(doc), key);
  if (!v || v->type == SS_JSON_NULL) {
    *out = def;
    return SS_OK;
  }
  if (v->type != SS_JSON_NUMBER) return ss_fail(SS_ERR_FORMAT, "%s: field '%s' must be a number", path, key);
  *out = (float)v->number;
  return SS_OK;
}

/* bos/eos: an int, or a list whose first element is used; absent -> -1.
 * *found tells whether the field was present. */
static int cfg_token(const char *path, const ss_json_doc *doc, const char *key, int32_t *out, int *found) {
  const ss_json *v = ss_json_get(doc, ss_json_root(doc), key);
  *found = 0;
  if (!v || v->type == SS_JSON_NULL) return SS_OK;
  if (v->type == SS_JSON_ARRAY) {
    v = ss_json_first(doc, v);
    if (!v) return SS_OK;
  }
  int64_t x;
  if (!ss_json_as_int64(v, &x) || x < -1 || x > INT32_MAX)
    return ss_fail(SS_ERR_FORMAT, "%s: field '%s' must be a token id (or a list of them)", path, key);
  *out = (int32_t)x;
  *found = 1;
  return SS_OK;
}

static int arch_from_name(const char *s) {
  if (!strcmp(s, "LlamaForCausalLM") || !strcmp(s, "llama")) return SS_ARCH_LLAMA;
  if (!strcmp(s, "MistralForCausalLM") || !strcmp(s, "mistral")) return SS_ARCH_MISTRAL;
  if (!strcmp(s, "Qwen2ForCausalLM") || !strcmp(s, "qwen2")) return SS_ARCH_QWEN2;
  return -1;
}

/* "architectures": ["..."], else "model_type". */
static int cfg_arch(const char *path, const ss_json_doc *doc, int32_t *out) {
  const ss_json *root = ss_json_root(doc);
  const ss_json *archs = ss_json_get(doc, root, "architectures");
  const char *seen = NULL;
  if (archs && archs->type == SS_JSON_ARRAY) {
    for (const ss_json *a = ss_json_first(doc, archs); a; a = ss_json_next(doc, a)) {
      if (a->type != SS_JSON_STRING) continue;
      if (!seen) seen = a->str;
      int k = arch_from_name(a->str);
      if (k >= 0 && strstr(a->str, "ForCausalLM")) {
        *out = k;
        return SS_OK;
      }
    }
  } else {
    const ss_json *mt = ss_json_get(doc, root, "model_type");
    if (mt && mt->type == SS_JSON_STRING) {
      seen = mt->str;
      int k = arch_from_name(mt->str);
      if (k >= 0) {
        *out = k;
        return SS_OK;
      }
    }
  }
  return ss_fail(SS_ERR_FORMAT,
                 "%s: unsupported architecture '%s' (supported: LlamaForCausalLM, MistralForCausalLM, "
                 "Qwen2ForCausalLM)", path, seen ? seen : "(none given)");
}

/* Features the engine does not implement must not load silently. */
static int cfg_check_unsupported(const char *path, const ss_json_doc *doc) {
  const ss_json *root = ss_json_root(doc);
  const ss_json *act = ss_json_get(doc, root, "hidden_act");
  if (act && act->type != SS_JSON_NULL && (act->type != SS_JSON_STRING || strcmp(act->str, "silu") != 0))
    return ss_fail(SS_ERR_FORMAT, "%s: hidden_act '%s' is not supported (only silu)", path,
                   act->type == SS_JSON_STRING ? act->str : "?");
  const ss_json *sw = ss_json_get(doc, root, "use_sliding_window");
  if (sw && sw->type == SS_JSON_BOOL && sw->boolean)
    return ss_fail(SS_ERR_FORMAT, "%s: use_sliding_window is not supported", path);
  const ss_json *rs = ss_json_get(doc, root, "rope_scaling");
  if (rs && rs->type != SS_JSON_NULL) {
    const ss_json *t = ss_json_get(doc, rs, "rope_type");
    if (!t) t = ss_json_get(doc, rs, "type");
    if (!t || t->type != SS_JSON_STRING || strcmp(t->str, "default") != 0)
      return ss_fail(SS_ERR_FORMAT, "%s: rope_scaling of type '%s' is not supported", path,
                     t && t->type == SS_JSON_STRING ? t->str : "?");
  }
  return SS_OK;
}

/* Fill m->info from config.json (and generation_config.json for missing
 * bos/eos ids). *tied: tie_word_embeddings. */
static int read_config(const char *dir, ss_model_info *info, int *tied) {
  char *path = join_path(dir, "config.json");
  if (!path) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
  ss_json_doc doc;
  int rc;
  if (!file_exists(path)) {
    rc = ss_fail(SS_ERR_IO, "%s: missing config.json (not a Hugging Face model folder)", dir);
    free(path);
    return rc;
  }
  if ((rc = read_json(path, HF_MAX_CONFIG_BYTES, &doc)) != SS_OK) goto done;
  memset(info, 0, sizeof *info);
  if ((rc = cfg_arch(path, &doc, &info->arch)) || (rc = cfg_check_unsupported(path, &doc)) ||
      (rc = cfg_int(path, &doc, "hidden_size", 0, 0, &info->dim)) ||
      (rc = cfg_int(path, &doc, "intermediate_size", 0, 0, &info->hidden_dim)) ||
      (rc = cfg_int(path, &doc, "num_hidden_layers", 0, 0, &info->n_layers)) ||
      (rc = cfg_int(path, &doc, "num_attention_heads", 0, 0, &info->n_heads)) ||
      (rc = cfg_int(path, &doc, "num_key_value_heads", 1, info->n_heads, &info->n_kv_heads)) ||
      (rc = cfg_int(path, &doc, "vocab_size", 0, 0, &info->vocab_size)) ||
      (rc = cfg_int(path, &doc, "max_position_embeddings", 1, 2048, &info->max_seq_len)) ||
      (rc = cfg_float(path, &doc, "rope_theta", 10000.0f, &info->rope_theta)) ||
      (rc = cfg_float(path, &doc, "rms_norm_eps", 1e-6f, &info->rms_norm_eps)))
    goto done;
  if (info->n_heads <= 0) {
    rc = ss_fail(SS_ERR_FORMAT, "%s: num_attention_heads %d must be positive", path, info->n_heads);
    goto done;
  }
  if ((rc = cfg_int(path, &doc, "head_dim", 1, info->dim / info->n_heads, &info->head_dim))) goto done;

  const ss_json *tie = ss_json_get(&doc, ss_json_root(&doc), "tie_word_embeddings");
  if (tie && tie->type != SS_JSON_BOOL && tie->type != SS_JSON_NULL) {
    rc = ss_fail(SS_ERR_FORMAT, "%s: tie_word_embeddings must be true or false", path);
    goto done;
  }
  *tied = tie && tie->type == SS_JSON_BOOL && tie->boolean;

  int has_bos, has_eos;
  info->bos_token_id = info->eos_token_id = -1;
  if ((rc = cfg_token(path, &doc, "bos_token_id", &info->bos_token_id, &has_bos)) ||
      (rc = cfg_token(path, &doc, "eos_token_id", &info->eos_token_id, &has_eos)))
    goto done;
  if (!has_bos || !has_eos) {
    /* optional file: ignored when absent or not JSON */
    char *gpath = join_path(dir, "generation_config.json");
    ss_json_doc gen;
    memset(&gen, 0, sizeof gen);
    if (gpath && file_exists(gpath) && read_json(gpath, HF_MAX_CONFIG_BYTES, &gen) == SS_OK) {
      int found;
      if (!has_bos) rc = cfg_token(gpath, &gen, "bos_token_id", &info->bos_token_id, &found);
      if (rc == SS_OK && !has_eos) rc = cfg_token(gpath, &gen, "eos_token_id", &info->eos_token_id, &found);
    }
    ss_json_free(&gen);
    free(gpath);
    if (rc) goto done;
  }
  rc = ss_validate_info(path, "config.json", info);
done:
  ss_json_free(&doc);
  free(path);
  return rc;
}

/* ---------------------------------------------------------------------------
 * weight files */

/* A shard name from the index must be a plain file name in the folder. */
static int safe_file_name(const ss_json *v) {
  return v->type == SS_JSON_STRING && v->str_len > 0 && strlen(v->str) == v->str_len && !strchr(v->str, '/') &&
         strcmp(v->str, ".") != 0 && strcmp(v->str, "..") != 0;
}

/* Shards of model.safetensors.index.json, opened in order of first mention;
 * then every weight_map entry must be found in the shard it names. */
static int open_sharded(hf_loader *L, const char *index_path) {
  ss_json_doc doc;
  int rc = read_json(index_path, HF_MAX_INDEX_BYTES, &doc);
  const char **shards = NULL;
  int32_t n_shards = 0;
  if (rc != SS_OK) goto done;
  const ss_json *map = ss_json_get(&doc, ss_json_root(&doc), "weight_map");
  if (!map || map->type != SS_JSON_OBJECT || map->n_children == 0) {
    rc = ss_fail(SS_ERR_FORMAT, "%s: 'weight_map' must be a non-empty object", index_path);
    goto done;
  }
  shards = malloc(HF_MAX_SHARDS * sizeof *shards);
  if (!shards) {
    rc = ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory", index_path);
    goto done;
  }
  for (const ss_json *e = ss_json_first(&doc, map); e; e = ss_json_next(&doc, e)) {
    if (!safe_file_name(e)) {
      rc = ss_fail(SS_ERR_FORMAT, "%s: weight_map entry '%s' must name a file in the model folder", index_path,
                   e->key);
      goto done;
    }
    int32_t k = 0;
    while (k < n_shards && strcmp(shards[k], e->str) != 0) k++;
    if (k == n_shards) {
      if (n_shards == HF_MAX_SHARDS) {
        rc = ss_fail(SS_ERR_FORMAT, "%s: more than %d shard files", index_path, HF_MAX_SHARDS);
        goto done;
      }
      shards[n_shards++] = e->str;
      char *p = join_path(L->dir, e->str);
      if (!p) {
        rc = ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory", index_path);
        goto done;
      }
      rc = ss_st_add_file(&L->set, p);
      free(p);
      if (rc != SS_OK) goto done;
    }
  }
  if ((rc = ss_st_finish(&L->set, L->dir)) != SS_OK) goto done;
  for (const ss_json *e = ss_json_first(&doc, map); e; e = ss_json_next(&doc, e)) {
    const ss_st_tensor *t = ss_st_find(&L->set, e->key);
    int32_t k = 0;
    while (strcmp(shards[k], e->str) != 0) k++; /* present: added above */
    if (!t || t->file != k) {
      rc = ss_fail(SS_ERR_FORMAT, "%s: weight_map puts '%s' in %s but that shard does not hold it", index_path,
                   e->key, e->str);
      goto done;
    }
  }
done:
  free(shards);
  ss_json_free(&doc);
  return rc;
}

static int open_weights(hf_loader *L) {
  char *single = join_path(L->dir, "model.safetensors");
  char *index = join_path(L->dir, "model.safetensors.index.json");
  int rc;
  if (!single || !index)
    rc = ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory", L->dir);
  else if (file_exists(single)) {
    if ((rc = ss_st_add_file(&L->set, single)) == SS_OK) rc = ss_st_finish(&L->set, L->dir);
  } else if (file_exists(index))
    rc = open_sharded(L, index);
  else
    rc = ss_fail(SS_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json found", L->dir);
  free(single);
  free(index);
  return rc;
}

/* ---------------------------------------------------------------------------
 * tensors */

/* Find `name` with shape [rows] (cols == 0) or [rows, cols]: *out = NULL when it is absent and not
 * required; else checked (shape, dtype) and counted. */
static int find_tensor(hf_loader *L, const char *name, size_t rows, size_t cols, int required,
                       const ss_st_tensor **out) {
  *out = NULL;
  const ss_st_tensor *t = ss_st_find(&L->set, name);
  if (!t) return required ? ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' is missing", L->dir, name) : SS_OK;
  ss_st_file *f = &L->set.files[t->file];
  int32_t want_dims = cols ? 2 : 1;
  if (t->n_dims != want_dims || (uint64_t)t->shape[0] != rows || (cols && (uint64_t)t->shape[1] != cols)) {
    char got[96] = "", *g = got;
    for (int32_t i = 0; i < t->n_dims && g < got + sizeof got - 24; i++)
      g += snprintf(g, 24, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (cols)
      return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' has shape [%s] but config.json implies [%zu, %zu]", f->path,
                     name, got, rows, cols);
    return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' has shape [%s] but config.json implies [%zu]", f->path, name,
                   got, rows);
  }
  if (t->dtype < 0)
    return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", f->path,
                   name, t->dtype_name);
  L->n_params += (int64_t)t->numel;
  if (cols) L->numel_by_dtype[t->dtype] += t->numel;
  *out = t;
  return SS_OK;
}

/* The tensor's bytes in place (mapped, aligned for `align`, use_mmap), or NULL: copy them then. */
static int in_place(hf_loader *L, const ss_st_tensor *t, size_t align, const void **out) {
  ss_st_file *f = &L->set.files[t->file];
  const uint8_t *src = f->view.data + t->offset;
  *out = NULL;
  if (!L->use_mmap || (uintptr_t)src % align != 0) return SS_OK;
  int kept, rc = ss_model_keep_file(L->m, &f->view, &kept);
  if (rc == SS_OK && kept) *out = src;
  return rc;
}

/* A 1-D tensor (norm, bias) as float32: in place when F32 and aligned, else converted. */
static int get_vector(hf_loader *L, const char *name, size_t n, int required, const float **out) {
  const ss_st_tensor *t;
  *out = NULL;
  int rc = find_tensor(L, name, n, 0, required, &t);
  if (rc != SS_OK || !t) return rc;
  if (t->dtype == SS_DTYPE_F32) {
    const void *p;
    if ((rc = in_place(L, t, sizeof(float), &p)) != SS_OK) return rc;
    if (p) {
      *out = p;
      return SS_OK;
    }
  }
  float *dst;
  if ((rc = ss_model_alloc_f32(L->m, t->numel, name, &dst)) != SS_OK) return rc;
  ss_convert_to_f32(dst, L->set.files[t->file].view.data + t->offset, t->numel, t->dtype);
  *out = dst;
  return SS_OK;
}

/* A matrix in the file's type: in place when aligned for it, else an owned copy of its bytes. */
static int get_matrix(hf_loader *L, const char *name, size_t rows, size_t cols, ss_weight *out) {
  const ss_st_tensor *t;
  int rc = find_tensor(L, name, rows, cols, 1, &t);
  if (rc != SS_OK) return rc;
  const void *p;
  if ((rc = in_place(L, t, ss_dtype_align(t->dtype), &p)) != SS_OK) return rc;
  if (!p) {
    void *copy = malloc(t->nbytes ? t->nbytes : 1);
    if (!copy) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for %s", L->dir, t->nbytes, name);
    if ((rc = ss_model_own(L->m, copy)) != SS_OK) return rc;
    memcpy(copy, L->set.files[t->file].view.data + t->offset, t->nbytes);
    p = copy;
  }
  *out = ss_weight_make(p, t->dtype, (int64_t)rows, (int64_t)cols);
  return SS_OK;
}

static int get_layer(hf_loader *L, int32_t i, ss_layer_weights *ly) {
  const ss_model_info *in = &L->m->info;
  ss_weight_sizes s = ss_weight_sizes_of(in);
  size_t dim = (size_t)in->dim, hidden = (size_t)in->hidden_dim;
  int qwen = in->arch == SS_ARCH_QWEN2;
  char name[128];
  int rc;
#define LAYER_VECTOR(field, suffix, n, required)                                \
  snprintf(name, sizeof name, "model.layers.%d.%s", (int)i, suffix);           \
  if ((rc = get_vector(L, name, n, required, &ly->field)) != SS_OK) return rc;
#define LAYER_MATRIX(field, suffix, rows, cols)                                \
  snprintf(name, sizeof name, "model.layers.%d.%s", (int)i, suffix);           \
  if ((rc = get_matrix(L, name, rows, cols, &ly->field)) != SS_OK) return rc;

  LAYER_VECTOR(attn_norm, "input_layernorm.weight", dim, 1)
  LAYER_MATRIX(wq, "self_attn.q_proj.weight", s.q_dim, dim)
  LAYER_MATRIX(wk, "self_attn.k_proj.weight", s.kv_dim, dim)
  LAYER_MATRIX(wv, "self_attn.v_proj.weight", s.kv_dim, dim)
  LAYER_VECTOR(bq, "self_attn.q_proj.bias", s.q_dim, qwen)
  LAYER_VECTOR(bk, "self_attn.k_proj.bias", s.kv_dim, qwen)
  LAYER_VECTOR(bv, "self_attn.v_proj.bias", s.kv_dim, qwen)
  LAYER_MATRIX(wo, "self_attn.o_proj.weight", dim, s.q_dim)
  LAYER_VECTOR(ffn_norm, "post_attention_layernorm.weight", dim, 1)
  LAYER_MATRIX(w_gate, "mlp.gate_proj.weight", hidden, dim)
  LAYER_MATRIX(w_up, "mlp.up_proj.weight", hidden, dim)
  LAYER_MATRIX(w_down, "mlp.down_proj.weight", dim, hidden)
#undef LAYER_VECTOR
#undef LAYER_MATRIX

  /* biases the model has no slot for must not be dropped silently */
  static const char *const unsupported[] = {"self_attn.o_proj.bias", "mlp.gate_proj.bias", "mlp.up_proj.bias",
                                            "mlp.down_proj.bias"};
  for (size_t k = 0; k < sizeof unsupported / sizeof unsupported[0]; k++) {
    snprintf(name, sizeof name, "model.layers.%d.%s", (int)i, unsupported[k]);
    if (ss_st_find(&L->set, name))
      return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' is not supported by this runtime", L->dir, name);
  }
  return SS_OK;
}

static int get_weights(hf_loader *L, int tied) {
  ss_model *m = L->m;
  size_t dim = (size_t)m->info.dim, vocab = (size_t)m->info.vocab_size, n = (size_t)m->info.n_layers;
  ss_layer_weights *layers = calloc(n, sizeof *layers);
  if (!layers) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu layers", L->dir, n);
  int rc = ss_model_own(m, layers);
  if (rc != SS_OK) return rc;
  m->layers = layers;

  if ((rc = get_matrix(L, "model.embed_tokens.weight", vocab, dim, &m->tok_embeddings))) return rc;
  for (size_t i = 0; i < n; i++)
    if ((rc = get_layer(L, (int32_t)i, &layers[i]))) return rc;
  if ((rc = get_vector(L, "model.norm.weight", dim, 1, &m->final_norm))) return rc;
  if (tied)
    m->lm_head = m->tok_embeddings;
  else if ((rc = get_matrix(L, "lm_head.weight", vocab, dim, &m->lm_head)))
    return rc;

  m->info.n_params = L->n_params;
  m->info.source_dtype = ss_dominant_dtype(L->numel_by_dtype);
  m->info.format = SS_FORMAT_HF;
  return SS_OK;
}

int ss_load_hf(const char *dir, const ss_model_params *params, ss_model **out) {
  hf_loader L;
  memset(&L, 0, sizeof L);
  L.dir = dir;
  L.use_mmap = params->use_mmap;
  *out = NULL;
  ss_model_info info;
  int tied = 0;
  int rc = read_config(dir, &info, &tied);
  if (rc == SS_OK) rc = open_weights(&L);
  if (rc == SS_OK) rc = ss_model_new(dir, &L.m);
  if (rc == SS_OK) {
    L.m->info = info;
    rc = get_weights(&L, tied);
  }
  ss_st_close(&L.set); /* kept mappings now belong to the model */
  if (rc != SS_OK) {
    ss_model_free(L.m);
    return rc;
  }
  *out = L.m;
  return SS_OK;
}
