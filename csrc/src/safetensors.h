/*
 * safetensors.h — reading (sets of) .safetensors files.
 *
 * File layout: u64 little-endian N, then N bytes of JSON header
 *   { "name": {"dtype": "F32", "shape": [d0, d1], "data_offsets": [begin, end]}, ...,
 *     "__metadata__": {...} }
 * then the data region; offsets are relative to its start (8 + N).
 * Every entry is validated when the file is opened: known dtype, shape of
 * non-negative ints, begin <= end <= data size, end - begin == numel * size,
 * no two tensors overlapping.
 */
#ifndef SS_SAFETENSORS_H
#define SS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "model_util.h"

#define SS_ST_MAX_DIMS 8
#define SS_ST_MAX_HEADER (100u << 20) /* the format's own limit: 100 MB */

typedef struct ss_st_tensor {
  const char *name;  /* points into the owning file's header strings */
  int32_t dtype;     /* ss_dtype, or -1 for a dtype this library cannot convert */
  const char *dtype_name;
  int32_t file;      /* index into ss_st_set.files */
  int32_t n_dims;
  int64_t shape[SS_ST_MAX_DIMS];
  size_t numel;
  size_t offset;     /* absolute byte offset in the file */
  size_t nbytes;
} ss_st_tensor;

typedef struct ss_st_file {
  char *path;
  ss_file view;
  ss_json_doc header;
} ss_st_file;

typedef struct ss_st_set {
  ss_st_file *files;
  int32_t n_files;
  ss_st_tensor *tensors; /* sorted by name after ss_st_finish */
  size_t n_tensors, cap_tensors;
} ss_st_set;

/* Open one .safetensors file and add its tensors to the set. */
int ss_st_add_file(ss_st_set *set, const char *path);
/* Sort the tensor table; a name present twice is SS_ERR_FORMAT (`where`
 * names the model in the message). Call once after the last add. */
int ss_st_finish(ss_st_set *set, const char *where);
/* Binary search by name (after ss_st_finish); NULL when absent. */
const ss_st_tensor *ss_st_find(const ss_st_set *set, const char *name);
/* Close all files and free the set. */
void ss_st_close(ss_st_set *set);

#endif /* SS_SAFETENSORS_H */
