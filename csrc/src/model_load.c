/*
 * model_load.c — public model API: ss_model_load dispatches on the path (a
 * folder is a Hugging Face model; a file starting with the GGUF magic a GGUF
 * file; a .bin file, or one whose first bytes read as a llama2.c header, a
 * llama2.c checkpoint; anything else an "unknown format" error naming the
 * known ones), converts the weights when asked, and fills the weight figures
 * of the info; ss_model_free releases every mapping and buffer;
 * ss_model_get_info.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "gguf.h"
#include "model_tensors.h"
#include "model_util.h"

ss_model_params ss_model_default_params(void) {
  ss_model_params p;
  memset(&p, 0, sizeof p);
  p.use_mmap = 1;
  p.weights = SS_WEIGHTS_AS_FILE;
  return p;
}

#define KNOWN_FORMATS                                                                                     \
  "known formats: a Hugging Face folder (config.json + model.safetensors), a GGUF v3 file (.gguf), a llama2.c " \
  "checkpoint (.bin)"

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Whether the first 28 bytes read as a llama2.c header (7 positive-ish int32, dim a multiple of heads). */
static int llama2c_header(const uint8_t *h, size_t n) {
  if (n < 28) return 0;
  int32_t v[7];
  for (int i = 0; i < 7; i++) memcpy(&v[i], h + 4 * i, 4);
  return v[0] > 0 && v[1] > 0 && v[2] > 0 && v[3] > 0 && v[4] > 0 && v[5] != 0 && v[5] != INT32_MIN && v[6] > 0 &&
         v[0] % v[3] == 0;
}

/* A regular file: which loader reads it. */
static int load_file(const char *path, const ss_model_params *params, ss_model **out) {
  uint8_t head[28];
  size_t n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ss_fail(SS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  while (n < sizeof head) {
    ssize_t r = read(fd, head + n, sizeof head - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  if (ss_gguf_is_gguf(head, n)) return ss_load_gguf(path, params, out);
  if (ends_with(path, ".bin") || llama2c_header(head, n)) return ss_load_llama2c(path, params, out);
  if (ends_with(path, ".gguf"))
    return ss_fail(SS_ERR_FORMAT, "%s: unknown model format: named .gguf but it does not start with the 'GGUF' magic; "
                   KNOWN_FORMATS, path);
  if (ends_with(path, ".safetensors"))
    return ss_fail(SS_ERR_FORMAT, "%s: unknown model format: a .safetensors file alone; pass the folder that holds "
                   "it with its config.json (" KNOWN_FORMATS ")", path);
  return ss_fail(SS_ERR_FORMAT, "%s: unknown model format (no GGUF magic, no llama2.c header); " KNOWN_FORMATS, path);
}

static int model_load(const char *path, const ss_model_params *params, ss_model **out) {
  if (!out) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_load: out is NULL");
  *out = NULL;
  if (!path || !*path) return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_load: path is NULL or empty");
  ss_model_params defaults = ss_model_default_params();
  if (!params) params = &defaults;
  if (params->use_mmap != 0 && params->use_mmap != 1)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_load: use_mmap must be 0 or 1 (got %d)", params->use_mmap);
  if (params->weights != SS_WEIGHTS_AS_FILE && !ss_dtype_valid(params->weights))
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_model_load: weights %d is neither SS_WEIGHTS_AS_FILE nor an ss_dtype",
                   params->weights);

  struct stat st;
  if (stat(path, &st) != 0) return ss_fail(SS_ERR_IO, "%s: cannot access: %s", path, strerror(errno));
  int rc;
  if (S_ISDIR(st.st_mode))
    rc = ss_load_hf(path, params, out);
  else if (S_ISREG(st.st_mode))
    rc = load_file(path, params, out);
  else
    return ss_fail(SS_ERR_IO, "%s: neither a model folder nor a regular file", path);
  if (rc == SS_OK && params->weights != SS_WEIGHTS_AS_FILE) rc = ss_model_convert_weights(*out, params->weights);
  if (rc != SS_OK) {
    ss_model_free(*out);
    *out = NULL;
    return rc;
  }
  ss_model_finish_info(*out);
  return SS_OK;
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
