/* error.c — the thread-local last-error message, status names, the ABI version. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[SS_ERROR_MAX];

int ss_fail(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

void ss_clear_error(void) { last_error[0] = '\0'; }

const char *ss_last_error(void) { return last_error; }

int ss_report_error(int status, char *err, size_t err_size) {
  if (status != SS_OK && err && err_size > 0) snprintf(err, err_size, "%s", last_error);
  return status;
}

int ss_abi_version(void) { return SS_ABI_VERSION; }

const char *ss_status_name(int status) {
  switch (status) {
    case SS_OK: return "SS_OK";
    case SS_ERR_INVALID_ARGUMENT: return "SS_ERR_INVALID_ARGUMENT";
    case SS_ERR_IO: return "SS_ERR_IO";
    case SS_ERR_FORMAT: return "SS_ERR_FORMAT";
    case SS_ERR_OUT_OF_MEMORY: return "SS_ERR_OUT_OF_MEMORY";
    case SS_ERR_CONTEXT_FULL: return "SS_ERR_CONTEXT_FULL";
    case SS_ERR_NOT_FOUND: return "SS_ERR_NOT_FOUND";
    case SS_ERR_BACKEND: return "SS_ERR_BACKEND";
    case SS_ERR_UNSUPPORTED: return "SS_ERR_UNSUPPORTED";
    case SS_ERR_LIMIT: return "SS_ERR_LIMIT";
    case SS_ERR_EMPTY_MASK: return "SS_ERR_EMPTY_MASK";
    default: return "SS_ERR_UNKNOWN";
  }
}
