/* safetensors.c — open and validate .safetensors files (see safetensors.h). */
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Every dtype of the format, so that sizes can be validated even for
 * tensors this library will never convert (dtype -1). */
static const struct {
  const char *name;
  int32_t dtype;
  size_t size;
} DTYPES[] = {
    {"F32", SS_DTYPE_F32, 4}, {"F16", SS_DTYPE_F16, 2}, {"BF16", SS_DTYPE_BF16, 2}, {"F64", -1, 8},
    {"I64", -1, 8},           {"U64", -1, 8},           {"I32", -1, 4},             {"U32", -1, 4},
    {"I16", -1, 2},           {"U16", -1, 2},           {"I8", -1, 1},              {"U8", -1, 1},
    {"BOOL", -1, 1},          {"F8_E4M3", -1, 1},       {"F8_E5M2", -1, 1},
};

static int find_dtype(const ss_json *v, size_t *idx) {
  if (!v || v->type != SS_JSON_STRING) return 0;
  for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
    if (strcmp(v->str, DTYPES[i].name) == 0) {
      *idx = i;
      return 1;
    }
  return 0;
}

static int push_tensor(ss_st_set *set, const ss_st_tensor *t, const char *path) {
  if (set->n_tensors == set->cap_tensors) {
    size_t cap = set->cap_tensors ? set->cap_tensors * 2 : 256;
    if (cap > SIZE_MAX / sizeof(ss_st_tensor)) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: too many tensors", path);
    ss_st_tensor *p = realloc(set->tensors, cap * sizeof *p);
    if (!p) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot grow the tensor table", path);
    set->tensors = p;
    set->cap_tensors = cap;
  }
  set->tensors[set->n_tensors++] = *t;
  return SS_OK;
}

/* Validate one header entry `e` (named e->key) of a file whose data region
 * is [data_start, data_start + data_size). */
static int parse_entry(const ss_json_doc *doc, const ss_json *e, const char *path, size_t data_start,
                       size_t data_size, ss_st_tensor *t) {
  const char *name = e->key;
  memset(t, 0, sizeof *t);
  t->name = name;
  if (e->type != SS_JSON_OBJECT) return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, name);

  const ss_json *dt = ss_json_get(doc, e, "dtype");
  size_t di;
  if (!find_dtype(dt, &di))
    return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                   dt && dt->type == SS_JSON_STRING ? dt->str : "(not a string)");
  t->dtype = DTYPES[di].dtype;
  t->dtype_name = DTYPES[di].name;

  /* shape: array of non-negative ints; numel = product (1 for a scalar) */
  const ss_json *shape = ss_json_get(doc, e, "shape");
  if (!shape || shape->type != SS_JSON_ARRAY || shape->n_children > SS_ST_MAX_DIMS)
    return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': shape must be an array of at most %d dims", path, name,
                   SS_ST_MAX_DIMS);
  size_t numel = 1;
  for (const ss_json *d = ss_json_first(doc, shape); d; d = ss_json_next(doc, d)) {
    int64_t v;
    if (!ss_json_as_int64(d, &v) || v < 0)
      return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': shape has a non-integer or negative dim", path, name);
    if ((uint64_t)v > SIZE_MAX || !ss_mul_ok(numel, (size_t)v, &numel))
      return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, name);
    t->shape[t->n_dims++] = v;
  }
  t->numel = numel;

  /* data_offsets: [begin, end] relative to the data region */
  const ss_json *off = ss_json_get(doc, e, "data_offsets");
  int64_t b, en;
  if (!off || off->type != SS_JSON_ARRAY || off->n_children != 2 || !ss_json_as_int64(ss_json_first(doc, off), &b) ||
      !ss_json_as_int64(ss_json_next(doc, ss_json_first(doc, off)), &en))
    return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", path, name);
  if (b < 0 || en < b || (uint64_t)en > data_size)
    return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] outside the data region of %zu bytes",
                   path, name, (long long)b, (long long)en, data_size);
  size_t want;
  if (!ss_mul_ok(numel, DTYPES[di].size, &want) || want != (size_t)(en - b))
    return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s': data_offsets span %lld bytes but shape x %s needs %zu", path,
                   name, (long long)(en - b), DTYPES[di].name, numel * DTYPES[di].size);
  t->offset = data_start + (size_t)b;
  t->nbytes = (size_t)(en - b);
  return SS_OK;
}

static int cmp_offset(const void *a, const void *b) {
  const ss_st_tensor *x = *(const ss_st_tensor *const *)a, *y = *(const ss_st_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No two non-empty tensors of one file may share bytes. */
static int check_overlap(const ss_st_tensor *ts, size_t n, const char *path) {
  if (n < 2) return SS_OK;
  const ss_st_tensor **order = malloc(n * sizeof *order);
  if (!order) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot sort %zu tensors", path, n);
  for (size_t i = 0; i < n; i++) order[i] = &ts[i];
  qsort(order, n, sizeof *order, cmp_offset);
  int rc = SS_OK;
  const ss_st_tensor *prev = NULL;
  for (size_t i = 0; i < n && rc == SS_OK; i++) {
    if (order[i]->nbytes == 0) continue;
    if (prev && order[i]->offset < prev->offset + prev->nbytes)
      rc = ss_fail(SS_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data region", path, prev->name,
                   order[i]->name);
    prev = order[i];
  }
  free(order);
  return rc;
}

/* Parse the header of an opened file and append its tensors. */
static int read_header(ss_st_set *set, ss_st_file *f, int32_t file_index) {
  const char *path = f->path;
  size_t size = f->view.size;
  if (size < 8) return ss_fail(SS_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | f->view.data[i];
  if (n > size - 8)
    return ss_fail(SS_ERR_FORMAT, "%s: safetensors header length %llu exceeds the file size %zu", path,
                   (unsigned long long)n, size);
  if (n > SS_ST_MAX_HEADER)
    return ss_fail(SS_ERR_FORMAT, "%s: safetensors header length %llu exceeds the 100 MB limit", path,
                   (unsigned long long)n);
  int jrc = ss_json_parse(&f->header, (const char *)f->view.data + 8, (size_t)n);
  if (jrc == -2) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory parsing the safetensors header", path);
  if (jrc != 0) return ss_fail(SS_ERR_FORMAT, "%s: safetensors header is not valid JSON: %s", path, f->header.error);
  const ss_json *root = ss_json_root(&f->header);
  if (!root || root->type != SS_JSON_OBJECT) return ss_fail(SS_ERR_FORMAT, "%s: safetensors header is not a JSON object", path);

  size_t data_start = 8 + (size_t)n, data_size = size - data_start, first = set->n_tensors;
  for (const ss_json *e = ss_json_first(&f->header, root); e; e = ss_json_next(&f->header, e)) {
    if (strcmp(e->key, "__metadata__") == 0) continue;
    ss_st_tensor t;
    int rc = parse_entry(&f->header, e, path, data_start, data_size, &t);
    if (rc != SS_OK) return rc;
    t.file = file_index;
    if ((rc = push_tensor(set, &t, path)) != SS_OK) return rc;
  }
  return check_overlap(set->tensors + first, set->n_tensors - first, path);
}

int ss_st_add_file(ss_st_set *set, const char *path) {
  if (set->n_files == INT32_MAX) return ss_fail(SS_ERR_FORMAT, "%s: too many files", path);
  ss_st_file *files = realloc(set->files, ((size_t)set->n_files + 1) * sizeof *files);
  if (!files) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: cannot grow the file list", path);
  set->files = files;
  ss_st_file *f = &files[set->n_files];
  memset(f, 0, sizeof *f);
  f->path = strdup(path);
  if (!f->path) return ss_fail(SS_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  set->n_files++; /* from here on ss_st_close releases it */
  int rc = ss_file_open(path, &f->view);
  if (rc != SS_OK) return rc;
  size_t before = set->n_tensors;
  rc = read_header(set, f, set->n_files - 1);
  if (rc != SS_OK) set->n_tensors = before;
  return rc;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const ss_st_tensor *)a)->name, ((const ss_st_tensor *)b)->name);
}

int ss_st_finish(ss_st_set *set, const char *where) {
  if (set->n_tensors > 1) qsort(set->tensors, set->n_tensors, sizeof *set->tensors, cmp_name);
  for (size_t i = 1; i < set->n_tensors; i++)
    if (strcmp(set->tensors[i - 1].name, set->tensors[i].name) == 0)
      return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' appears twice (%s, %s)", where, set->tensors[i].name,
                     set->files[set->tensors[i - 1].file].path, set->files[set->tensors[i].file].path);
  return SS_OK;
}

const ss_st_tensor *ss_st_find(const ss_st_set *set, const char *name) {
  size_t lo = 0, hi = set->n_tensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, set->tensors[mid].name);
    if (c == 0) return &set->tensors[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

void ss_st_close(ss_st_set *set) {
  for (int32_t i = 0; i < set->n_files; i++) {
    ss_file_close(&set->files[i].view);
    ss_json_free(&set->files[i].header);
    free(set->files[i].path);
  }
  free(set->files);
  free(set->tensors);
  memset(set, 0, sizeof *set);
}
