/* gguf.c — GGUF v3 parsing with every length checked against the file (see gguf.h). */
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_util.h"
#include "weights.h"

#define MAX_KEY 65535u  /* the format's limit on key length */
#define MAX_NAME 4096u  /* tensor names far longer than any real one are a corrupt file */
#define HEADER_BYTES 24 /* magic, version, n_tensors, n_kv */

typedef struct cursor {
  const uint8_t *p;
  size_t n, off;
} cursor;

static uint64_t rd_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint32_t rd_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static int take(cursor *c, size_t k, const uint8_t **out) {
  if (c->n - c->off < k) return 0;
  *out = c->p + c->off;
  c->off += k;
  return 1;
}
static int take_u32(cursor *c, uint32_t *v) {
  const uint8_t *p;
  if (!take(c, 4, &p)) return 0;
  *v = rd_u32(p);
  return 1;
}
static int take_u64(cursor *c, uint64_t *v) {
  const uint8_t *p;
  if (!take(c, 8, &p)) return 0;
  *v = rd_u64(p);
  return 1;
}
static int take_str(cursor *c, uint64_t max, ss_gguf_str *s) {
  uint64_t n;
  const uint8_t *p;
  if (!take_u64(c, &n) || n > max || !take(c, (size_t)n, &p)) return 0;
  s->p = (const char *)p;
  s->n = n;
  return 1;
}

/* Bytes of one scalar of a metadata type; 0 for strings, arrays and unknown types. */
static size_t scalar_size(uint32_t t) {
  switch (t) {
    case SS_GGUF_U8:
    case SS_GGUF_I8:
    case SS_GGUF_BOOL: return 1;
    case SS_GGUF_U16:
    case SS_GGUF_I16: return 2;
    case SS_GGUF_U32:
    case SS_GGUF_I32:
    case SS_GGUF_F32: return 4;
    case SS_GGUF_U64:
    case SS_GGUF_I64:
    case SS_GGUF_F64: return 8;
    default: return 0;
  }
}

static int fail_at(const char *path, size_t off, const char *what) {
  return ss_fail(SS_ERR_FORMAT, "%s: GGUF: %s (at byte %zu)", path, what, off);
}

/* Skip one value of type t (not an array) */
static int skip_value(cursor *c, uint32_t t) {
  if (t == SS_GGUF_STRING) {
    ss_gguf_str s;
    return take_str(c, UINT64_MAX, &s);
  }
  size_t k = scalar_size(t);
  const uint8_t *p;
  return k && take(c, k, &p);
}

static int parse_kv(cursor *c, ss_gguf_kv *kv, const char *path) {
  size_t at = c->off;
  if (!take_str(c, MAX_KEY, &kv->key)) return fail_at(path, at, "truncated or oversized metadata key");
  if (!take_u32(c, &kv->type)) return fail_at(path, c->off, "truncated metadata value type");
  kv->val = c->p + c->off;
  kv->arr_type = 0;
  kv->arr_n = 0;
  if (kv->type == SS_GGUF_ARRAY) {
    if (!take_u32(c, &kv->arr_type) || !take_u64(c, &kv->arr_n))
      return fail_at(path, c->off, "truncated array header");
    kv->val = c->p + c->off;
    if (kv->arr_type == SS_GGUF_ARRAY) return fail_at(path, c->off, "nested arrays are not supported");
    if (kv->arr_type == SS_GGUF_STRING) {
      for (uint64_t i = 0; i < kv->arr_n; i++)
        if (!skip_value(c, SS_GGUF_STRING)) return fail_at(path, c->off, "truncated string array");
      return SS_OK;
    }
    size_t k = scalar_size(kv->arr_type), bytes;
    const uint8_t *p;
    if (!k) return fail_at(path, c->off, "unknown array element type");
    if (kv->arr_n > SIZE_MAX / k || !ss_mul_ok((size_t)kv->arr_n, k, &bytes) || !take(c, bytes, &p))
      return fail_at(path, c->off, "array runs past the end of the file");
    return SS_OK;
  }
  if (!skip_value(c, kv->type)) {
    char msg[80];
    snprintf(msg, sizeof msg, "metadata value of type %u is unknown or truncated", kv->type);
    return fail_at(path, c->off, msg);
  }
  return SS_OK;
}

static int name_cmp(const ss_gguf_str *a, const ss_gguf_str *b) {
  uint64_t n = a->n < b->n ? a->n : b->n;
  int r = memcmp(a->p, b->p, (size_t)n);
  return r ? r : (a->n < b->n ? -1 : a->n > b->n);
}

static int tensor_cmp(const void *x, const void *y) {
  return name_cmp(&((const ss_gguf_tensor *)x)->name, &((const ss_gguf_tensor *)y)->name);
}

int32_t ss_gguf_dtype(uint32_t t) {
  switch (t) {
    case SS_GGML_F32: return SS_DTYPE_F32;
    case SS_GGML_F16: return SS_DTYPE_F16;
    case SS_GGML_BF16: return SS_DTYPE_BF16;
    case SS_GGML_Q8_0: return SS_DTYPE_Q8_0;
    case SS_GGML_Q4_0: return SS_DTYPE_Q4_0;
    default: return -1;
  }
}

static int parse_tensor(cursor *c, ss_gguf_tensor *t, const char *path) {
  size_t at = c->off;
  if (!take_str(c, MAX_NAME, &t->name)) return fail_at(path, at, "truncated or oversized tensor name");
  if (!take_u32(c, &t->n_dims)) return fail_at(path, c->off, "truncated tensor info");
  if (t->n_dims < 1 || t->n_dims > SS_GGUF_MAX_DIMS) return fail_at(path, c->off, "tensor with 0 or more than 4 dimensions");
  uint64_t numel = 1;
  for (uint32_t d = 0; d < SS_GGUF_MAX_DIMS; d++) {
    uint64_t v = 1;
    if (d < t->n_dims && !take_u64(c, &v)) return fail_at(path, c->off, "truncated tensor dimensions");
    if (v > (uint64_t)INT64_MAX || (v && numel > (uint64_t)INT64_MAX / v))
      return fail_at(path, c->off, "tensor dimensions overflow");
    numel *= v;
    t->ne[d] = (int64_t)v;
  }
  if (!take_u32(c, &t->type) || !take_u64(c, &t->offset)) return fail_at(path, c->off, "truncated tensor info");
  return SS_OK;
}

int ss_gguf_is_gguf(const uint8_t *data, size_t size) { return size >= 4 && rd_u32(data) == SS_GGUF_MAGIC; }

int ss_gguf_parse(ss_gguf *g, const uint8_t *data, size_t size, const char *path) {
  memset(g, 0, sizeof *g);
  g->data = data;
  g->size = size;
  if (size < HEADER_BYTES)
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: %zu bytes is shorter than the %d-byte header", path, size, HEADER_BYTES);
  if (!ss_gguf_is_gguf(data, size)) return ss_fail(SS_ERR_FORMAT, "%s: not a GGUF file (no 'GGUF' magic)", path);
  g->version = rd_u32(data + 4);
  if (g->version != 3 && g->version != 2)
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF version %u is not supported (2 or 3)", path, g->version);
  g->n_tensors = rd_u64(data + 8);
  g->n_kv = rd_u64(data + 16);
  cursor c = {data, size, HEADER_BYTES};
  /* a key-value pair takes at least 13 bytes, a tensor info 29: counts beyond that are corrupt */
  if (g->n_kv > (size - c.off) / 13 || g->n_tensors > (size - c.off) / 29)
    return ss_fail(SS_ERR_FORMAT, "%s: GGUF: %llu metadata pairs / %llu tensors cannot fit in %zu bytes", path,
                   (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, size);
  g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
  g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
  if (!g->kv || !g->tensors) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: GGUF: out of memory for the header", path);
  int rc;
  for (uint64_t i = 0; i < g->n_kv; i++)
    if ((rc = parse_kv(&c, &g->kv[i], path)) != SS_OK) return rc;
  for (uint64_t i = 0; i < g->n_tensors; i++)
    if ((rc = parse_tensor(&c, &g->tensors[i], path)) != SS_OK) return rc;

  g->alignment = 32;
  const ss_gguf_kv *al = ss_gguf_find(g, "general.alignment");
  if (al) {
    int64_t a;
    if (!ss_gguf_int(al, &a) || a <= 0 || a > (1 << 20) || (a & (a - 1)))
      return ss_fail(SS_ERR_FORMAT, "%s: GGUF: general.alignment must be a power of two up to 2^20", path);
    g->alignment = (uint64_t)a;
  }
  size_t start = (c.off + (size_t)g->alignment - 1) / (size_t)g->alignment * (size_t)g->alignment;
  if (start > size) return ss_fail(SS_ERR_FORMAT, "%s: GGUF: no data region after the header", path);
  g->data_start = start;
  size_t region = size - start;
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    const ss_gguf_tensor *t = &g->tensors[i];
    if (t->offset % g->alignment != 0)
      return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%.*s' offset %llu is not a multiple of the alignment %llu",
                     path, (int)t->name.n, t->name.p, (unsigned long long)t->offset,
                     (unsigned long long)g->alignment);
    int32_t dt = ss_gguf_dtype(t->type);
    if (dt < 0) continue; /* sizes of types we never read are not needed; the loader names the type */
    size_t rb = ss_dtype_row_bytes(dt, t->ne[0]), rows = 1, bytes = 0;
    for (uint32_t d = 1; d < SS_GGUF_MAX_DIMS; d++)
      if (!ss_mul_ok(rows, (size_t)t->ne[d], &rows)) rows = SIZE_MAX;
    if (t->ne[0] > 0 && rb == 0)
      return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%.*s' of a block type has rows of %lld, not a multiple of %d",
                     path, (int)t->name.n, t->name.p, (long long)t->ne[0], SS_QBLOCK);
    if (!ss_mul_ok(rb, rows, &bytes) || t->offset > region || bytes > region - (size_t)t->offset)
      return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%.*s' (%zu bytes at offset %llu) runs past the end of the file "
                     "(data region %zu bytes)", path, (int)t->name.n, t->name.p, bytes,
                     (unsigned long long)t->offset, region);
  }
  qsort(g->tensors, (size_t)g->n_tensors, sizeof *g->tensors, tensor_cmp);
  for (uint64_t i = 1; i < g->n_tensors; i++)
    if (!name_cmp(&g->tensors[i - 1].name, &g->tensors[i].name))
      return ss_fail(SS_ERR_FORMAT, "%s: GGUF: tensor '%.*s' appears twice", path, (int)g->tensors[i].name.n,
                     g->tensors[i].name.p);
  return SS_OK;
}

void ss_gguf_free(ss_gguf *g) {
  free(g->kv);
  free(g->tensors);
  memset(g, 0, sizeof *g);
}

int ss_gguf_str_eq(ss_gguf_str s, const char *c) { return strlen(c) == s.n && memcmp(s.p, c, (size_t)s.n) == 0; }

const ss_gguf_kv *ss_gguf_find(const ss_gguf *g, const char *key) {
  for (uint64_t i = 0; i < g->n_kv; i++)
    if (ss_gguf_str_eq(g->kv[i].key, key)) return &g->kv[i];
  return NULL;
}

const ss_gguf_tensor *ss_gguf_find_tensor(const ss_gguf *g, const char *name) {
  ss_gguf_tensor key;
  key.name.p = name;
  key.name.n = strlen(name);
  return g->n_tensors ? bsearch(&key, g->tensors, (size_t)g->n_tensors, sizeof key, tensor_cmp) : NULL;
}

int ss_gguf_int(const ss_gguf_kv *kv, int64_t *out) {
  const uint8_t *p = kv->val;
  switch (kv->type) {
    case SS_GGUF_U8: *out = p[0]; return 1;
    case SS_GGUF_I8: *out = (int8_t)p[0]; return 1;
    case SS_GGUF_U16: *out = (uint16_t)(p[0] | p[1] << 8); return 1;
    case SS_GGUF_I16: *out = (int16_t)(uint16_t)(p[0] | p[1] << 8); return 1;
    case SS_GGUF_U32: *out = rd_u32(p); return 1;
    case SS_GGUF_I32: *out = (int32_t)rd_u32(p); return 1;
    case SS_GGUF_U64: {
      uint64_t v = rd_u64(p);
      if (v > (uint64_t)INT64_MAX) return 0;
      *out = (int64_t)v;
      return 1;
    }
    case SS_GGUF_I64: *out = (int64_t)rd_u64(p); return 1;
    default: return 0;
  }
}

int ss_gguf_num(const ss_gguf_kv *kv, double *out) {
  int64_t i;
  if (kv->type == SS_GGUF_F32) {
    uint32_t u = rd_u32(kv->val);
    float f;
    memcpy(&f, &u, 4);
    *out = f;
    return 1;
  }
  if (kv->type == SS_GGUF_F64) {
    uint64_t u = rd_u64(kv->val);
    double d;
    memcpy(&d, &u, 8);
    *out = d;
    return 1;
  }
  if (!ss_gguf_int(kv, &i)) return 0;
  *out = (double)i;
  return 1;
}

int ss_gguf_string(const ss_gguf_kv *kv, ss_gguf_str *out) {
  if (kv->type != SS_GGUF_STRING) return 0;
  out->n = rd_u64(kv->val);
  out->p = (const char *)kv->val + 8;
  return 1;
}

const char *ss_ggml_type_name(uint32_t type, char buf[32]) {
  static const char *const names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "type 4", "type 5", "Q5_0", "Q5_1",
                                      "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",   "Q5_K",   "Q6_K", "Q8_K",
                                      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
                                      "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"};
  if (type < sizeof names / sizeof names[0]) return names[type];
  snprintf(buf, 32, "type %u", type);
  return buf;
}
