/*
 * sinkstream.h — C ABI of the sinkstream runtime.
 *
 * A Llama-family decoder-only inference engine whose per-sequence KV cache
 * implements StreamingLLM (attention sinks + a recent window, positions
 * re-indexed at every eviction), plus the window and dense baselines.
 *
 * Conventions
 * - Every function that can fail returns an int status (SS_OK == 0, see
 *   ss_status). On failure a human-readable message is available from
 *   ss_last_error() on the same thread (thread-local storage); it names the
 *   file / sequence / argument that is wrong.
 * - Handles are opaque. Whoever creates a handle frees it with the matching
 *   *_free function; *_free(NULL) is a no-op.
 * - Params structs are plain data of fixed-width fields; always start from
 *   the matching *_default_params() and change the fields you need. Field
 *   offsets are part of the ABI (bindings fill them by offset) and are
 *   checked with static asserts in the implementation.
 *
 * Thread safety
 * - ss_model is immutable after load and may be shared by several engines.
 * - An ss_engine is NOT thread-safe: calls on one engine must be serialised
 *   by the caller (the Deno binding runs them one at a time on a worker
 *   thread). Different engines may be used from different threads.
 * - ss_last_error() and the default_params functions are thread-safe.
 */
#ifndef SINKSTREAM_H
#define SINKSTREAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SS_API __attribute__((visibility("default")))
#else
#define SS_API
#endif

#define SS_ABI_VERSION 1

/* ---- status codes ------------------------------------------------------ */
typedef enum ss_status {
  SS_OK = 0,
  SS_ERR_INVALID_ARGUMENT = 1, /* a bad parameter, null pointer, bad token id */
  SS_ERR_IO = 2,               /* cannot open / read / map a file */
  SS_ERR_FORMAT = 3,           /* malformed or unsupported model file */
  SS_ERR_OUT_OF_MEMORY = 4,    /* an allocation failed */
  SS_ERR_CONTEXT_FULL = 5,     /* dense policy: the cache has no room left */
  SS_ERR_NOT_FOUND = 6,        /* unknown sequence id */
  SS_ERR_BACKEND = 7,          /* backend failure (e.g. a CUDA error) */
  SS_ERR_UNSUPPORTED = 8,      /* backend / feature not built or not available */
  SS_ERR_LIMIT = 9,            /* engine limit reached (max sequences, batch tokens) */
} ss_status;

/* Last error message of the calling thread ("" when none). The pointer stays
 * valid until the next failing call on this thread. */
SS_API const char *ss_last_error(void);
/* The most recent error message recorded on ANY thread ("" when none), copied
 * into storage of the calling thread (valid until its next call of this
 * function). For bindings that run calls on worker threads and read the
 * message afterwards on another thread. Additive since ABI 1. */
SS_API const char *ss_last_error_global(void);
/* Static name of a status code, e.g. "SS_ERR_FORMAT". */
SS_API const char *ss_status_name(int status);
/* SS_ABI_VERSION the library was built with. */
SS_API int ss_abi_version(void);

/* ---- model ------------------------------------------------------------- */
typedef struct ss_model ss_model;

typedef struct ss_model_params {
  int32_t use_mmap; /* off 0: 1 = map weights from the file when possible (default 1) */
  int32_t reserved[7];
} ss_model_params; /* 32 bytes */

typedef enum ss_arch {
  SS_ARCH_LLAMA = 0,
  SS_ARCH_MISTRAL = 1,
  SS_ARCH_QWEN2 = 2,
} ss_arch;

/* Shape of a loaded model. Filled by ss_model_get_info. */
typedef struct ss_model_info {
  int32_t arch;            /* off 0: ss_arch */
  int32_t dim;             /* off 4: hidden size */
  int32_t hidden_dim;      /* off 8: FFN intermediate size */
  int32_t n_layers;        /* off 12 */
  int32_t n_heads;         /* off 16: query heads */
  int32_t n_kv_heads;      /* off 20: key/value heads (GQA when < n_heads) */
  int32_t head_dim;        /* off 24 */
  int32_t vocab_size;      /* off 28 */
  int32_t max_seq_len;     /* off 32: training context (max_position_embeddings) */
  int32_t bos_token_id;    /* off 36: -1 when unknown */
  int32_t eos_token_id;    /* off 40: -1 when unknown */
  int32_t source_dtype;    /* off 44: ss_dtype of the weights in the file */
  float rope_theta;        /* off 48 */
  float rms_norm_eps;      /* off 52 */
  int64_t n_params;        /* off 56: number of weight scalars */
} ss_model_info;           /* 64 bytes */

typedef enum ss_dtype { SS_DTYPE_F32 = 0, SS_DTYPE_F16 = 1, SS_DTYPE_BF16 = 2 } ss_dtype;

SS_API ss_model_params ss_model_default_params(void);
/* Load a model. `path` is either a Hugging Face folder (config.json +
 * model.safetensors or model.safetensors.index.json shards) or a llama2.c
 * checkpoint file (.bin). On success *out owns the model; free it with
 * ss_model_free after every engine using it has been freed. */
SS_API int ss_model_load(const char *path, const ss_model_params *params, ss_model **out);
SS_API void ss_model_free(ss_model *model);
SS_API int ss_model_get_info(const ss_model *model, ss_model_info *out);

/* ---- engine ------------------------------------------------------------ */
typedef struct ss_engine ss_engine;

typedef enum ss_backend { SS_BACKEND_CPU = 0, SS_BACKEND_CUDA = 1 } ss_backend;

typedef struct ss_engine_params {
  int32_t backend;          /* off 0: ss_backend (default SS_BACKEND_CPU) */
  int32_t n_threads;        /* off 4: CPU threads, 0 = all online cores (default 0) */
  int32_t max_sequences;    /* off 8: live sequences at once (default 1024) */
  int32_t max_batch_tokens; /* off 12: tokens in one step, all items (default 512) */
  int32_t device;           /* off 16: CUDA device ordinal (default 0) */
  int32_t reserved[3];
} ss_engine_params;         /* 32 bytes */

SS_API ss_engine_params ss_engine_default_params(void);
/* Create an engine on `model` (borrowed: it must outlive the engine). */
SS_API int ss_engine_create(const ss_model *model, const ss_engine_params *params, ss_engine **out);
/* Frees the engine and every sequence still alive in it. */
SS_API void ss_engine_free(ss_engine *engine);
/* Whether a backend was compiled in and can run here (1) or not (0). */
SS_API int ss_backend_available(int32_t backend);

/* ---- sequences --------------------------------------------------------- */
typedef enum ss_policy {
  SS_POLICY_STREAMING = 0, /* first n_sinks tokens kept for ever + most recent; positions re-indexed */
  SS_POLICY_WINDOW = 1,    /* most recent `capacity` tokens, no sinks */
  SS_POLICY_DENSE = 2,     /* no eviction; SS_ERR_CONTEXT_FULL when full */
} ss_policy;

typedef struct ss_seq_params {
  int32_t policy;     /* off 0: ss_policy (default SS_POLICY_STREAMING) */
  int32_t n_sinks;    /* off 4: attention sinks for streaming (default 4; ignored otherwise) */
  int32_t capacity;   /* off 8: cache size W in tokens, sinks and newest token included;
                         0 = the model's max_seq_len (default 0) */
  float temperature;  /* off 12: 0 = greedy (default 0) */
  int32_t top_k;      /* off 16: 0 = off (default 0) */
  float top_p;        /* off 20: 1 = off (default 1) */
  uint64_t seed;      /* off 24: sampling RNG seed (default 0) */
} ss_seq_params;      /* 32 bytes */

/* Cache statistics of one sequence. */
typedef struct ss_seq_stats {
  int32_t n_cached;   /* off 0: tokens in the cache now (<= capacity) */
  int32_t n_sinks;    /* off 4: sinks kept (0 for window / dense) */
  int32_t capacity;   /* off 8 */
  int32_t policy;     /* off 12 */
  int64_t n_seen;     /* off 16: tokens fed since creation */
  int64_t n_evicted;  /* off 24: tokens evicted since creation */
  int64_t cache_bytes;/* off 32: bytes of KV memory held now */
} ss_seq_stats;       /* 40 bytes */

SS_API ss_seq_params ss_seq_default_params(void);
/* Create a sequence; its id (>= 0, unique in the engine while alive) in *out_id.
 * KV memory grows on demand up to `capacity` tokens. */
SS_API int ss_seq_create(ss_engine *engine, const ss_seq_params *params, int32_t *out_id);
/* Free a sequence and its cache. SS_ERR_NOT_FOUND when unknown. */
SS_API int ss_seq_free(ss_engine *engine, int32_t seq_id);
/* Change sampling settings (temperature, top_k, top_p, seed; the seed resets
 * the RNG). Cache fields of `params` are ignored. */
SS_API int ss_seq_set_sampling(ss_engine *engine, int32_t seq_id, const ss_seq_params *params);
SS_API int ss_seq_get_stats(const ss_engine *engine, int32_t seq_id, ss_seq_stats *out);
/* The original stream indices (0-based position of each token in everything
 * fed to the sequence) of the cached tokens, in cache order (cache position
 * 0..n_cached-1). Writes min(n_cached, cap) values; *out_n = n_cached. */
SS_API int ss_seq_get_cache_indices(const ss_engine *engine, int32_t seq_id, int64_t *out, int32_t cap,
                                    int32_t *out_n);

/* ---- step -------------------------------------------------------------- */
/* Per-item flags for ss_engine_step. */
#define SS_STEP_SAMPLE 1 /* sample the next token after the item's last token */
#define SS_STEP_LOGITS 2 /* copy the logits after the item's last token */

/* One batched forward pass. Item i feeds n_tokens[i] >= 1 tokens (a prefill
 * chunk or one decode token) to sequence seq_ids[i]; the tokens of all items
 * are concatenated in `tokens`. A sequence appears at most once per step.
 * Total tokens must not exceed max_batch_tokens.
 *
 * Semantics: feeding a chunk is exactly equivalent to feeding its tokens one
 * at a time (each chunk token sees the cache as it would be after the
 * evictions of the tokens before it); the cache afterwards holds what
 * token-by-token feeding leaves ("evict for space").
 *
 * Outputs, all optional (NULL to skip), indexed by item:
 * - out_tokens[i]: sampled next token if flags[i] & SS_STEP_SAMPLE, else -1.
 * - out_logits[i * vocab .. +vocab): logits after the last token if
 *   flags[i] & SS_STEP_LOGITS (other rows untouched).
 * - out_target_logprobs[i]: log p(targets[i] | everything fed) when
 *   targets != NULL and targets[i] >= 0 (else NaN).
 * `flags` may be NULL (= SS_STEP_SAMPLE for all).
 *
 * All inputs are validated before anything is computed: on any error no
 * sequence changes. Errors: SS_ERR_NOT_FOUND (unknown seq), SS_ERR_INVALID_ARGUMENT
 * (token id out of range, duplicate seq, n_tokens < 1), SS_ERR_LIMIT (too many
 * tokens), SS_ERR_CONTEXT_FULL (dense sequence without room). */
SS_API int ss_engine_step(ss_engine *engine, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                          const int32_t *tokens, const int32_t *flags, const int32_t *targets,
                          int32_t *out_tokens, float *out_logits, float *out_target_logprobs);

#ifdef __cplusplus
}
#endif
#endif /* SINKSTREAM_H */
