/*
 * backend_cuda.h — internal entry points of the CUDA backend beyond ss_backend_ops
 * (tests and benchmarks only; not part of the public C ABI). Available when the
 * library is built with -DSS_WITH_CUDA (make cuda / cuda-check / cuda-test).
 */
#ifndef SS_BACKEND_CUDA_H
#define SS_BACKEND_CUDA_H

#include <stdint.h>

#include "../include/sinkstream.h"
#include "ss_kernels.h"

/* Number of usable CUDA devices (0 when there is no driver or no device). */
int ss_cuda_device_count(void);

/* Matmul path the CUDA engine `e` chose at its creation, e.g. "cublas (libcublas.so.12) for > 8 rows, own
 * gemv for <= 8 rows" or "own kernels (wmma ...)"; "" when e does not run the CUDA backend. Read it under
 * the engine's rule (not while another thread runs a call on e). */
const char *ss_cuda_gemm_path(const ss_engine *e);

/* Why no device is usable when ss_cuda_device_count() == 0 (e.g. "cudaGetDeviceCount: CUDA driver
 * version is insufficient for CUDA runtime version (driver supports CUDA 12.8, runtime is 13.0)");
 * "" when devices were found. */
const char *ss_cuda_device_error(void);

/* "" while CUDA graphs work in engine `e` (or e does not run the CUDA backend); otherwise why e turned
 * them off (capture failed: its decode steps run eagerly, correct but slower). Written during e's steps:
 * read it between calls on e, under the engine's serialisation rule. */
const char *ss_cuda_graph_note(const ss_engine *e);

/* Device sampling of `rows` rows of host logits [rows, vocab] on `device` (kernels/sampling.cu):
 * uploads the logits, the parameters and the token masks (NULL, or rows * SS_MASK_WORDS(vocab) host
 * words), samples, downloads the tokens (-1 for a row whose mask allows nothing). SS_ERR_BACKEND
 * with a message on a CUDA error. */
int ss_cuda_sample_host(int device, const float *logits, int32_t rows, int32_t vocab,
                        const ssk_sample_params *params, const uint32_t *masks, int32_t *out_tokens);

/* Measured device-to-device copy bandwidth in bytes/s (read + write counted), for the roofline
 * of the decode benchmark. */
int ss_cuda_copy_bandwidth(int device, size_t bytes, double *bytes_per_s);

#endif
