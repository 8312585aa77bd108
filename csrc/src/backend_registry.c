/*
 * backend_registry.c — backends that are not compiled in.
 *
 * The engine picks a backend with ss_backend_cpu() / ss_backend_cuda() (see
 * backend.h); NULL means "not available" and ss_engine_create answers
 * SS_ERR_UNSUPPORTED. The CUDA backend (csrc/src/backend_cuda.c, built with
 * -DSS_WITH_CUDA by cuda.mk) defines ss_backend_cuda() itself; it may return
 * NULL at run time when no device is usable.
 */
#include "backend.h"

#ifndef SS_WITH_CUDA
const ss_backend_ops *ss_backend_cuda(void) { return NULL; }
#endif
