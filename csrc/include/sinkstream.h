/*
 * sinkstream.h — C ABI of the sinkstream runtime.
 *
 * A Llama-family decoder-only inference engine whose per-sequence KV cache
 * implements StreamingLLM (attention sinks + a recent window, positions
 * re-indexed at every eviction), plus the window and dense baselines.
 *
 * Conventions
 * - Every function that can fail returns an int status (SS_OK == 0, see
 *   ss_status). On failure a human-readable message names the file /
 *   sequence / argument that is wrong. Where to read it:
 *   - ss_last_error(): on the thread that made the failing call, always;
 *   - ss_engine_last_error(engine): after a failing call that takes a
 *     non-const ss_engine * (ss_seq_create, ss_seq_free, ss_seq_set_sampling,
 *     ss_engine_step), from any thread: for bindings that run calls on a
 *     worker thread;
 *   - the caller's `err` buffer of ss_model_load and ss_engine_create (there
 *     is no engine yet), when given.
 *   ss_engine_step also reports a status and a message per item.
 * - Handles are opaque. Whoever creates a handle frees it with the matching
 *   *_free function; *_free(NULL) is a no-op.
 * - Params structs are plain data of fixed-width fields; always start from
 *   the matching *_default_params() and change the fields you need. Struct
 *   sizes, field offsets and enum values are part of the ABI; the library
 *   exports them (ss_abi_layout) so that a binding checks its own copy.
 *
 * Thread safety
 * - ss_model is immutable after load and may be shared by several engines
 *   and threads. ss_model_load and ss_engine_create may run on any thread,
 *   also concurrently with each other and with calls on existing engines.
 * - An ss_engine is NOT thread-safe: calls on one engine must be serialised
 *   by the caller (the Deno binding runs steps one at a time on a worker
 *   thread). Different engines may be used from different threads.
 *   Exceptions: ss_engine_get_limits, ss_seq_check_params and
 *   ss_engine_kv_bytes_per_token read only what is fixed when the engine is
 *   created; they may run at any time, also while a step runs on another
 *   thread (they report failures through ss_last_error() only).
 * - ss_last_error, ss_status_name, ss_abi_version, ss_abi_layout and the
 *   *_default_params functions are thread-safe.
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

#define SS_ABI_VERSION 4

/* Bytes an `err` buffer needs to hold any message whole (longer ones are truncated). */
#define SS_ERROR_MAX 1024

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
  SS_ERR_EMPTY_MASK = 10,      /* a step item's token mask allows no token of the vocabulary */
} ss_status;

/* Last error message of the calling thread ("" when none). The pointer stays
 * valid until the next failing call on this thread. */
SS_API const char *ss_last_error(void);
/* Static name of a status code, e.g. "SS_ERR_FORMAT" ("SS_ERR_UNKNOWN" for others). */
SS_API const char *ss_status_name(int status);
/* SS_ABI_VERSION the library was built with. */
SS_API int ss_abi_version(void);

/* One entry of the ABI description. */
typedef struct ss_abi_entry {
  const char *name; /* "ss_seq_params" (a struct), "ss_seq_params.capacity" (a field), "SS_POLICY_DENSE" */
  int64_t value;    /* sizeof the struct, offsetof the field, or the constant's value */
  int64_t size;     /* sizeof the field; the struct's alignment; 0 for a constant */
} ss_abi_entry;
/* Every public struct (size, alignment), field (offset, size) and enum / flag
 * constant of this header, generated with sizeof / offsetof by the compiler
 * that built the library. Static storage; *out_n = number of entries. */
SS_API const ss_abi_entry *ss_abi_layout(int32_t *out_n);

/* ---- model ------------------------------------------------------------- */
typedef struct ss_model ss_model;

/* Element types of weights (and of the CPU KV cache: F32, F16). Q8_0 and Q4_0 are GGUF's block formats:
 * every 32 consecutive weights of a row share one f16 scale d, Q8_0 stores int8 q (value d * q, 34 bytes
 * per block), Q4_0 4-bit n (value d * (n - 8), 18 bytes per block). */
typedef enum ss_dtype {
  SS_DTYPE_F32 = 0,
  SS_DTYPE_F16 = 1,
  SS_DTYPE_BF16 = 2,
  SS_DTYPE_Q8_0 = 3,
  SS_DTYPE_Q4_0 = 4,
} ss_dtype;

/* ss_model_params.weights: keep every tensor in the type the file holds it in. */
#define SS_WEIGHTS_AS_FILE (-1)

typedef struct ss_model_params {
  int32_t use_mmap; /* 1 = map weights from the file when possible (default 1) */
  int32_t weights;  /* SS_WEIGHTS_AS_FILE (default), or an ss_dtype every weight matrix is converted to
                       at load (a matrix whose rows are not a whole number of 32-blocks gets F16 instead
                       of Q8_0 / Q4_0); norms and biases stay F32 */
  int32_t reserved[6];
} ss_model_params;

typedef enum ss_arch {
  SS_ARCH_LLAMA = 0,
  SS_ARCH_MISTRAL = 1,
  SS_ARCH_QWEN2 = 2,
} ss_arch;

/* File formats ss_model_load reads. */
typedef enum ss_format {
  SS_FORMAT_HF = 0,      /* Hugging Face folder: config.json + safetensors */
  SS_FORMAT_LLAMA2C = 1, /* llama2.c checkpoint (.bin) */
  SS_FORMAT_GGUF = 2,    /* GGUF v3 file (.gguf) */
} ss_format;

/* Shape of a loaded model. Filled by ss_model_get_info. */
typedef struct ss_model_info {
  int32_t arch;            /* ss_arch */
  int32_t dim;             /* hidden size */
  int32_t hidden_dim;      /* FFN intermediate size */
  int32_t n_layers;
  int32_t n_heads;         /* query heads */
  int32_t n_kv_heads;      /* key/value heads (GQA when < n_heads) */
  int32_t head_dim;
  int32_t vocab_size;
  int32_t max_seq_len;     /* training context (max_position_embeddings) */
  int32_t bos_token_id;    /* -1 when unknown */
  int32_t eos_token_id;    /* -1 when unknown */
  int32_t source_dtype;    /* ss_dtype of most weight matrix elements in the file */
  float rope_theta;
  float rms_norm_eps;
  int64_t n_params;        /* number of weight scalars */
  int32_t format;          /* ss_format of the file */
  int32_t weight_dtype;    /* ss_dtype of most weight matrix elements as loaded (after ss_model_params.weights) */
  int64_t weight_bytes;    /* weight bytes a CPU decode step reads per token: every matrix (lm_head
                              included), every norm, one embedding row */
} ss_model_info;

SS_API ss_model_params ss_model_default_params(void);
/* Load a model. `path` is a Hugging Face folder (config.json +
 * model.safetensors or model.safetensors.index.json shards), a GGUF v3 file
 * (recognised by its magic, any name) or a llama2.c checkpoint file (.bin, or
 * any file whose header describes a model of exactly the file's size); any
 * other file is SS_ERR_FORMAT naming the known formats. Weights stay in the
 * file's types (F32/F16/BF16/Q8_0/Q4_0; memory-mapped when use_mmap and the
 * data is aligned for its type) unless params->weights asks for a conversion.
 * On success *out owns the model; free it with ss_model_free after every
 * engine using it has been freed. On failure the message is also copied into
 * err[err_size] (NUL-terminated) when err != NULL. */
SS_API int ss_model_load(const char *path, const ss_model_params *params, ss_model **out, char *err,
                         size_t err_size);
SS_API void ss_model_free(ss_model *model);
SS_API int ss_model_get_info(const ss_model *model, ss_model_info *out);

/* ---- export: the model as GGUF tensors (for GGUF writers) --------------- */
/* One tensor of a model as a GGUF file of the llama architecture holds it. */
typedef struct ss_tensor_info {
  char name[64];     /* GGUF name: token_embd.weight, blk.<i>.attn_q.weight, ..., output_norm.weight,
                        output.weight (absent when the classifier is tied to the embeddings) */
  int32_t dtype;     /* ss_dtype of the exported data */
  int32_t n_dims;    /* 1 (norms) or 2 (matrices) */
  int64_t ne[2];     /* GGUF dimensions: ne[0] elements per row (the fastest), ne[1] rows (1 when 1-D) */
  int64_t row_bytes; /* bytes of one row in dtype */
} ss_tensor_info;

/* Number of tensors ss_model_export_info enumerates. SS_ERR_UNSUPPORTED for models GGUF's llama
 * architecture cannot hold (q/k/v biases). */
SS_API int ss_model_export_count(const ss_model *model, int32_t *out_n);
/* Tensor `index` (0 <= index < count) for a file whose weight matrices are of type `dtype`
 * (SS_WEIGHTS_AS_FILE: each matrix as loaded): matrices get `dtype`, or F16 when their rows are not a
 * whole number of blocks; norms are F32. */
SS_API int ss_model_export_info(const ss_model *model, int32_t index, int32_t dtype, ss_tensor_info *out);
/* Rows [row0, row0 + n_rows) of tensor `index`, converted as ss_model_export_info describes, into
 * dst (n_rows * row_bytes <= dst_size bytes). Q and K rows come in the adjacent-pair RoPE layout of GGUF
 * llama files. The weights are quantized exactly as ss_model_params.weights quantizes at load. */
SS_API int ss_model_export_rows(const ss_model *model, int32_t index, int32_t dtype, int64_t row0,
                                int64_t n_rows, void *dst, size_t dst_size);

/* ---- engine ------------------------------------------------------------ */
typedef struct ss_engine ss_engine;

typedef enum ss_backend { SS_BACKEND_CPU = 0, SS_BACKEND_CUDA = 1 } ss_backend;

typedef struct ss_engine_params {
  int32_t backend;          /* ss_backend (default SS_BACKEND_CPU) */
  int32_t n_threads;        /* CPU threads, 0 = all online cores (default 0) */
  int32_t max_sequences;    /* live sequences at once (default 1024) */
  int32_t max_batch_tokens; /* tokens in one step, all items (default 512) */
  int32_t device;           /* CUDA device ordinal (default 0) */
  int32_t kv_dtype;         /* ss_dtype of the KV cache: SS_KV_DTYPE_DEFAULT (the backend's own choice:
                               CPU F16, CUDA the model's half type), or on the CPU backend F32 or F16 */
  int32_t reserved[2];
} ss_engine_params;

/* ss_engine_params.kv_dtype: the backend's default KV element type. */
#define SS_KV_DTYPE_DEFAULT (-1)

SS_API ss_engine_params ss_engine_default_params(void);
/* Create an engine on `model` (borrowed: it must outlive the engine). On
 * failure the message is also copied into err[err_size] when err != NULL. */
SS_API int ss_engine_create(const ss_model *model, const ss_engine_params *params, ss_engine **out, char *err,
                            size_t err_size);
/* Frees the engine and every sequence still alive in it. */
SS_API void ss_engine_free(ss_engine *engine);
/* Message of the most recent failing call on `engine` that takes a non-const
 * ss_engine * ("" when none); valid until the next such call. */
SS_API const char *ss_engine_last_error(const ss_engine *engine);
/* KV-cache bytes one cached token takes in this engine: K and V of every layer
 * in the cache's element type (ss_engine_params.kv_dtype on CPU, f16/bf16 on
 * CUDA). 0 when engine is NULL. */
SS_API int64_t ss_engine_kv_bytes_per_token(const ss_engine *engine);
/* Whether a backend was compiled in and can run here (1) or not (0). */
SS_API int ss_backend_available(int32_t backend);

/* ---- sequences --------------------------------------------------------- */
typedef enum ss_policy {
  SS_POLICY_STREAMING = 0, /* first n_sinks tokens kept for ever + most recent; positions re-indexed */
  SS_POLICY_WINDOW = 1,    /* most recent `capacity` tokens, no sinks */
  SS_POLICY_DENSE = 2,     /* no eviction; SS_ERR_CONTEXT_FULL when full */
} ss_policy;

typedef struct ss_seq_params {
  int32_t policy;     /* ss_policy (default SS_POLICY_STREAMING) */
  int32_t n_sinks;    /* attention sinks for streaming (default 4; ignored otherwise) */
  int32_t capacity;   /* cache size W in tokens, sinks and newest token included;
                         0 = the model's max_seq_len (default 0); see ss_seq_limits */
  float temperature;  /* 0 = greedy (default 0) */
  int32_t top_k;      /* 0 = off (default 0) */
  float top_p;        /* 1 = off (default 1) */
  uint64_t seed;      /* sampling RNG seed (default 0) */
} ss_seq_params;

/* Cache statistics of one sequence. */
typedef struct ss_seq_stats {
  int32_t n_cached;   /* tokens in the cache now (<= capacity) */
  int32_t n_sinks;    /* sinks kept (0 for window / dense) */
  int32_t capacity;
  int32_t policy;
  int64_t n_seen;     /* tokens fed since creation */
  int64_t n_evicted;  /* tokens evicted since creation */
  int64_t cache_bytes;/* bytes of KV memory held now */
} ss_seq_stats;

/* Bounds of sequence settings in an engine (what ss_seq_check_params enforces,
 * for front ends that build request schemas). */
typedef struct ss_seq_limits {
  int32_t min_capacity;     /* smallest capacity */
  int32_t max_capacity;     /* largest capacity */
  int32_t default_capacity; /* what capacity 0 means: the model's max_seq_len */
  int32_t max_top_k;        /* largest top_k (top_k >= vocab_size keeps every token) */
  int32_t reserved[4];
} ss_seq_limits;

SS_API ss_seq_params ss_seq_default_params(void);
SS_API int ss_engine_get_limits(const ss_engine *engine, ss_seq_limits *out);
/* Check `params` exactly as ss_seq_create does, without creating anything:
 *   policy one of ss_policy; capacity 0 or in [min_capacity, max_capacity]
 *   (0 = default_capacity); streaming: 0 <= n_sinks < capacity (n_sinks is
 *   ignored otherwise); temperature finite and >= 0; 0 <= top_k <= max_top_k;
 *   top_p in (0, 1]. SS_ERR_INVALID_ARGUMENT with a message naming the field;
 *   *out_field (when out_field != NULL) = the field's name in ss_seq_params
 *   (static), or NULL when the params are valid. The only other reason
 *   ss_seq_create can fail is the engine's state (SS_ERR_LIMIT: max_sequences
 *   alive, or out of memory). */
SS_API int ss_seq_check_params(const ss_engine *engine, const ss_seq_params *params, const char **out_field);
/* Create a sequence; its id (>= 0, unique in the engine while alive) in *out_id.
 * KV memory grows on demand up to `capacity` tokens. */
SS_API int ss_seq_create(ss_engine *engine, const ss_seq_params *params, int32_t *out_id);
/* Free a sequence and its cache. SS_ERR_NOT_FOUND when unknown. */
SS_API int ss_seq_free(ss_engine *engine, int32_t seq_id);
/* Change sampling settings (temperature, top_k, top_p, seed; the seed resets
 * the RNG), checked as ss_seq_check_params does. Cache fields of `params` are
 * ignored. */
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
#define SS_STEP_MASK 4   /* sample only among the tokens the item's row of `masks` allows */

/* 32-bit words of one token mask row for a vocabulary of `vocab` tokens. Token t is allowed when bit
 * (t % 32) of word t / 32 is 1 (the bitmask layout of xgrammar and vLLM); bits of ids >= vocab are
 * ignored. */
#define SS_MASK_WORDS(vocab) (((vocab) + 31) / 32)

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
 * - out_status[i]: SS_OK, or why item i failed on its own.
 * `flags` may be NULL (= SS_STEP_SAMPLE for all).
 *
 * Item errors (checked before anything is computed): SS_ERR_NOT_FOUND
 * (unknown sequence), SS_ERR_INVALID_ARGUMENT (a second item of the same
 * sequence, token id out of range, bad target, unknown flags, SS_STEP_MASK
 * without masks: see ss_engine_step_masked),
 * SS_ERR_CONTEXT_FULL (dense sequence without room), SS_ERR_BACKEND (the
 * sequence is broken, see below), SS_ERR_OUT_OF_MEMORY (its KV storage
 * cannot grow). A failed item is not fed, its sequence is unchanged, its
 * out_tokens is -1, its logprob NaN, its logits row untouched; the other
 * items run exactly as if it were not in the step.
 * - With out_status: the step returns SS_OK when the healthy items ran (also
 *   when every item failed); each failure is in out_status[i] with its
 *   message in ss_engine_item_error(engine, i).
 * - With out_status == NULL: the first failing item fails the whole step
 *   with its status and message, and no sequence changes.
 *
 * Step errors (the return value, message in ss_engine_last_error; every item
 * that had not failed on its own gets the same status in out_status):
 * - SS_ERR_INVALID_ARGUMENT (NULL engine or arrays, n_items < 0, an n_tokens
 *   < 1: the token layout is undefined), SS_ERR_LIMIT (more tokens than
 *   max_batch_tokens), SS_ERR_OUT_OF_MEMORY (the step's logits): nothing was
 *   computed and no sequence changed.
 * - A backend failure during the forward pass (SS_ERR_BACKEND, or what the
 *   backend returned): the items' KV storage may be partly overwritten, and
 *   the engine cannot tell how far the backend got. Every sequence fed in
 *   that step is marked broken: its n_seen / stats / cache indices stay as
 *   before the step, ss_seq_get_stats, ss_seq_set_sampling and ss_seq_free
 *   still work, and every later step item on it fails with SS_ERR_BACKEND
 *   naming the original cause. Free it (its session must start over).
 *   Sequences not in that step are untouched. */
SS_API int ss_engine_step(ss_engine *engine, int32_t n_items, const int32_t *seq_ids, const int32_t *n_tokens,
                          const int32_t *tokens, const int32_t *flags, const int32_t *targets,
                          int32_t *out_tokens, float *out_logits, float *out_target_logprobs, int32_t *out_status);
/* ss_engine_step with a token mask per item (constrained decoding, e.g. a JSON grammar). `masks` is
 * NULL or n_items rows of SS_MASK_WORDS(vocab_size) words, row i for item i (borrowed: read during
 * the call only). Row i is read only when flags[i] & SS_STEP_MASK; the rows of other items may hold
 * anything. For a masked item the sampler gives every token the mask does not allow probability 0,
 * greedy and temperature / top-k / top-p alike: the argmax is taken over the allowed tokens, and top_k
 * and top_p cut the distribution renormalised over them (as if the other logits were -inf). Logits
 * (out_logits) and target logprobs are the model's, unmasked. Items without SS_STEP_MASK sample
 * exactly as ss_engine_step samples them, so a batch's unconstrained items give the tokens they give
 * alone. Item errors besides ss_engine_step's (the item is not fed, as there): SS_ERR_INVALID_ARGUMENT
 * for SS_STEP_MASK with masks == NULL, SS_ERR_EMPTY_MASK for a row that allows no id < vocab_size.
 * ss_engine_step(...) is ss_engine_step_masked(..., targets, NULL, ...). */
SS_API int ss_engine_step_masked(ss_engine *engine, int32_t n_items, const int32_t *seq_ids,
                                 const int32_t *n_tokens, const int32_t *tokens, const int32_t *flags,
                                 const int32_t *targets, const uint32_t *masks, int32_t *out_tokens,
                                 float *out_logits, float *out_target_logprobs, int32_t *out_status);
/* Message of item `item` of the engine's most recent step ("" when it did not
 * fail or is out of range); valid until the next ss_engine_step. */
SS_API const char *ss_engine_item_error(const ss_engine *engine, int32_t item);

#ifdef __cplusplus
}
#endif
#endif /* SINKSTREAM_H */
