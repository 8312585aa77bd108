/*
 * abi_layout.c — ss_abi_layout(): the public structs' sizes and field offsets and the header's
 * constants, as the compiler that built the library lays them out. Bindings (runtime/ffi.ts) name
 * their own copy of the layout once and check it against this table when they open the library, so a
 * changed struct is caught at load time instead of corrupting memory. A field added to a public
 * struct belongs here too.
 */
#include <stddef.h>

#include "../include/sinkstream.h"

#define STRUCT(type) {#type, (int64_t)sizeof(type), (int64_t)_Alignof(type)}
#define FIELD(type, field) {#type "." #field, (int64_t)offsetof(type, field), (int64_t)sizeof(((type *)0)->field)}
#define CONSTANT(name) {#name, (int64_t)(name), 0}

static const ss_abi_entry layout[] = {
    STRUCT(ss_model_params),
    FIELD(ss_model_params, use_mmap),
    FIELD(ss_model_params, weights),
    FIELD(ss_model_params, reserved),

    STRUCT(ss_model_info),
    FIELD(ss_model_info, arch),
    FIELD(ss_model_info, dim),
    FIELD(ss_model_info, hidden_dim),
    FIELD(ss_model_info, n_layers),
    FIELD(ss_model_info, n_heads),
    FIELD(ss_model_info, n_kv_heads),
    FIELD(ss_model_info, head_dim),
    FIELD(ss_model_info, vocab_size),
    FIELD(ss_model_info, max_seq_len),
    FIELD(ss_model_info, bos_token_id),
    FIELD(ss_model_info, eos_token_id),
    FIELD(ss_model_info, source_dtype),
    FIELD(ss_model_info, rope_theta),
    FIELD(ss_model_info, rms_norm_eps),
    FIELD(ss_model_info, n_params),
    FIELD(ss_model_info, format),
    FIELD(ss_model_info, weight_dtype),
    FIELD(ss_model_info, weight_bytes),

    STRUCT(ss_engine_params),
    FIELD(ss_engine_params, backend),
    FIELD(ss_engine_params, n_threads),
    FIELD(ss_engine_params, max_sequences),
    FIELD(ss_engine_params, max_batch_tokens),
    FIELD(ss_engine_params, device),
    FIELD(ss_engine_params, kv_dtype),
    FIELD(ss_engine_params, reserved),

    STRUCT(ss_seq_params),
    FIELD(ss_seq_params, policy),
    FIELD(ss_seq_params, n_sinks),
    FIELD(ss_seq_params, capacity),
    FIELD(ss_seq_params, temperature),
    FIELD(ss_seq_params, top_k),
    FIELD(ss_seq_params, top_p),
    FIELD(ss_seq_params, seed),

    STRUCT(ss_seq_stats),
    FIELD(ss_seq_stats, n_cached),
    FIELD(ss_seq_stats, n_sinks),
    FIELD(ss_seq_stats, capacity),
    FIELD(ss_seq_stats, policy),
    FIELD(ss_seq_stats, n_seen),
    FIELD(ss_seq_stats, n_evicted),
    FIELD(ss_seq_stats, cache_bytes),

    STRUCT(ss_seq_limits),
    FIELD(ss_seq_limits, min_capacity),
    FIELD(ss_seq_limits, max_capacity),
    FIELD(ss_seq_limits, default_capacity),
    FIELD(ss_seq_limits, max_top_k),
    FIELD(ss_seq_limits, reserved),

    STRUCT(ss_tensor_info),
    FIELD(ss_tensor_info, name),
    FIELD(ss_tensor_info, dtype),
    FIELD(ss_tensor_info, n_dims),
    FIELD(ss_tensor_info, ne),
    FIELD(ss_tensor_info, row_bytes),

    STRUCT(ss_abi_entry),
    FIELD(ss_abi_entry, name),
    FIELD(ss_abi_entry, value),
    FIELD(ss_abi_entry, size),

    CONSTANT(SS_ABI_VERSION),
    CONSTANT(SS_ERROR_MAX),
    CONSTANT(SS_OK),
    CONSTANT(SS_ARCH_LLAMA),
    CONSTANT(SS_ARCH_MISTRAL),
    CONSTANT(SS_ARCH_QWEN2),
    CONSTANT(SS_DTYPE_F32),
    CONSTANT(SS_DTYPE_F16),
    CONSTANT(SS_DTYPE_BF16),
    CONSTANT(SS_DTYPE_Q8_0),
    CONSTANT(SS_DTYPE_Q4_0),
    CONSTANT(SS_WEIGHTS_AS_FILE),
    CONSTANT(SS_KV_DTYPE_DEFAULT),
    CONSTANT(SS_FORMAT_HF),
    CONSTANT(SS_FORMAT_LLAMA2C),
    CONSTANT(SS_FORMAT_GGUF),
    CONSTANT(SS_BACKEND_CPU),
    CONSTANT(SS_BACKEND_CUDA),
    CONSTANT(SS_POLICY_STREAMING),
    CONSTANT(SS_POLICY_WINDOW),
    CONSTANT(SS_POLICY_DENSE),
    CONSTANT(SS_STEP_SAMPLE),
    CONSTANT(SS_STEP_LOGITS),
    CONSTANT(SS_STEP_MASK),
};

const ss_abi_entry *ss_abi_layout(int32_t *out_n) {
  if (out_n) *out_n = (int32_t)(sizeof layout / sizeof layout[0]);
  return layout;
}
