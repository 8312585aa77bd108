/**
 * sinkstream public API: the engine seam types, the native engine over the C library,
 * tokenizers and the incremental detokenizer, and the typed errors.
 */
export type * from "./runtime/types.ts";
export * from "./runtime/errors.ts";
export {
  CUDA_LIB,
  ensureNativeLibrary,
  type EnsureNativeLibraryOptions,
  nativeLibraryPath,
  nativeLibraryStale,
} from "./runtime/ffi.ts";
export {
  backendUnavailableReason,
  createEngine,
  type EngineOptions,
  isBackendAvailable,
  loadModel,
  type LoadModelOptions,
  Model,
  NativeEngine,
} from "./runtime/native_engine.ts";
export { HfTokenizer, Llama2cTokenizer, loadTokenizer } from "./runtime/tokenizer/mod.ts";
export { Detokenizer, type DetokenizerOptions } from "./runtime/detokenizer.ts";
