/* gguf_writer.h — a small GGUF writer for the C tests and the fuzz harness: a loaded model through
 * the export API (ss_model_export_*), with optional defects (write_opts) for the malformed-file tests. */
#ifndef SS_GGUF_WRITER_H
#define SS_GGUF_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "sinkstream.h"

/* ---- a growable byte buffer and a GGUF writer ---- */
typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static inline void put(buf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 1024;
    b->p = realloc(b->p, b->cap);
    if (!b->p) exit(2);
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}
static inline void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static inline void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static inline void put_str(buf *b, const char *s) {
  put_u64(b, strlen(s));
  put(b, s, strlen(s));
}
static inline void kv_u32(buf *b, const char *k, uint32_t v) {
  put_str(b, k);
  put_u32(b, SS_GGUF_U32);
  put_u32(b, v);
}
static inline void kv_f32(buf *b, const char *k, float v) {
  put_str(b, k);
  put_u32(b, SS_GGUF_F32);
  put(b, &v, 4);
}
static inline void kv_str(buf *b, const char *k, const char *v) {
  put_str(b, k);
  put_u32(b, SS_GGUF_STRING);
  put_str(b, v);
}

static inline uint32_t ggml_of(int32_t dt) {
  static const uint32_t map[] = {SS_GGML_F32, SS_GGML_F16, SS_GGML_BF16, SS_GGML_Q8_0, SS_GGML_Q4_0};
  return map[dt];
}

typedef struct write_opts {
  const char *arch;     /* default "llama" */
  uint32_t version;     /* default 3 */
  int skip;             /* tensor index left out (-1 none) */
  int extra_tensor;     /* add an unknown tensor */
  int dup_tensor;       /* write tensor 1 twice */
  uint32_t force_type;  /* != 0: tensor 1's type (e.g. Q4_K = 12) */
  int misalign_offset;  /* tensor 1's offset + 16 */
  int past_end;         /* tensor 1's offset beyond the file */
  int bad_alignment;    /* general.alignment = 24 */
  int nested_array;     /* a metadata array of arrays */
  int wrong_shape;      /* tensor 1 with ne[0] + 1 */
  int extra_meta;       /* + rope scaling type "linear" */
} write_opts;

/* The model as a GGUF file in `dtype` (SS_WEIGHTS_AS_FILE: as loaded); returns the bytes (empty when the
 * model cannot be exported). */
static inline buf gguf_bytes(const ss_model *m, int32_t dtype, const write_opts *o) {
  int32_t n = 0;
  buf b = {0};
  if (ss_model_export_count(m, &n) != SS_OK) return b;
  ss_tensor_info *ti = calloc((size_t)n + 2, sizeof *ti);
  for (int32_t i = 0; i < n; i++) ss_model_export_info(m, i, dtype, &ti[i]);
  int32_t nt = n;
  if (o->extra_tensor) {
    ti[nt] = ti[n - 1];
    snprintf(ti[nt].name, sizeof ti[nt].name, "rope_freqs.weight");
    nt++;
  }
  if (o->dup_tensor) ti[nt++] = ti[1];
  const ss_model_info *in = &m->info;
  put_u32(&b, SS_GGUF_MAGIC);
  put_u32(&b, o->version ? o->version : 3);
  put_u64(&b, (uint64_t)nt - (o->skip >= 0 ? 1 : 0));
  put_u64(&b, 12 + (o->bad_alignment ? 1 : 0) + (o->nested_array ? 1 : 0) + (o->extra_meta ? 1 : 0));
  kv_str(&b, "general.architecture", o->arch ? o->arch : "llama");
  kv_u32(&b, "llama.context_length", (uint32_t)in->max_seq_len);
  kv_u32(&b, "llama.embedding_length", (uint32_t)in->dim);
  kv_u32(&b, "llama.feed_forward_length", (uint32_t)in->hidden_dim);
  kv_u32(&b, "llama.block_count", (uint32_t)in->n_layers);
  kv_u32(&b, "llama.attention.head_count", (uint32_t)in->n_heads);
  kv_u32(&b, "llama.attention.head_count_kv", (uint32_t)in->n_kv_heads);
  kv_u32(&b, "llama.rope.dimension_count", (uint32_t)in->head_dim);
  kv_f32(&b, "llama.rope.freq_base", in->rope_theta);
  kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", in->rms_norm_eps);
  kv_u32(&b, "tokenizer.ggml.bos_token_id", (uint32_t)in->bos_token_id);
  kv_u32(&b, "tokenizer.ggml.eos_token_id", (uint32_t)in->eos_token_id);
  if (o->bad_alignment) kv_u32(&b, "general.alignment", 24);
  if (o->extra_meta) kv_str(&b, "llama.rope.scaling.type", "linear");
  if (o->nested_array) {
    put_str(&b, "x.nested");
    put_u32(&b, SS_GGUF_ARRAY);
    put_u32(&b, SS_GGUF_ARRAY);
    put_u64(&b, 1);
  }
  uint64_t off = 0, *offs = calloc((size_t)nt, sizeof *offs);
  for (int32_t i = 0; i < nt; i++) {
    offs[i] = off;
    off += ((uint64_t)ti[i].row_bytes * (uint64_t)ti[i].ne[1] + 31) / 32 * 32;
    if (i == o->skip) continue;
    put_str(&b, ti[i].name);
    put_u32(&b, (uint32_t)ti[i].n_dims);
    for (int d = 0; d < ti[i].n_dims; d++) put_u64(&b, (uint64_t)ti[i].ne[d] + (o->wrong_shape && i == 1 && d == 0));
    put_u32(&b, i == 1 && o->force_type ? o->force_type : ggml_of(ti[i].dtype));
    put_u64(&b, offs[i] + (i == 1 && o->misalign_offset ? 16 : 0) + (i == 1 && o->past_end ? (uint64_t)1 << 40 : 0));
  }
  while (b.n % 32) put(&b, "", 1);
  for (int32_t i = 0; i < nt; i++) {
    size_t bytes = (size_t)ti[i].row_bytes * (size_t)ti[i].ne[1];
    uint8_t *d = calloc(bytes + 32, 1);
    int32_t src = i < n ? i : i == n && o->extra_tensor ? n - 1 : 1;
    ss_model_export_rows(m, src, dtype, 0, ti[i].ne[1], d, bytes);
    put(&b, d, bytes);
    while (b.n % 32) put(&b, "", 1);
    free(d);
  }
  free(offs);
  free(ti);
  return b;
}

#endif /* SS_GGUF_WRITER_H */
