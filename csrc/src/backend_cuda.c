/*
 * backend_cuda.c — the CUDA backend: the same forward pass and cache semantics as
 * backend_cpu.c, on one GPU (kernels in the kernels/ folder, see kernels/ss_kernels.h).
 *
 * Built only with -DSS_WITH_CUDA (csrc/cuda.mk); otherwise backend_registry.c provides
 * ss_backend_cuda() == NULL and nothing here is compiled.
 *
 * Design (docs/decisions.md, "CUDA backend"):
 * - Weights are uploaded once at init from the host float32 model and converted on the device to
 *   fp16 (default) or bf16 (SS_CUDA_DTYPE=bf16). Wq|Wk|Wv and Wgate|Wup are concatenated so a
 *   layer runs four matmuls. Norm weights and biases stay fp32.
 * - Residual stream fp32; matmul inputs fp16/bf16; every accumulation fp32.
 * - KV cache per sequence: one device allocation [n_layers][2][slots][kv_dim] in the same
 *   element type, grown by kv_reserve (old slots copied), keys rotated at their stream index.
 *   Chunk semantics exactly as the CPU backend: chunk K/V computed into scratch, attention over
 *   cache + scratch, then the surviving chunk rows committed to their ring slots. A one-token
 *   item writes its slot directly (nothing it or anyone else can still see lives there).
 * - Matmuls: M <= 8 tokens through the own bandwidth-bound GEMV kernel; larger M through cuBLAS
 *   (cublasGemmEx, fp16/bf16 in, fp32 out and accumulate; loaded with dlopen at init so the
 *   build needs no cuBLAS) or, when no cuBLAS library can be loaded, the own wmma kernel.
 * - Decode steps (every item one token) are captured once per batch shape into a CUDA graph
 *   and replayed; the per-step data (tokens, positions, cache pointers) lives in a device
 *   metadata buffer at a fixed address, uploaded before each launch.
 * - Logits are copied back to the host; the engine samples on the host (RNG parity with the
 *   CPU backend). Device sampling kernels exist for tests/benchmarks (ss_cuda_sample_host).
 * - Every CUDA / cuBLAS call is checked; failures return SS_ERR_BACKEND (or
 *   SS_ERR_OUT_OF_MEMORY for allocations) with a message, never abort.
 */
#ifdef SS_WITH_CUDA

#include "backend_cuda.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda_plan.h"
#include "error.h"
#include "model_tensors.h"
#include "model_util.h"

/* ---- error helpers -------------------------------------------------------------- */

#define CU(call)                                                                                          \
  do {                                                                                                    \
    cudaError_t e_ = (call);                                                                              \
    if (e_ != cudaSuccess)                                                                                \
      return ss_fail(SS_ERR_BACKEND, "cuda backend: %s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), \
                     __FILE__, __LINE__);                                                                 \
  } while (0)

/* kernel launchers return a cudaError_t as int */
#define KL(call)                                                                                            \
  do {                                                                                                      \
    int e_ = (call);                                                                                        \
    if (e_ != 0)                                                                                            \
      return ss_fail(SS_ERR_BACKEND, "cuda backend: kernel launch %s failed: %s", #call,                    \
                     cudaGetErrorString((cudaError_t)e_));                                                  \
  } while (0)

#define RC(call)           \
  do {                     \
    int r_ = (call);       \
    if (r_ != SS_OK) return r_; \
  } while (0)

static int dmalloc(void **p, size_t bytes, const char *what) {
  *p = NULL;
  if (bytes == 0) bytes = 16;
  cudaError_t e = cudaMalloc(p, bytes);
  if (e == cudaSuccess) return SS_OK;
  *p = NULL;
  int st = e == cudaErrorMemoryAllocation ? SS_ERR_OUT_OF_MEMORY : SS_ERR_BACKEND;
  cudaGetLastError(); /* allocation errors are not sticky: clear */
  return ss_fail(st, "cuda backend: cannot allocate %zu bytes of device memory for %s: %s", bytes, what,
                 cudaGetErrorString(e));
}

static void dfree(void *p) {
  if (p) cudaFree(p);
}

/* ---- cuBLAS, loaded at run time ------------------------------------------------------ */
/* Declarations of the few cuBLAS entry points used (stable C ABI since cuBLAS 11). */
enum { CUBLAS_OP_N_ = 0, CUBLAS_OP_T_ = 1, CUDA_R_32F_ = 0, CUDA_R_16F_ = 2, CUDA_R_16BF_ = 14 };
enum { CUBLAS_COMPUTE_32F_ = 68, CUBLAS_GEMM_DEFAULT_ = -1 };
typedef int (*cublas_create_fn)(void **handle);
typedef int (*cublas_destroy_fn)(void *handle);
typedef int (*cublas_set_stream_fn)(void *handle, cudaStream_t stream);
typedef int (*cublas_set_workspace_fn)(void *handle, void *ws, size_t bytes);
typedef int (*cublas_gemm_ex_fn)(void *handle, int transa, int transb, int m, int n, int k, const void *alpha,
                                 const void *A, int Atype, int lda, const void *B, int Btype, int ldb,
                                 const void *beta, void *C, int Ctype, int ldc, int compute, int algo);

typedef struct cublas_lib {
  void *dl;
  void *handle;
  void *workspace;
  char name[256];
  cublas_destroy_fn destroy;
  cublas_gemm_ex_fn gemm_ex;
} cublas_lib;

/* Try SS_CUBLAS_PATH, then the soname matching the CUDA runtime's major version, then others.
 * Returns 0 with lib->handle set, or 1 when none could be loaded (not an error: own kernels). */
static int cublas_load(cublas_lib *lib, cudaStream_t stream) {
  memset(lib, 0, sizeof *lib);
  const char *force = getenv("SS_CUDA_GEMM");
  if (force && strcmp(force, "own") == 0) return 1;
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  char major[64];
  snprintf(major, sizeof major, "libcublas.so.%d", rt / 1000);
  const char *cands[] = {getenv("SS_CUBLAS_PATH"), major, "libcublas.so.13", "libcublas.so.12",
                         "libcublas.so.11", "libcublas.so"};
  for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
    if (!cands[i] || !cands[i][0]) continue;
    void *dl = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
    if (!dl) continue;
    cublas_create_fn create = (cublas_create_fn)dlsym(dl, "cublasCreate_v2");
    cublas_set_stream_fn set_stream = (cublas_set_stream_fn)dlsym(dl, "cublasSetStream_v2");
    cublas_set_workspace_fn set_ws = (cublas_set_workspace_fn)dlsym(dl, "cublasSetWorkspace_v2");
    lib->destroy = (cublas_destroy_fn)dlsym(dl, "cublasDestroy_v2");
    lib->gemm_ex = (cublas_gemm_ex_fn)dlsym(dl, "cublasGemmEx");
    if (!create || !set_stream || !lib->destroy || !lib->gemm_ex || create(&lib->handle) != 0) {
      lib->handle = NULL;
      dlclose(dl);
      continue;
    }
    if (set_stream(lib->handle, stream) != 0) {
      lib->destroy(lib->handle);
      lib->handle = NULL;
      dlclose(dl);
      continue;
    }
    /* a fixed workspace keeps cuBLAS from allocating while a CUDA graph is being captured */
    if (set_ws) {
      size_t ws = (size_t)32 << 20;
      if (cudaMalloc(&lib->workspace, ws) == cudaSuccess) {
        if (set_ws(lib->handle, lib->workspace, ws) != 0) {
          cudaFree(lib->workspace);
          lib->workspace = NULL;
        }
      } else {
        cudaGetLastError();
        lib->workspace = NULL;
      }
    }
    lib->dl = dl;
    snprintf(lib->name, sizeof lib->name, "%s", cands[i]);
    return 0;
  }
  return 1;
}

static void cublas_unload(cublas_lib *lib) {
  if (lib->handle) lib->destroy(lib->handle);
  if (lib->workspace) cudaFree(lib->workspace);
  if (lib->dl) dlclose(lib->dl);
  memset(lib, 0, sizeof *lib);
}

/* ---- device count / info -------------------------------------------------------------- */

static pthread_once_t count_once = PTHREAD_ONCE_INIT;
static int device_count = 0;
static char device_error[256];
static void count_devices(void) {
  int n = 0, drv = 0, rt = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    n = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    /* e.g. cudaErrorInsufficientDriver when the driver is older than the runtime built against */
    snprintf(device_error, sizeof device_error, "cudaGetDeviceCount: %s (driver supports CUDA %d.%d, runtime is %d.%d)",
             cudaGetErrorString(e), drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
  } else if (n == 0) {
    snprintf(device_error, sizeof device_error, "cudaGetDeviceCount: 0 devices");
  }
  cudaGetLastError();
  device_count = n;
}
int ss_cuda_device_count(void) {
  pthread_once(&count_once, count_devices);
  return device_count;
}
const char *ss_cuda_device_error(void) {
  pthread_once(&count_once, count_devices);
  return device_error;
}

/* ---- KV storage ------------------------------------------------------------------------- */

typedef struct cuda_kv {
  ss_cache_geometry geom;
  int32_t n_slots; /* slots allocated */
  int64_t bytes;   /* bytes of buf as allocated */
  void *buf;       /* [n_layers][2][n_slots][kv_dim] */
} cuda_kv;

/* ---- context ------------------------------------------------------------------------------ */

typedef struct cuda_layer {
  float *attn_norm, *ffn_norm; /* [dim] */
  float *bqkv;                 /* [q_dim + 2 kv_dim] or NULL */
  void *wqkv;                  /* [q_dim + 2 kv_dim, dim] */
  void *wo;                    /* [dim, q_dim] */
  void *wgu;                   /* [2 hidden, dim]: gate rows then up rows */
  void *wdown;                 /* [dim, hidden] */
} cuda_layer;

#define N_GRAPHS 8

typedef struct graph_entry {
  int used;
  ss_cuda_graph_key key;
  uint64_t last_use;
  cudaGraphExec_t exec;
} graph_entry;

struct ss_backend_ctx {
  const ss_model *model;
  int device, dtype, n_sms;
  size_t esz;
  int dim, hidden, n_layers, n_heads, n_kv, hd, q_dim, kv_dim, vocab;
  float eps;
  int max_tokens, max_items;
  cudaStream_t stream;

  cuda_layer *layers;
  void *emb, *lm_head; /* lm_head == emb when tied */
  float *final_norm;
  double *inv_freq; /* [hd/2] */

  /* activations (fixed addresses: captured graphs point at them) */
  float *x;     /* [T, dim] residual stream */
  void *xn;     /* [T, dim] normed input of a sub-block */
  float *qkv;   /* [T, q_dim + 2 kv_dim] */
  float *q_rec; /* [T, q_dim] */
  float *q_sink;
  void *k_scr, *v_scr; /* [T, kv_dim] */
  void *att;           /* [T, q_dim] */
  float *gu;           /* [T, 2 hidden] */
  void *h;             /* [T, hidden] */
  float *rope_tab;     /* [T, 2 hd] */
  float *part;         /* attention split partials */
  size_t part_floats;
  float *logits_d; /* [logits_rows, vocab] (grown; invalidates graphs) */
  int logits_rows;

  /* step metadata: pinned host mirror + device copy */
  unsigned char *meta_h, *meta_d;
  size_t meta_bytes;

  cublas_lib cublas;
  int have_cublas;
  int gemv_max;

  char gemm_path[320]; /* ss_cuda_gemm_path: the matmul path chosen at init */
  char graph_note[256]; /* ss_cuda_graph_note: why capture failed and graphs were turned off ("" if not) */
  int use_graphs;
  graph_entry graphs[N_GRAPHS];
  /* a decode shape is captured the second time it is seen: its first step runs eagerly, so lazy
   * module loading and cuBLAS's first-call set-up happen outside stream capture */
  ss_cuda_graph_key warm_key;
  int warm_valid;
  uint64_t n_forward;
};

typedef ss_cuda_meta_layout meta_layout;
static meta_layout meta_layout_for(int n_items, int T, int n_want) {
  return ss_cuda_meta_layout_for(sizeof(ssk_item), n_items, T, n_want);
}

static void graphs_clear(ss_backend_ctx *c) {
  for (int i = 0; i < N_GRAPHS; i++) {
    if (c->graphs[i].used) cudaGraphExecDestroy(c->graphs[i].exec);
    memset(&c->graphs[i], 0, sizeof c->graphs[i]);
  }
}

static void cuda_destroy(ss_backend_ctx *c) {
  if (!c) return;
  cudaSetDevice(c->device);
  if (c->stream) cudaStreamSynchronize(c->stream);
  graphs_clear(c);
  cublas_unload(&c->cublas);
  if (c->layers) {
    for (int l = 0; l < c->n_layers; l++) {
      cuda_layer *L = &c->layers[l];
      dfree(L->attn_norm);
      dfree(L->ffn_norm);
      dfree(L->bqkv);
      dfree(L->wqkv);
      dfree(L->wo);
      dfree(L->wgu);
      dfree(L->wdown);
    }
    free(c->layers);
  }
  if (c->lm_head != c->emb) dfree(c->lm_head);
  dfree(c->emb);
  dfree(c->final_norm);
  dfree(c->inv_freq);
  dfree(c->x);
  dfree(c->xn);
  dfree(c->qkv);
  dfree(c->q_rec);
  dfree(c->q_sink);
  dfree(c->k_scr);
  dfree(c->v_scr);
  dfree(c->att);
  dfree(c->gu);
  dfree(c->h);
  dfree(c->rope_tab);
  dfree(c->part);
  dfree(c->logits_d);
  dfree(c->meta_d);
  if (c->meta_h) cudaFreeHost(c->meta_h);
  if (c->stream) cudaStreamDestroy(c->stream);
  cudaGetLastError();
  free(c);
}

/* ---- weight upload ---------------------------------------------------------------------- */

typedef struct upload_part {
  const ss_weight *w; /* host matrix in any ss_dtype */
  int qk;             /* Q or K projection: rows permuted to rotate-half when the model's are adjacent pairs */
} upload_part;

#define STAGE_FLOATS ((size_t)16 << 20) /* 64 MiB of fp32 per copy */

/* Concatenate parts (host matrices, dequantized to fp32 on the host: `host` holds STAGE_FLOATS) into
 * one device tensor of the element type. */
static int upload_cat(ss_backend_ctx *c, float *stage, float *host, void **out, const upload_part *parts,
                      int n_parts, const char *what) {
  size_t total = 0;
  for (int i = 0; i < n_parts; i++) total += (size_t)parts[i].w->rows * (size_t)parts[i].w->cols;
  RC(dmalloc(out, total * c->esz, what));
  size_t off = 0;
  for (int i = 0; i < n_parts; i++) {
    const ss_weight *w = parts[i].w;
    size_t cols = (size_t)w->cols, per = STAGE_FLOATS / cols;
    int permute = parts[i].qk && c->model->rope_adjacent;
    for (int64_t r0 = 0; r0 < w->rows; r0 += (int64_t)per) {
      int64_t n = w->rows - r0 < (int64_t)per ? w->rows - r0 : (int64_t)per;
      for (int64_t r = 0; r < n; r++)
        ss_weight_row_f32(w, permute ? ss_rope_adjacent_row(r0 + r, c->hd) : r0 + r, host + (size_t)r * cols);
      CU(cudaMemcpy(stage, host, (size_t)n * cols * sizeof(float), cudaMemcpyHostToDevice));
      KL(ssk_convert_f32(c->dtype, (char *)*out + (off + (size_t)r0 * cols) * c->esz, stage, (size_t)n * cols,
                         c->stream));
      CU(cudaStreamSynchronize(c->stream)); /* stage is reused by the next copy */
    }
    off += (size_t)w->rows * cols;
  }
  return SS_OK;
}

static int upload_f32(float **out, const float *src, size_t n, const char *what) {
  RC(dmalloc((void **)out, n * sizeof(float), what));
  CU(cudaMemcpy(*out, src, n * sizeof(float), cudaMemcpyHostToDevice));
  return SS_OK;
}

static int upload_weights(ss_backend_ctx *c) {
  const ss_model *m = c->model;
  size_t dim = (size_t)c->dim, qd = (size_t)c->q_dim, kvd = (size_t)c->kv_dim;
  float *stage = NULL, *host = malloc(STAGE_FLOATS * sizeof(float));
  if (!host) return ss_fail(SS_ERR_OUT_OF_MEMORY, "cuda backend: cannot allocate the host staging buffer");
  int rc = dmalloc((void **)&stage, STAGE_FLOATS * sizeof(float), "the weight upload staging buffer");
  if (rc) {
    free(host);
    return rc;
  }
  upload_part emb = {&m->tok_embeddings, 0};
  rc = upload_cat(c, stage, host, &c->emb, &emb, 1, "token embeddings");
  if (!rc) {
    if (m->lm_head.data == m->tok_embeddings.data) {
      c->lm_head = c->emb;
    } else {
      upload_part head = {&m->lm_head, 0};
      rc = upload_cat(c, stage, host, &c->lm_head, &head, 1, "lm_head");
    }
  }
  if (!rc) rc = upload_f32(&c->final_norm, m->final_norm, dim, "final norm");
  for (int l = 0; !rc && l < c->n_layers; l++) {
    const ss_layer_weights *w = &m->layers[l];
    cuda_layer *L = &c->layers[l];
    char what[64];
    snprintf(what, sizeof what, "layer %d weights", l);
    rc = upload_f32(&L->attn_norm, w->attn_norm, dim, what);
    if (!rc) rc = upload_f32(&L->ffn_norm, w->ffn_norm, dim, what);
    if (!rc) {
      upload_part p[3] = {{&w->wq, 1}, {&w->wk, 1}, {&w->wv, 0}};
      rc = upload_cat(c, stage, host, &L->wqkv, p, 3, what);
    }
    if (!rc) {
      upload_part p = {&w->wo, 0};
      rc = upload_cat(c, stage, host, &L->wo, &p, 1, what);
    }
    if (!rc) {
      upload_part p[2] = {{&w->w_gate, 0}, {&w->w_up, 0}};
      rc = upload_cat(c, stage, host, &L->wgu, p, 2, what);
    }
    if (!rc) {
      upload_part p = {&w->w_down, 0};
      rc = upload_cat(c, stage, host, &L->wdown, &p, 1, what);
    }
    if (!rc && (w->bq || w->bk || w->bv)) {
      size_t n = qd + 2 * kvd;
      rc = dmalloc((void **)&L->bqkv, n * sizeof(float), what);
      if (!rc) {
        cudaError_t e = cudaMemset(L->bqkv, 0, n * sizeof(float));
        if (e == cudaSuccess && w->bq) e = cudaMemcpy(L->bqkv, w->bq, qd * sizeof(float), cudaMemcpyHostToDevice);
        if (e == cudaSuccess && w->bk)
          e = cudaMemcpy(L->bqkv + qd, w->bk, kvd * sizeof(float), cudaMemcpyHostToDevice);
        if (e == cudaSuccess && w->bv)
          e = cudaMemcpy(L->bqkv + qd + kvd, w->bv, kvd * sizeof(float), cudaMemcpyHostToDevice);
        if (e != cudaSuccess)
          rc = ss_fail(SS_ERR_BACKEND, "cuda backend: uploading layer %d biases: %s", l, cudaGetErrorString(e));
      }
    }
  }
  cudaFree(stage);
  free(host);
  return rc;
}

/* ---- init --------------------------------------------------------------------------------- */

static int alloc_activations(ss_backend_ctx *c) {
  size_t T = (size_t)c->max_tokens, e = c->esz;
  RC(dmalloc((void **)&c->x, T * c->dim * sizeof(float), "activations"));
  RC(dmalloc(&c->xn, T * c->dim * e, "activations"));
  RC(dmalloc((void **)&c->qkv, T * (c->q_dim + 2 * (size_t)c->kv_dim) * sizeof(float), "activations"));
  RC(dmalloc((void **)&c->q_rec, T * c->q_dim * sizeof(float), "activations"));
  RC(dmalloc((void **)&c->q_sink, T * c->q_dim * sizeof(float), "activations"));
  RC(dmalloc(&c->k_scr, T * c->kv_dim * e, "chunk key scratch"));
  RC(dmalloc(&c->v_scr, T * c->kv_dim * e, "chunk value scratch"));
  RC(dmalloc(&c->att, T * c->q_dim * e, "activations"));
  RC(dmalloc((void **)&c->gu, T * 2 * (size_t)c->hidden * sizeof(float), "activations"));
  RC(dmalloc(&c->h, T * c->hidden * e, "activations"));
  RC(dmalloc((void **)&c->rope_tab, T * 2 * (size_t)c->hd * sizeof(float), "RoPE tables"));
  /* every split plan of forward fits (cuda_plan.h, tested by tests/test_cuda_plan.c) */
  c->part_floats = ss_cuda_part_floats(c->max_tokens, c->n_heads, c->n_sms, c->hd);
  RC(dmalloc((void **)&c->part, c->part_floats * sizeof(float), "attention partials"));
  meta_layout L = meta_layout_for(c->max_items, c->max_tokens, c->max_items);
  c->meta_bytes = L.total;
  RC(dmalloc((void **)&c->meta_d, c->meta_bytes, "step metadata"));
  cudaError_t err = cudaMallocHost((void **)&c->meta_h, c->meta_bytes);
  if (err != cudaSuccess) {
    c->meta_h = NULL;
    cudaGetLastError();
    return ss_fail(SS_ERR_OUT_OF_MEMORY, "cuda backend: cannot allocate %zu bytes of pinned host memory: %s",
                   c->meta_bytes, cudaGetErrorString(err));
  }
  return SS_OK;
}

static int cuda_init(const ss_model *model, const ss_engine_params *params, ss_backend_ctx **out) {
  *out = NULL;
  int n_dev = ss_cuda_device_count();
  if (n_dev <= 0) return ss_fail(SS_ERR_UNSUPPORTED, "cuda backend: no CUDA device is available");
  if (params->device < 0 || params->device >= n_dev)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "cuda backend: device %d outside [0, %d)", params->device, n_dev);
  const ss_model_info *in = &model->info;
  if (in->head_dim % 8 != 0 || in->head_dim > 256)
    return ss_fail(SS_ERR_UNSUPPORTED,
                   "cuda backend: head_dim %d is not supported (a multiple of 8 up to 256 is)", in->head_dim);
  if (params->max_batch_tokens > 65535)
    return ss_fail(SS_ERR_UNSUPPORTED, "cuda backend: max_batch_tokens %d above 65535 (grid limit)",
                   params->max_batch_tokens);
  CU(cudaSetDevice(params->device));
  struct cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, params->device));
  if (prop.major < 8)
    return ss_fail(SS_ERR_UNSUPPORTED,
                   "cuda backend: device %d (%s) has compute capability %d.%d; 8.0 or newer is required",
                   params->device, prop.name, prop.major, prop.minor);

  ss_backend_ctx *c = calloc(1, sizeof *c);
  if (!c) return ss_fail(SS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  c->model = model;
  c->device = params->device;
  c->n_sms = prop.multiProcessorCount;
  const char *dt = getenv("SS_CUDA_DTYPE");
  c->dtype = (dt && strcmp(dt, "bf16") == 0) ? SSK_BF16 : SSK_F16;
  c->esz = 2;
  int32_t kv_own = c->dtype == SSK_BF16 ? SS_DTYPE_BF16 : SS_DTYPE_F16;
  if (params->kv_dtype != SS_KV_DTYPE_DEFAULT && params->kv_dtype != kv_own) {
    free(c);
    return ss_fail(SS_ERR_UNSUPPORTED, "cuda backend: kv_dtype %s is not supported: its cache holds %s (the "
                   "compute type, SS_CUDA_DTYPE)", ss_dtype_name(params->kv_dtype), ss_dtype_name(kv_own));
  }
  c->dim = in->dim;
  c->hidden = in->hidden_dim;
  c->n_layers = in->n_layers;
  c->n_heads = in->n_heads;
  c->n_kv = in->n_kv_heads;
  c->hd = in->head_dim;
  c->q_dim = in->n_heads * in->head_dim;
  c->kv_dim = in->n_kv_heads * in->head_dim;
  c->vocab = in->vocab_size;
  c->eps = in->rms_norm_eps;
  c->max_tokens = params->max_batch_tokens;
  c->max_items = params->max_batch_tokens; /* an item has >= 1 token */
  const char *gm = getenv("SS_CUDA_GEMV_MAX");
  c->gemv_max = SSK_GEMV_MAX_M;
  if (gm) {
    int v = atoi(gm);
    c->gemv_max = v < 0 ? 0 : (v > SSK_GEMV_MAX_M ? SSK_GEMV_MAX_M : v);
  }
  const char *gr = getenv("SS_CUDA_GRAPHS");
  c->use_graphs = !(gr && strcmp(gr, "0") == 0);

  int rc = SS_OK;
  cudaError_t e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    c->stream = NULL;
    rc = ss_fail(SS_ERR_BACKEND, "cuda backend: cudaStreamCreate failed: %s", cudaGetErrorString(e));
  }
  if (!rc) {
    c->layers = calloc((size_t)c->n_layers, sizeof *c->layers);
    if (!c->layers) rc = ss_fail(SS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  }
  if (!rc) {
    int half = c->hd / 2;
    double inv[128];
    for (int j = 0; j < half; j++) inv[j] = pow((double)in->rope_theta, -2.0 * (double)j / (double)c->hd);
    rc = dmalloc((void **)&c->inv_freq, (size_t)half * sizeof(double), "RoPE frequencies");
    if (!rc) {
      e = cudaMemcpy(c->inv_freq, inv, (size_t)half * sizeof(double), cudaMemcpyHostToDevice);
      if (e != cudaSuccess) rc = ss_fail(SS_ERR_BACKEND, "cuda backend: cudaMemcpy: %s", cudaGetErrorString(e));
    }
  }
  if (!rc) rc = upload_weights(c);
  if (!rc) rc = alloc_activations(c);
  if (!rc) {
    c->have_cublas = cublas_load(&c->cublas, c->stream) == 0;
    if (c->have_cublas)
      snprintf(c->gemm_path, sizeof c->gemm_path, "cublas (%s) for > %d rows, own gemv for <= %d rows",
               c->cublas.name, c->gemv_max, c->gemv_max);
    else
      snprintf(c->gemm_path, sizeof c->gemm_path, "own kernels (wmma tensor cores for > %d rows, gemv for <= %d)",
               c->gemv_max, c->gemv_max);
  }
  if (!rc) {
    e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) rc = ss_fail(SS_ERR_BACKEND, "cuda backend: init: %s", cudaGetErrorString(e));
  }
  if (rc) {
    cuda_destroy(c);
    return rc;
  }
  *out = c;
  return SS_OK;
}

/* ---- KV storage ops ---------------------------------------------------------------------- */

static int cuda_kv_create(ss_backend_ctx *c, ss_cache_geometry geom, void **out_kv) {
  cuda_kv *kv = calloc(1, sizeof *kv);
  if (!kv) return ss_fail(SS_ERR_OUT_OF_MEMORY, "cuda backend: out of memory");
  kv->geom = geom;
  *out_kv = kv;
  return SS_OK;
}

static int cuda_kv_reserve(ss_backend_ctx *c, void *kvp, int32_t n_slots) {
  cuda_kv *kv = kvp;
  if (n_slots <= kv->n_slots) return SS_OK;
  CU(cudaSetDevice(c->device));
  size_t row = (size_t)c->kv_dim * c->esz;
  void *nb = NULL;
  char what[96];
  snprintf(what, sizeof what, "a KV cache of %d slots", n_slots);
  size_t bytes = (size_t)c->n_layers * 2 * (size_t)n_slots * row;
  RC(dmalloc(&nb, bytes, what));
  if (kv->n_slots > 0) {
    /* the 2 * n_layers planes keep their first n_slots_old rows */
    cudaError_t e = cudaMemcpy2DAsync(nb, (size_t)n_slots * row, kv->buf, (size_t)kv->n_slots * row,
                                      (size_t)kv->n_slots * row, (size_t)2 * c->n_layers, cudaMemcpyDeviceToDevice,
                                      c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
      cudaFree(nb);
      return ss_fail(SS_ERR_BACKEND, "cuda backend: growing a KV cache: %s", cudaGetErrorString(e));
    }
    cudaFree(kv->buf);
  }
  kv->buf = nb;
  kv->n_slots = n_slots;
  kv->bytes = (int64_t)bytes;
  return SS_OK;
}

static void cuda_kv_destroy(ss_backend_ctx *c, void *kvp) {
  cuda_kv *kv = kvp;
  if (!kv) return;
  if (kv->buf) {
    cudaSetDevice(c->device);
    cudaStreamSynchronize(c->stream);
    cudaFree(kv->buf);
  }
  free(kv);
}

/* K and V rows of one slot in every layer, in the cache's element type */
static int64_t cuda_kv_bytes_per_token(ss_backend_ctx *c) {
  return (int64_t)c->n_layers * 2 * (int64_t)c->kv_dim * (int64_t)c->esz;
}

static int64_t cuda_kv_bytes(ss_backend_ctx *c, const void *kvp) { return ((const cuda_kv *)kvp)->bytes; }

/* ---- forward ------------------------------------------------------------------------------- */

static int gemm(ss_backend_ctx *c, float *y, const void *x, const void *w, int M, int N, int K, int accumulate) {
  if (M <= c->gemv_max) {
    KL(ssk_gemv(c->dtype, y, x, w, M, N, K, accumulate, c->stream));
    return SS_OK;
  }
  if (c->have_cublas) {
    /* column-major view: y^T[N, M] = W[N, K] . x^T[K, M]; W row-major [N, K] is (K x N)^T */
    const float one = 1.0f, zero = 0.0f;
    int dt = c->dtype == SSK_BF16 ? CUDA_R_16BF_ : CUDA_R_16F_;
    int st = c->cublas.gemm_ex(c->cublas.handle, CUBLAS_OP_T_, CUBLAS_OP_N_, N, M, K, &one, w, dt, K, x, dt, K,
                               accumulate ? &one : &zero, y, CUDA_R_32F_, N, CUBLAS_COMPUTE_32F_,
                               CUBLAS_GEMM_DEFAULT_);
    if (st != 0)
      return ss_fail(SS_ERR_BACKEND, "cuda backend: cublasGemmEx(M=%d, N=%d, K=%d) failed with status %d", M, N, K,
                     st);
    return SS_OK;
  }
  KL(ssk_gemm(c->dtype, y, x, w, M, N, K, accumulate, c->stream));
  return SS_OK;
}

typedef struct step_shape {
  int T, n_items, n_want, n_splits, split_len, all_decode;
  const ssk_item *items; /* device pointers into meta_d */
  const int32_t *tokens, *tok_item, *want_rows;
} step_shape;

/* Every kernel of one forward pass, enqueued on c->stream (eagerly or under graph capture). */
static int enqueue_forward(ss_backend_ctx *c, const step_shape *s) {
  const int T = s->T;
  ssk_shape sh = {c->n_heads, c->n_kv, c->hd, c->kv_dim};
  KL(ssk_embed(c->dtype, c->x, c->emb, s->tokens, T, c->dim, c->stream));
  KL(ssk_rope_tables(c->rope_tab, s->items, s->tok_item, c->inv_freq, T, c->hd / 2, c->stream));
  for (int l = 0; l < c->n_layers; l++) {
    const cuda_layer *L = &c->layers[l];
    KL(ssk_rmsnorm(c->dtype, c->xn, c->x, L->attn_norm, NULL, T, c->dim, c->eps, c->stream));
    RC(gemm(c, c->qkv, c->xn, L->wqkv, T, c->q_dim + 2 * c->kv_dim, c->dim, 0));
    KL(ssk_qkv_rope(c->dtype, c->qkv, L->bqkv, c->rope_tab, c->q_rec, c->q_sink, c->k_scr, c->v_scr, s->items,
                    s->tok_item, l, T, sh, c->stream));
    KL(ssk_attention(c->dtype, c->q_rec, c->q_sink, c->k_scr, c->v_scr, s->items, s->tok_item, l, T, sh,
                     s->n_splits, s->split_len, c->part, c->att, c->stream));
    if (!s->all_decode)
      KL(ssk_commit(c->dtype, c->k_scr, c->v_scr, s->items, s->tok_item, l, T, c->kv_dim, c->stream));
    RC(gemm(c, c->x, c->att, L->wo, T, c->dim, c->q_dim, 1));
    KL(ssk_rmsnorm(c->dtype, c->xn, c->x, L->ffn_norm, NULL, T, c->dim, c->eps, c->stream));
    RC(gemm(c, c->gu, c->xn, L->wgu, T, 2 * c->hidden, c->dim, 0));
    KL(ssk_swiglu(c->dtype, c->h, c->gu, T, c->hidden, c->stream));
    RC(gemm(c, c->x, c->h, L->wdown, T, c->dim, c->hidden, 1));
  }
  if (s->n_want > 0) {
    KL(ssk_rmsnorm(c->dtype, c->xn, c->x, c->final_norm, s->want_rows, s->n_want, c->dim, c->eps, c->stream));
    RC(gemm(c, c->logits_d, c->xn, c->lm_head, s->n_want, c->vocab, c->dim, 0));
  }
  return SS_OK;
}

static ss_cuda_graph_key graph_key_of(const step_shape *s) {
  return (ss_cuda_graph_key){s->T, s->n_items, s->n_want, s->n_splits, s->split_len};
}

static graph_entry *graph_find(ss_backend_ctx *c, const step_shape *s) {
  ss_cuda_graph_key k = graph_key_of(s);
  for (int i = 0; i < N_GRAPHS; i++) {
    graph_entry *g = &c->graphs[i];
    if (g->used && ss_cuda_graph_key_eq(g->key, k)) return g;
  }
  return NULL;
}

/* Capture the decode pass of this shape into a graph (evicting the least recently used).
 * Returns NULL (and turns graphs off for this context) when capture is not possible. */
static graph_entry *graph_capture(ss_backend_ctx *c, const step_shape *s) {
  graph_entry *slot = &c->graphs[0];
  for (int i = 0; i < N_GRAPHS; i++) {
    if (!c->graphs[i].used) {
      slot = &c->graphs[i];
      break;
    }
    if (c->graphs[i].last_use < slot->last_use) slot = &c->graphs[i];
  }
  if (slot->used) {
    cudaGraphExecDestroy(slot->exec);
    slot->used = 0;
  }
  cudaGraph_t graph = NULL;
  const char *stage = "cudaStreamBeginCapture";
  int rc = SS_OK;
  cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) goto fail;
  rc = enqueue_forward(c, s);
  e = cudaStreamEndCapture(c->stream, &graph);
  stage = rc != SS_OK ? "a launch under capture" : "cudaStreamEndCapture";
  if (rc != SS_OK || e != cudaSuccess || !graph) goto fail;
  stage = "cudaGraphInstantiate";
  e = cudaGraphInstantiateWithFlags(&slot->exec, graph, 0);
  if (e != cudaSuccess) goto fail;
  cudaGraphDestroy(graph);
  slot->used = 1;
  slot->key = graph_key_of(s);
  return slot;
fail:
  snprintf(c->graph_note, sizeof c->graph_note, "CUDA graph capture failed at %s (%s%s%s); decode steps run eagerly",
           stage, cudaGetErrorString(e), rc != SS_OK ? "; " : "", rc != SS_OK ? ss_last_error() : "");
  if (graph) cudaGraphDestroy(graph);
  {
    enum cudaStreamCaptureStatus cs;
    if (cudaStreamIsCapturing(c->stream, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone) {
      cudaGraph_t g2 = NULL;
      cudaStreamEndCapture(c->stream, &g2);
      if (g2) cudaGraphDestroy(g2);
    }
  }
  cudaGetLastError();
  c->use_graphs = 0;
  return NULL;
}

static int cuda_forward(ss_backend_ctx *c, const ss_forward_item *items, int32_t n_items, float *logits) {
  CU(cudaSetDevice(c->device));
  if (n_items <= 0) return SS_OK;
  if (n_items > c->max_items)
    return ss_fail(SS_ERR_LIMIT, "cuda backend: %d items exceed max_batch_tokens %d", n_items, c->max_items);

  /* pass 1: shape of the step */
  int T = 0, n_want = 0, all_decode = 1;
  int64_t max_n = 1;
  for (int i = 0; i < n_items; i++) {
    const ss_forward_item *it = &items[i];
    const cuda_kv *kv = it->kv;
    if (it->n_tokens < 1 || T + (int64_t)it->n_tokens > c->max_tokens)
      return ss_fail(SS_ERR_LIMIT, "cuda backend: %lld+ tokens exceed max_batch_tokens %d",
                     (long long)T + it->n_tokens, c->max_tokens);
    int64_t end = it->start_index + it->n_tokens;
    int64_t need = ss_geom_n_cached(end, it->geom.capacity);
    if (!kv || kv->n_slots < need)
      return ss_fail(SS_ERR_BACKEND, "cuda backend: item %d: KV storage holds %d slots, the step needs %lld", i,
                     kv ? kv->n_slots : 0, (long long)need);
    if (it->geom.capacity - it->geom.n_sinks <= 0)
      return ss_fail(SS_ERR_INVALID_ARGUMENT, "cuda backend: item %d: capacity %d leaves no recent slot", i,
                     it->geom.capacity);
    if (need > max_n) max_n = need;
    T += it->n_tokens;
    n_want += it->want_logits ? 1 : 0;
    if (it->n_tokens != 1) all_decode = 0;
  }

  if (n_want > c->logits_rows) {
    graphs_clear(c); /* captured graphs point at the old buffer */
    dfree(c->logits_d);
    c->logits_d = NULL;
    c->logits_rows = 0;
    int rows = n_want < 8 ? 8 : n_want;
    RC(dmalloc((void **)&c->logits_d, (size_t)rows * c->vocab * sizeof(float), "logits"));
    c->logits_rows = rows;
  }

  /* pass 2: metadata */
  meta_layout L = meta_layout_for(n_items, T, n_want);
  ssk_item *mi = (ssk_item *)(c->meta_h + L.items);
  int32_t *mt = (int32_t *)(c->meta_h + L.tokens);
  int32_t *mti = (int32_t *)(c->meta_h + L.tok_item);
  int32_t *mw = (int32_t *)(c->meta_h + L.want_rows);
  int off = 0, k = 0;
  for (int i = 0; i < n_items; i++) {
    const ss_forward_item *it = &items[i];
    const cuda_kv *kv = it->kv;
    mi[i] = (ssk_item){.s0 = it->start_index,
                       .n_tokens = it->n_tokens,
                       .tok_off = off,
                       .n_sinks = it->geom.n_sinks,
                       .capacity = it->geom.capacity,
                       .cap_alloc = kv->n_slots,
                       .pad_ = 0,
                       .kv = kv->buf};
    for (int j = 0; j < it->n_tokens; j++) {
      mt[off + j] = it->tokens[j];
      mti[off + j] = i;
    }
    off += it->n_tokens;
    if (it->want_logits) mw[k++] = off - 1;
  }

  /* attention split (cuda_plan.h): blocks past a token's keys exit at once */
  ss_cuda_split sp = ss_cuda_plan_split(T, c->n_heads, c->n_sms, max_n);
  if (ss_cuda_plan_part_need(T, c->n_heads, c->hd, sp) > c->part_floats)
    return ss_fail(SS_ERR_BACKEND, "cuda backend: attention partials overflow (internal error)");
  int n_splits = sp.n_splits, split_len = sp.split_len;

  step_shape s = {.T = T,
                  .n_items = n_items,
                  .n_want = n_want,
                  .n_splits = n_splits,
                  .split_len = split_len,
                  .all_decode = all_decode,
                  .items = (const ssk_item *)(c->meta_d + L.items),
                  .tokens = (const int32_t *)(c->meta_d + L.tokens),
                  .tok_item = (const int32_t *)(c->meta_d + L.tok_item),
                  .want_rows = (const int32_t *)(c->meta_d + L.want_rows)};

  CU(cudaMemcpyAsync(c->meta_d, c->meta_h, L.total, cudaMemcpyHostToDevice, c->stream));
  c->n_forward++;
  graph_entry *g = NULL;
  if (c->use_graphs && all_decode) {
    g = graph_find(c, &s);
    if (!g) {
      ss_cuda_graph_key k = graph_key_of(&s);
      if (c->warm_valid && ss_cuda_graph_key_eq(c->warm_key, k)) {
        g = graph_capture(c, &s); /* second step of this shape: capture (NULL: eager from now on) */
        c->warm_valid = 0;
      } else {
        c->warm_key = k; /* first step of this shape runs eagerly (warm-up) */
        c->warm_valid = 1;
      }
    }
  }
  if (g) {
    g->last_use = c->n_forward;
    CU(cudaGraphLaunch(g->exec, c->stream));
  } else {
    RC(enqueue_forward(c, &s));
  }
  if (n_want > 0)
    CU(cudaMemcpyAsync(logits, c->logits_d, (size_t)n_want * c->vocab * sizeof(float), cudaMemcpyDeviceToHost,
                       c->stream));
  CU(cudaStreamSynchronize(c->stream));
  return SS_OK;
}

static const ss_backend_ops cuda_ops = {
    .name = "cuda",
    .init = cuda_init,
    .destroy = cuda_destroy,
    .kv_create = cuda_kv_create,
    .kv_reserve = cuda_kv_reserve,
    .kv_destroy = cuda_kv_destroy,
    .kv_bytes = cuda_kv_bytes,
    .kv_bytes_per_token = cuda_kv_bytes_per_token,
    .forward = cuda_forward,
};

/* NULL when no device can run it (no driver, no GPU): ss_backend_available(SS_BACKEND_CUDA) = 0. */
const ss_backend_ops *ss_backend_cuda(void) { return ss_cuda_device_count() > 0 ? &cuda_ops : NULL; }

/* The CUDA context of an engine (NULL when it runs another backend). */
static const ss_backend_ctx *cuda_ctx_of(const ss_engine *e) {
  ss_backend_ctx *c = NULL;
  return ss_engine_backend(e, &c) == &cuda_ops ? c : NULL;
}

const char *ss_cuda_gemm_path(const ss_engine *e) {
  const ss_backend_ctx *c = cuda_ctx_of(e);
  return c ? c->gemm_path : "";
}

const char *ss_cuda_graph_note(const ss_engine *e) {
  const ss_backend_ctx *c = cuda_ctx_of(e);
  return c ? c->graph_note : "";
}

/* ---- device sampling entry point (tests, benchmarks) ---------------------------------------- */

int ss_cuda_sample_host(int device, const float *logits, int32_t rows, int32_t vocab,
                        const ssk_sample_params *params, const uint32_t *masks, int32_t *out_tokens) {
  if (rows <= 0) return SS_OK;
  if (!logits || !params || !out_tokens || vocab <= 0)
    return ss_fail(SS_ERR_INVALID_ARGUMENT, "ss_cuda_sample_host: bad arguments");
  if (ss_cuda_device_count() <= device || device < 0)
    return ss_fail(SS_ERR_UNSUPPORTED, "ss_cuda_sample_host: no CUDA device %d", device);
  CU(cudaSetDevice(device));
  float *dl = NULL;
  ssk_sample_params *dp = NULL;
  int32_t *dout = NULL;
  uint32_t *dm = NULL;
  size_t mask_bytes = (size_t)rows * SS_MASK_WORDS((size_t)vocab) * sizeof(uint32_t);
  int rc = dmalloc((void **)&dl, (size_t)rows * vocab * sizeof(float), "sampling logits");
  if (!rc) rc = dmalloc((void **)&dp, (size_t)rows * sizeof *dp, "sampling params");
  if (!rc) rc = dmalloc((void **)&dout, (size_t)rows * sizeof *dout, "sampled tokens");
  if (!rc && masks) rc = dmalloc((void **)&dm, mask_bytes, "token masks");
  cudaError_t e = cudaSuccess;
  if (!rc) e = cudaMemcpy(dl, logits, (size_t)rows * vocab * sizeof(float), cudaMemcpyHostToDevice);
  if (!rc && e == cudaSuccess) e = cudaMemcpy(dp, params, (size_t)rows * sizeof *dp, cudaMemcpyHostToDevice);
  if (!rc && e == cudaSuccess && masks) e = cudaMemcpy(dm, masks, mask_bytes, cudaMemcpyHostToDevice);
  if (!rc && e == cudaSuccess) e = (cudaError_t)ssk_sample(dl, rows, vocab, dp, dm, dout, 0);
  if (!rc && e == cudaSuccess) e = cudaMemcpy(out_tokens, dout, (size_t)rows * sizeof *dout, cudaMemcpyDeviceToHost);
  if (!rc && e != cudaSuccess) rc = ss_fail(SS_ERR_BACKEND, "ss_cuda_sample_host: %s", cudaGetErrorString(e));
  dfree(dl);
  dfree(dp);
  dfree(dout);
  dfree(dm);
  return rc;
}

int ss_cuda_copy_bandwidth(int device, size_t bytes, double *bytes_per_s) {
  *bytes_per_s = 0.0;
  if (bytes < ((size_t)1 << 20)) bytes = (size_t)1 << 20;
  if (ss_cuda_device_count() <= device || device < 0)
    return ss_fail(SS_ERR_UNSUPPORTED, "ss_cuda_copy_bandwidth: no CUDA device %d", device);
  CU(cudaSetDevice(device));
  void *a = NULL, *b = NULL;
  RC(dmalloc(&a, bytes, "the bandwidth probe"));
  int rc = dmalloc(&b, bytes, "the bandwidth probe");
  cudaEvent_t e0 = NULL, e1 = NULL;
  cudaError_t e = cudaSuccess;
  if (!rc) e = cudaEventCreate(&e0);
  if (!rc && e == cudaSuccess) e = cudaEventCreate(&e1);
  if (!rc && e == cudaSuccess) e = cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice); /* warm-up */
  const int reps = 10;
  if (!rc && e == cudaSuccess) e = cudaEventRecord(e0, 0);
  for (int i = 0; !rc && e == cudaSuccess && i < reps; i++) e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
  if (!rc && e == cudaSuccess) e = cudaEventRecord(e1, 0);
  if (!rc && e == cudaSuccess) e = cudaEventSynchronize(e1);
  float ms = 0.0f;
  if (!rc && e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
  if (!rc && e != cudaSuccess) rc = ss_fail(SS_ERR_BACKEND, "ss_cuda_copy_bandwidth: %s", cudaGetErrorString(e));
  if (!rc && ms > 0.0f) *bytes_per_s = 2.0 * (double)bytes * reps / (ms / 1000.0); /* read + write */
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  dfree(a);
  dfree(b);
  return rc;
}

#endif /* SS_WITH_CUDA */
