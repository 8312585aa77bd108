/*
 * model_load.c — public model API: ss_model_load dispatches on the path
 * (a folder is a Hugging Face model, a regular file a llama2.c checkpoint),
 * ss_model_free releases every mapping and buffer, ss_model_get_info.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "error.h"
#include "model_util.h"

ss_model_params ss_model_default_params(void) {
  ss_model_params p;
  memset(&p, 0, sizeof p);
  p.use_mmap = 1;
  return p;
}

static int model_load(const char *path, const ss_model_params *params, ss_model **out) {
  if (!out) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_load: out is NULL");
  *out = NULL;
  if (!path || !*path) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_load: path is NULL or empty");
  ss_model_params defaults = ss_model_default_params();
  if (!params) params = &defaults;
  if (params->use_mmap != 0 && params->use_mmap != 1)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_load: use_mmap must be 0 or 1 (got %d)", params->use_mmap);

  struct stat st;
  if (stat(path, &st) != 0) return ss_fail(SS_ERR_IO, "%s: cannot access: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode)) return ss_load_hf(path, params, out);
  if (S_ISREG(st.st_mode)) return ss_load_llama2c(path, params, out);
  return ss_fail(SS_ERR_IO, "%s: neither a model folder nor a regular file", path);
}

int ss_model_load(const char *path, const ss_model_params *params, ss_model **out, char *err, size_t err_size) {
  return ss_report_error(model_load(path, params, out), err, err_size);
}

void ss_model_free(ss_model *model) {
  if (!model) return;
  for (int32_t i = 0; i < model->n_maps; i++) munmap(model->map_base[i], model->map_size[i]);
  for (int32_t i = 0; i < model->n_owned; i++) free(model->owned[i]);
  free(model->owned);
  free(model->path);
  free(model);
}

int ss_model_get_info(const ss_model *model, ss_model_info *out) {
  if (!model || !out) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_get_info: model or out is NULL");
  *out = model->info;
  return SS_OK;
}
