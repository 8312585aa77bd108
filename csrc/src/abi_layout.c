/*
 * abi_layout.c — compile-time checks of the public structs' layout.
 *
 * Field offsets and sizes of the params / info / stats structs are part of the
 * ABI: bindings (runtime/ffi.ts) fill and read them by byte offset, as
 * documented in include/sinkstream.h. A change here is an ABI change.
 */
#include <stddef.h>

#include "../include/sinkstream.h"

#define ABI_OFF(type, field, off) _Static_assert(offsetof(type, field) == (off), #type "." #field " offset")
#define ABI_SIZE(type, size) _Static_assert(sizeof(type) == (size), "sizeof " #type)

ABI_OFF(ss_model_params, use_mmap, 0);
ABI_OFF(ss_model_params, reserved, 4);
ABI_SIZE(ss_model_params, 32);

ABI_OFF(ss_model_info, arch, 0);
ABI_OFF(ss_model_info, dim, 4);
ABI_OFF(ss_model_info, hidden_dim, 8);
ABI_OFF(ss_model_info, n_layers, 12);
ABI_OFF(ss_model_info, n_heads, 16);
ABI_OFF(ss_model_info, n_kv_heads, 20);
ABI_OFF(ss_model_info, head_dim, 24);
ABI_OFF(ss_model_info, vocab_size, 28);
ABI_OFF(ss_model_info, max_seq_len, 32);
ABI_OFF(ss_model_info, bos_token_id, 36);
ABI_OFF(ss_model_info, eos_token_id, 40);
ABI_OFF(ss_model_info, source_dtype, 44);
ABI_OFF(ss_model_info, rope_theta, 48);
ABI_OFF(ss_model_info, rms_norm_eps, 52);
ABI_OFF(ss_model_info, n_params, 56);
ABI_SIZE(ss_model_info, 64);

ABI_OFF(ss_engine_params, backend, 0);
ABI_OFF(ss_engine_params, n_threads, 4);
ABI_OFF(ss_engine_params, max_sequences, 8);
ABI_OFF(ss_engine_params, max_batch_tokens, 12);
ABI_OFF(ss_engine_params, device, 16);
ABI_OFF(ss_engine_params, reserved, 20);
ABI_SIZE(ss_engine_params, 32);

ABI_OFF(ss_seq_params, policy, 0);
ABI_OFF(ss_seq_params, n_sinks, 4);
ABI_OFF(ss_seq_params, capacity, 8);
ABI_OFF(ss_seq_params, temperature, 12);
ABI_OFF(ss_seq_params, top_k, 16);
ABI_OFF(ss_seq_params, top_p, 20);
ABI_OFF(ss_seq_params, seed, 24);
ABI_SIZE(ss_seq_params, 32);

ABI_OFF(ss_seq_stats, n_cached, 0);
ABI_OFF(ss_seq_stats, n_sinks, 4);
ABI_OFF(ss_seq_stats, capacity, 8);
ABI_OFF(ss_seq_stats, policy, 12);
ABI_OFF(ss_seq_stats, n_seen, 16);
ABI_OFF(ss_seq_stats, n_evicted, 24);
ABI_OFF(ss_seq_stats, cache_bytes, 32);
ABI_SIZE(ss_seq_stats, 40);
