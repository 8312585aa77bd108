/* model_util.c — file views, ownership, dtype conversion and shape checks
 * shared by the model loaders. */
#include "model_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

/* ---------------------------------------------------------------------------
 * file views */

/* Read the whole file into a malloc'd buffer (used when mmap is refused). */
static int read_all(int fd, const char *path, size_t size, uint8_t **out) {
  uint8_t *buf = malloc(size);
  if (!buf) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes to read the file", path, size);
  size_t done = 0;
  while (done < size) {
    ssize_t r = read(fd, buf + done, size - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      free(buf);
      return ss_fail(SS_ERR_IO, "%s: read failed after %zu of %zu bytes: %s", path, done, size,
                     r < 0 ? strerror(errno) : "file shrank");
    }
    done += (size_t)r;
  }
  *out = buf;
  return SS_OK;
}

int ss_file_open(const char *path, ss_file *f) {
  memset(f, 0, sizeof *f);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ss_fail(SS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return ss_fail(SS_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ss_fail(SS_ERR_IO, "%s: not a regular file", path);
  }
  if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
    close(fd);
    return ss_fail(SS_ERR_IO, "%s: file size %lld not addressable", path, (long long)st.st_size);
  }
  size_t size = (size_t)st.st_size;
  int rc = SS_OK;
  if (size > 0) {
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED) {
      f->data = p;
      f->mapped = 1;
    } else {
      uint8_t *buf = NULL;
      rc = read_all(fd, path, size, &buf);
      f->data = buf;
    }
  }
  close(fd);
  if (rc == SS_OK) f->size = size;
  return rc;
}

void ss_file_close(ss_file *f) {
  if (f->data && !f->kept) {
    if (f->mapped)
      munmap((void *)f->data, f->size);
    else
      free((void *)f->data);
  }
  memset(f, 0, sizeof *f);
}

int ss_model_keep_file(ss_model *m, ss_file *f, int *kept) {
  *kept = 1;
  if (!f->data || f->kept) return SS_OK;
  if (f->mapped) {
    int32_t cap = (int32_t)(sizeof m->map_base / sizeof m->map_base[0]);
    if (m->n_maps >= cap) {
      *kept = 0;
      return SS_OK;
    }
    m->map_base[m->n_maps] = (void *)f->data;
    m->map_size[m->n_maps] = f->size;
    m->n_maps++;
  } else {
    int rc = ss_model_own(m, (void *)f->data);
    if (rc != SS_OK) {
      memset(f, 0, sizeof *f); /* ss_model_own freed the buffer */
      *kept = 0;
      return rc;
    }
  }
  f->kept = 1;
  return SS_OK;
}

/* ---------------------------------------------------------------------------
 * ownership */

int ss_model_new(const char *path, ss_model **out) {
  *out = NULL;
  ss_model *m = calloc(1, sizeof *m);
  if (!m) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate the model", path);
  m->path = strdup(path);
  if (!m->path) {
    free(m);
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate the model", path);
  }
  m->info.bos_token_id = -1;
  m->info.eos_token_id = -1;
  *out = m;
  return SS_OK;
}

int ss_model_own(ss_model *m, void *buf) {
  if (!buf) return SS_OK;
  if (m->n_owned == m->cap_owned) {
    if (m->cap_owned > INT32_MAX / 2) {
      free(buf);
      return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: too many buffers", m->path);
    }
    int32_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
    void **p = realloc(m->owned, (size_t)cap * sizeof *p);
    if (!p) {
      free(buf);
      return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot grow the buffer list", m->path);
    }
    m->owned = p;
    m->cap_owned = cap;
  }
  m->owned[m->n_owned++] = buf;
  return SS_OK;
}

int ss_model_alloc_f32(ss_model *m, size_t n, const char *what, float **out) {
  size_t bytes;
  *out = NULL;
  if (!ss_mul_ok(n, sizeof(float), &bytes))
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: %s: %zu floats overflow size_t", m->path, what, n);
  float *p = malloc(bytes ? bytes : 1);
  if (!p) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for %s", m->path, bytes, what);
  int rc = ss_model_own(m, p);
  if (rc != SS_OK) return rc;
  *out = p;
  return SS_OK;
}

/* ---------------------------------------------------------------------------
 * dtype conversion (bit-exact; keeps signed zeros, subnormals, inf and NaN
 * payloads) */

static float f32_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

float ss_bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

float ss_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13); /* inf, or NaN keeping its payload */
  } else if (exp != 0) {
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign; /* +-0 */
  } else {
    /* subnormal: mant * 2^-24. Shift the leading 1 up to the implicit bit. */
    uint32_t e = 127 - 14;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      e--;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  return f32_from_bits(bits);
}

uint16_t ss_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0)); /* inf, quiet NaN */
  int e = (int)exp - 127 + 15;
  if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow: inf */
  uint32_t m, shift;
  if (e <= 0) {                   /* subnormal half (or zero) */
    if (e < -10) return (uint16_t)sign;
    m = mant | 0x800000u;          /* the implicit bit */
    shift = (uint32_t)(14 - e);    /* 24-bit significand -> the 10-bit subnormal field */
  } else {
    m = mant;
    shift = 13;
  }
  uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (e > 0) h |= (uint32_t)e << 10;
  if (rem > half || (rem == half && (h & 1))) h++; /* may carry into the exponent: correct, up to inf */
  return (uint16_t)(sign | h);
}

uint16_t ss_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) return (uint16_t)((x >> 16) | 0x40u);
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

void ss_convert_to_f32(float *dst, const void *src, size_t n, int32_t dtype) {
  const uint8_t *s = src;
  switch (dtype) {
    case SS_DTYPE_F32:
      memcpy(dst, src, n * sizeof(float));
      break;
    case SS_DTYPE_F16:
      for (size_t i = 0; i < n; i++) dst[i] = ss_f16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
      break;
    case SS_DTYPE_BF16:
      for (size_t i = 0; i < n; i++) dst[i] = ss_bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
      break;
    default:
      break; /* callers only pass the dtypes above */
  }
}

size_t ss_dtype_size(int32_t dtype) {
  switch (dtype) {
    case SS_DTYPE_F32: return 4;
    case SS_DTYPE_F16: return 2;
    case SS_DTYPE_BF16: return 2;
    default: return 0;
  }
}

const char *ss_dtype_name(int32_t dtype) {
  switch (dtype) {
    case SS_DTYPE_F32: return "F32";
    case SS_DTYPE_F16: return "F16";
    case SS_DTYPE_BF16: return "BF16";
    case SS_DTYPE_Q8_0: return "Q8_0";
    case SS_DTYPE_Q4_0: return "Q4_0";
    default: return "?";
  }
}

/* ---------------------------------------------------------------------------
 * validation */

static int check_range(const char *path, const char *source, const char *field, int64_t v, int64_t max) {
  if (v <= 0 || v > max)
    return ss_fail(SS_ERR_FORMAT, "%s: %s: %s = %lld is out of range (1..%lld)", path, source, field,
                   (long long)v, (long long)max);
  return SS_OK;
}

int ss_validate_info(const char *path, const char *source, const ss_model_info *in) {
  int rc;
  if ((rc = check_range(path, source, "dim", in->dim, SS_MAX_DIM))) return rc;
  if ((rc = check_range(path, source, "hidden_dim", in->hidden_dim, SS_MAX_DIM))) return rc;
  if ((rc = check_range(path, source, "n_layers", in->n_layers, SS_MAX_LAYERS))) return rc;
  if ((rc = check_range(path, source, "n_heads", in->n_heads, SS_MAX_HEADS))) return rc;
  if ((rc = check_range(path, source, "n_kv_heads", in->n_kv_heads, in->n_heads))) return rc;
  if ((rc = check_range(path, source, "head_dim", in->head_dim, SS_MAX_HEAD_DIM))) return rc;
  if ((rc = check_range(path, source, "vocab_size", in->vocab_size, SS_MAX_VOCAB))) return rc;
  if ((rc = check_range(path, source, "max_seq_len", in->max_seq_len, SS_MAX_SEQ_LEN))) return rc;
  if (in->n_heads % in->n_kv_heads != 0)
    return ss_fail(SS_ERR_FORMAT, "%s: %s: n_heads %d is not a multiple of n_kv_heads %d", path, source,
                   in->n_heads, in->n_kv_heads);
  if (in->head_dim % 2 != 0)
    return ss_fail(SS_ERR_FORMAT, "%s: %s: head_dim %d must be even for RoPE", path, source, in->head_dim);
  if (!(in->rope_theta > 0.0f) || !isfinite(in->rope_theta))
    return ss_fail(SS_ERR_FORMAT, "%s: %s: rope_theta %g must be a positive number", path, source,
                   (double)in->rope_theta);
  if (!(in->rms_norm_eps > 0.0f) || !isfinite(in->rms_norm_eps))
    return ss_fail(SS_ERR_FORMAT, "%s: %s: rms_norm_eps %g must be a positive number", path, source,
                   (double)in->rms_norm_eps);
  if (in->bos_token_id < -1 || in->bos_token_id >= in->vocab_size)
    return ss_fail(SS_ERR_FORMAT, "%s: %s: bos_token_id %d outside the vocabulary (%d)", path, source,
                   in->bos_token_id, in->vocab_size);
  if (in->eos_token_id < -1 || in->eos_token_id >= in->vocab_size)
    return ss_fail(SS_ERR_FORMAT, "%s: %s: eos_token_id %d outside the vocabulary (%d)", path, source,
                   in->eos_token_id, in->vocab_size);

  /* Every tensor size, and the bytes of all layers together, must fit. */
  size_t dim = (size_t)in->dim, q_dim, kv_dim, t, per_layer = 0, all;
  int ok = ss_mul_ok((size_t)in->n_heads, (size_t)in->head_dim, &q_dim) &&
           ss_mul_ok((size_t)in->n_kv_heads, (size_t)in->head_dim, &kv_dim) &&
           ss_mul_ok(q_dim, dim, &t) && ss_add_ok(per_layer, t, &per_layer) &&
           ss_add_ok(per_layer, t, &per_layer) &&                                  /* wq + wo */
           ss_mul_ok(kv_dim, dim, &t) && ss_add_ok(per_layer, t, &per_layer) &&
           ss_add_ok(per_layer, t, &per_layer) &&                                  /* wk + wv */
           ss_mul_ok((size_t)in->hidden_dim, dim, &t) && ss_mul_ok(t, 3, &t) &&
           ss_add_ok(per_layer, t, &per_layer) &&                                  /* ffn */
           ss_mul_ok(per_layer, (size_t)in->n_layers, &all) &&
           ss_mul_ok((size_t)in->vocab_size, dim, &t) && ss_mul_ok(t, 2, &t) &&
           ss_add_ok(all, t, &all) &&                                              /* embed + head */
           ss_mul_ok(all, sizeof(float), &t) && all <= (size_t)INT64_MAX;
  if (!ok)
    return ss_fail(SS_ERR_FORMAT, "%s: %s: dimensions (dim %d, hidden %d, layers %d, heads %d x %d, vocab %d) "
                   "overflow the address space", path, source, in->dim, in->hidden_dim, in->n_layers,
                   in->n_heads, in->head_dim, in->vocab_size);
  return SS_OK;
}

ss_weight_sizes ss_weight_sizes_of(const ss_model_info *in) {
  ss_weight_sizes s;
  size_t dim = (size_t)in->dim;
  s.q_dim = (size_t)in->n_heads * (size_t)in->head_dim;
  s.kv_dim = (size_t)in->n_kv_heads * (size_t)in->head_dim;
  s.embed = (size_t)in->vocab_size * dim;
  s.wq = s.q_dim * dim;
  s.wk = s.kv_dim * dim;
  s.wo = dim * s.q_dim;
  s.w_ffn = (size_t)in->hidden_dim * dim;
  return s;
}
