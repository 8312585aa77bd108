/* error.h — thread-local last-error message and status helpers. */
#ifndef SS_ERROR_H
#define SS_ERROR_H

#include "../include/sinkstream.h"

/* Record a printf-style message for ss_last_error() and return `status`.
 * Usage: return ss_fail(SS_ERR_FORMAT, "%s: tensor '%s' missing", path, name); */
int ss_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clear the calling thread's message. */
void ss_clear_error(void);

#endif /* SS_ERROR_H */
