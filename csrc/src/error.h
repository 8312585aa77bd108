/* error.h — thread-local last-error message and status helpers. */
#ifndef SS_ERROR_H
#define SS_ERROR_H

#include <stddef.h>

#include "../include/sinkstream.h"

/* Record a printf-style message for ss_last_error() and return `status`.
 * Usage: return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' missing", path, name); */
int ss_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clear the calling thread's message. */
void ss_clear_error(void);
/* When status != SS_OK and err != NULL: copy the calling thread's message into err[err_size]. Returns status.
 * For the calls that hand their message to a caller buffer (ss_model_load, ss_engine_create). */
int ss_report_error(int status, char *err, size_t err_size);

#endif /* SS_ERROR_H */
