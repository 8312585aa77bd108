/* error.c — thread-local last-error message, plus a process-wide copy of the
 * most recent one (for bindings that call on worker threads). */
#include "error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];
static char global_error[1024];
static pthread_mutex_t global_error_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char global_copy[1024];

int ss_fail(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&global_error_mu);
  memcpy(global_error, last_error, sizeof global_error);
  pthread_mutex_unlock(&global_error_mu);
  return status;
}

void ss_clear_error(void) { last_error[0] = '\0'; }

const char *ss_last_error(void) { return last_error; }

const char *ss_last_error_global(void) {
  pthread_mutex_lock(&global_error_mu);
  memcpy(global_copy, global_error, sizeof global_copy);
  pthread_mutex_unlock(&global_error_mu);
  return global_copy;
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
    default: return "SS_ERR_UNKNOWN";
  }
}
