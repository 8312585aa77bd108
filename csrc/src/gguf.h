/*
 * gguf.h — reading GGUF v3 files (ggml's model format).
 *
 * Layout (little-endian): "GGUF", u32 version (3), u64 n_tensors, u64 n_kv, then n_kv pairs
 *   {string key, u32 value type, value}, then n_tensors infos {string name, u32 n_dims, u64 ne[n_dims],
 *   u32 ggml type, u64 offset}; the data region starts at the next multiple of general.alignment
 *   (default 32) and each tensor at data + offset. A string is u64 length + bytes (no NUL); an array
 *   is u32 element type, u64 count, the elements.
 * Everything is validated when the file is parsed (every length against the file size, offsets
 * aligned and inside the data region, known value types, at most 4 dimensions, no nested arrays),
 * so callers index it freely. Keys and names point into the file (not NUL-terminated).
 */
#ifndef SS_GGUF_H
#define SS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#define SS_GGUF_MAGIC 0x46554747u /* "GGUF" */
#define SS_GGUF_MAX_DIMS 4

/* GGUF metadata value types */
enum {
  SS_GGUF_U8 = 0,
  SS_GGUF_I8 = 1,
  SS_GGUF_U16 = 2,
  SS_GGUF_I16 = 3,
  SS_GGUF_U32 = 4,
  SS_GGUF_I32 = 5,
  SS_GGUF_F32 = 6,
  SS_GGUF_BOOL = 7,
  SS_GGUF_STRING = 8,
  SS_GGUF_ARRAY = 9,
  SS_GGUF_U64 = 10,
  SS_GGUF_I64 = 11,
  SS_GGUF_F64 = 12,
};

/* ggml tensor types this library maps (the others are named in errors only) */
enum { SS_GGML_F32 = 0, SS_GGML_F16 = 1, SS_GGML_Q4_0 = 2, SS_GGML_Q8_0 = 8, SS_GGML_BF16 = 30 };

typedef struct ss_gguf_str {
  const char *p;
  uint64_t n;
} ss_gguf_str;

typedef struct ss_gguf_kv {
  ss_gguf_str key;
  uint32_t type;      /* SS_GGUF_* */
  const uint8_t *val; /* the value's bytes (for a string: its length field; an array: its first element) */
  uint32_t arr_type;  /* arrays: element type */
  uint64_t arr_n;     /* arrays: element count */
} ss_gguf_kv;

typedef struct ss_gguf_tensor {
  ss_gguf_str name;
  uint32_t n_dims;
  int64_t ne[SS_GGUF_MAX_DIMS]; /* ne[0] is the fastest dimension; unused ones are 1 */
  uint32_t type;                /* ggml type */
  uint64_t offset;              /* from the start of the data region */
} ss_gguf_tensor;

typedef struct ss_gguf {
  const uint8_t *data; /* the whole file */
  size_t size;
  uint32_t version;
  uint64_t n_kv, n_tensors;
  ss_gguf_kv *kv;
  ss_gguf_tensor *tensors;
  uint64_t alignment;
  size_t data_start; /* byte offset of the data region */
} ss_gguf;

/* Parse file bytes (they must outlive g). SS_ERR_FORMAT naming `path` and the problem; free with
 * ss_gguf_free (also after a failure). */
int ss_gguf_parse(ss_gguf *g, const uint8_t *data, size_t size, const char *path);
void ss_gguf_free(ss_gguf *g);

/* Whether the bytes start with the GGUF magic. */
int ss_gguf_is_gguf(const uint8_t *data, size_t size);

/* Metadata lookups (NULL / 0 when absent). */
const ss_gguf_kv *ss_gguf_find(const ss_gguf *g, const char *key);
/* An integer value of any integer type; 1 with *out set, 0 when not an integer or out of int64 range. */
int ss_gguf_int(const ss_gguf_kv *kv, int64_t *out);
/* A float (F32, F64) or integer value as double. */
int ss_gguf_num(const ss_gguf_kv *kv, double *out);
/* A string value. */
int ss_gguf_string(const ss_gguf_kv *kv, ss_gguf_str *out);
const ss_gguf_tensor *ss_gguf_find_tensor(const ss_gguf *g, const char *name);
int ss_gguf_str_eq(ss_gguf_str s, const char *c);
/* The ss_dtype of a ggml tensor type, -1 when this library does not read it. */
int32_t ss_gguf_dtype(uint32_t ggml_type);
/* Name of a ggml tensor type ("Q4_K"), "type <n>" for unknown ones (static or in buf[32]). */
const char *ss_ggml_type_name(uint32_t type, char buf[32]);

#endif /* SS_GGUF_H */
