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

/* Field offsets are ABI (bindings fill the structs by offset). */
_Static_assert(sizeof(ss_model_params) == 32, "ss_model_params size");
_Static_assert(offsetof(ss_model_params, use_mmap) == 0, "ss_model_params.use_mmap");
_Static_assert(sizeof(ss_model_info) == 64, "ss_model_info size");
_Static_assert(offsetof(ss_model_info, arch) == 0, "ss_model_info.arch");
_Static_assert(offsetof(ss_model_info, dim) == 4, "ss_model_info.dim");
_Static_assert(offsetof(ss_model_info, hidden_dim) == 8, "ss_model_info.hidden_dim");
_Static_assert(offsetof(ss_model_info, n_layers) == 12, "ss_model_info.n_layers");
_Static_assert(offsetof(ss_model_info, n_heads) == 16, "ss_model_info.n_heads");
_Static_assert(offsetof(ss_model_info, n_kv_heads) == 20, "ss_model_info.n_kv_heads");
_Static_assert(offsetof(ss_model_info, head_dim) == 24, "ss_model_info.head_dim");
_Static_assert(offsetof(ss_model_info, vocab_size) == 28, "ss_model_info.vocab_size");
_Static_assert(offsetof(ss_model_info, max_seq_len) == 32, "ss_model_info.max_seq_len");
_Static_assert(offsetof(ss_model_info, bos_token_id) == 36, "ss_model_info.bos_token_id");
_Static_assert(offsetof(ss_model_info, eos_token_id) == 40, "ss_model_info.eos_token_id");
_Static_assert(offsetof(ss_model_info, source_dtype) == 44, "ss_model_info.source_dtype");
_Static_assert(offsetof(ss_model_info, rope_theta) == 48, "ss_model_info.rope_theta");
_Static_assert(offsetof(ss_model_info, rms_norm_eps) == 52, "ss_model_info.rms_norm_eps");
_Static_assert(offsetof(ss_model_info, n_params) == 56, "ss_model_info.n_params");

ss_model_params ss_model_default_params(void) {
  ss_model_params p;
  memset(&p, 0, sizeof p);
  p.use_mmap = 1;
  return p;
}

int ss_model_load(const char *path, const ss_model_params *params, ss_model **out) {
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
