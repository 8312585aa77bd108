/**
 * FFI binding of csrc/include/sinkstream.h. The only module that calls Deno.dlopen.
 *
 * Library path: env SINKSTREAM_LIB, else the repo build chosen by ensureNativeLibrary():
 * <repo>/csrc/build/libsinkstream.so (CPU only, `make -C csrc`) or, for the CUDA backend,
 * <repo>/csrc/build/cuda/libsinkstream.so (`make -C csrc cuda-check`, CPU + CUDA backends).
 * Compute calls (model load, engine create, engine step) are `nonblocking`: they run
 * on a Deno worker thread and return promises. Since ss_last_error() is thread-local,
 * failures of those calls are described by ss_last_error_global() (the most recent
 * message of any thread).
 */
import { fileURLToPath } from "node:url";
import { errorFromStatus, NativeLibraryError, type SinkstreamError } from "./errors.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const CSRC_DIR = fileURLToPath(new URL("../csrc", import.meta.url));
const DEFAULT_LIB = fileURLToPath(new URL("../csrc/build/libsinkstream.so", import.meta.url));
/** The library with the CUDA backend compiled in (it also has the CPU backend). */
export const CUDA_LIB: string = fileURLToPath(
  new URL("../csrc/build/cuda/libsinkstream.so", import.meta.url),
);
const KERNELS_DIR = fileURLToPath(new URL("../kernels", import.meta.url));

/** Byte sizes and offsets of the ABI structs (see sinkstream.h). */
export const ABI = {
  version: 1,
  modelParamsSize: 32,
  modelInfoSize: 64,
  engineParamsSize: 32,
  seqParamsSize: 32,
  seqStatsSize: 40,
} as const;

const I32x8 = { struct: ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"] } as const;
const SEQ_PARAMS = { struct: ["i32", "i32", "i32", "f32", "i32", "f32", "u64"] } as const;

const SYMBOLS = {
  ss_last_error: { parameters: [], result: "pointer" },
  ss_last_error_global: { parameters: [], result: "pointer", optional: true },
  ss_status_name: { parameters: ["i32"], result: "pointer" },
  ss_abi_version: { parameters: [], result: "i32" },

  ss_model_default_params: { parameters: [], result: I32x8 },
  ss_model_load: { parameters: ["buffer", "buffer", "buffer"], result: "i32", nonblocking: true },
  ss_model_free: { parameters: ["pointer"], result: "void" },
  ss_model_get_info: { parameters: ["pointer", "buffer"], result: "i32" },

  ss_engine_default_params: { parameters: [], result: I32x8 },
  ss_engine_create: { parameters: ["pointer", "buffer", "buffer"], result: "i32", nonblocking: true },
  ss_engine_free: { parameters: ["pointer"], result: "void" },
  ss_backend_available: { parameters: ["i32"], result: "i32" },

  ss_seq_default_params: { parameters: [], result: SEQ_PARAMS },
  ss_seq_create: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ss_seq_free: { parameters: ["pointer", "i32"], result: "i32" },
  ss_seq_set_sampling: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  ss_seq_get_stats: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  ss_seq_get_cache_indices: {
    parameters: ["pointer", "i32", "buffer", "i32", "buffer"],
    result: "i32",
  },

  ss_engine_step: {
    parameters: [
      "pointer", // engine
      "i32", // n_items
      "buffer", // seq_ids
      "buffer", // n_tokens
      "buffer", // tokens
      "buffer", // flags
      "buffer", // targets
      "buffer", // out_tokens
      "buffer", // out_logits
      "buffer", // out_target_logprobs
    ],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

export type NativeSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;
/** The repo build ensureNativeLibrary() picked (CUDA_LIB for the cuda backend); null = DEFAULT_LIB. */
let selected: string | null = null;
let loadedPath: string | null = null;

/** Path of the native library this process uses (env SINKSTREAM_LIB, else the repo build picked). */
export function nativeLibraryPath(): string {
  return loadedPath ?? (Deno.env.get("SINKSTREAM_LIB") || selected || DEFAULT_LIB);
}

/** Whether the library in use is the repo's CUDA build (false for SINKSTREAM_LIB: unknown build). */
export function usingRepoCudaLibrary(): boolean {
  return !Deno.env.get("SINKSTREAM_LIB") && nativeLibraryPath() === CUDA_LIB;
}

/** Whether the library has been opened in this process. */
export function nativeLoaded(): boolean {
  return lib !== null;
}

/** Open the library (once per process) and return its symbols. Throws NativeLibraryError. */
export function native(): NativeSymbols {
  if (lib) return lib.symbols;
  const path = nativeLibraryPath();
  try {
    lib = Deno.dlopen(path, SYMBOLS);
    loadedPath = path;
  } catch (e) {
    throw new NativeLibraryError(
      `cannot open native library ${path}: ${(e as Error).message}` +
        ` (build it with \`make -C csrc\` or call ensureNativeLibrary())`,
      { cause: e },
    );
  }
  const v = lib.symbols.ss_abi_version();
  if (v !== ABI.version) {
    lib.close();
    lib = null;
    loadedPath = null;
    throw new NativeLibraryError(`${path}: ABI version ${v}, this binding expects ${ABI.version}`);
  }
  return lib.symbols;
}

/** Read a NUL-terminated C string (empty for null). */
export function cString(ptr: Deno.PointerValue): string {
  if (ptr === null) return "";
  return Deno.UnsafePointerView.getCString(ptr);
}

/** NUL-terminated UTF-8 bytes of a JS string, for `buffer` parameters. */
export function toCString(s: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder().encode(s);
  const out = new Uint8Array(enc.length + 1);
  out.set(enc);
  return out;
}

/** Last error of the calling (main) thread; for synchronous calls. */
export function lastError(): string {
  return cString(native().ss_last_error());
}

/** Most recent error of any thread; for nonblocking calls (falls back to the thread-local one). */
export function lastErrorGlobal(): string {
  const s = native();
  if (s.ss_last_error_global) return cString(s.ss_last_error_global());
  return cString(s.ss_last_error());
}

/** Throw the typed error of a failing synchronous call. */
export function check(status: number, context?: string): void {
  if (status !== 0) throw makeError(status, lastError(), context);
}

/** Throw the typed error of a failing nonblocking call. */
export function checkAsync(status: number, context?: string): void {
  if (status !== 0) throw makeError(status, lastErrorGlobal(), context);
}

function makeError(status: number, message: string, context?: string): SinkstreamError {
  return errorFromStatus(status, context && !message ? context : message);
}

/** Whether a backend ("cpu" = 0, "cuda" = 1) is compiled in and usable. */
export function backendAvailable(backend: number): boolean {
  return native().ss_backend_available(backend) === 1;
}

// ---- building the library -------------------------------------------------

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      const p = `${dir}/${entry.name}`;
      if (entry.isDirectory) {
        newest = Math.max(newest, await newestMtime(p));
      } else if (entry.isFile) {
        const st = await Deno.stat(p);
        newest = Math.max(newest, st.mtime?.getTime() ?? 0);
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return newest;
}

async function mtimeOf(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Whether a repo build of the library is missing or older than a csrc source / header / Makefile
 * (and, for the CUDA build, a kernels/ file).
 */
export function nativeLibraryStale(backend: "cpu" | "cuda" = "cpu"): Promise<boolean> {
  return libraryStale(backend === "cuda" ? CUDA_LIB : DEFAULT_LIB, backend === "cuda");
}

async function libraryStale(path: string, cuda: boolean): Promise<boolean> {
  const lib = await mtimeOf(path);
  if (lib === null) return true;
  let newest = Math.max(await newestMtime(`${CSRC_DIR}/src`), await newestMtime(`${CSRC_DIR}/include`));
  for (const f of ["Makefile", "cuda.mk"]) {
    newest = Math.max(newest, (await mtimeOf(`${CSRC_DIR}/${f}`)) ?? 0);
  }
  if (cuda) newest = Math.max(newest, await newestMtime(KERNELS_DIR));
  return newest > lib;
}

export interface EnsureNativeLibraryOptions {
  /** Keep make's output unless the build fails (default true). */
  quiet?: boolean;
  /**
   * Backend the process will use (default "cpu"). "cuda" picks csrc/build/cuda/libsinkstream.so,
   * built with `make -C csrc cuda-check` when missing or stale and nvcc is available.
   */
  backend?: "cpu" | "cuda";
  /** Called before a (possibly long) build starts, with a one-line description. */
  onBuild?: (what: string) => void;
}

let ensuring: Promise<string> | null = null;

/**
 * Make sure the native library exists and is current, and pick it for this process; returns its
 * path. With SINKSTREAM_LIB set, only checks that the file exists (it wins for every backend).
 * Otherwise runs make (under flock, so parallel test processes don't race) when the library is
 * missing or older than any file it is built from:
 *  - backend "cpu" (default): `make -C csrc lib` -> csrc/build/libsinkstream.so;
 *  - backend "cuda": `make -C csrc cuda-check` -> csrc/build/cuda/libsinkstream.so. Needs nvcc
 *    (`SINKSTREAM_NVCC`, default `nvcc` on PATH); without it an existing (stale) CUDA build is
 *    used, and a missing one is a NativeLibraryError with a one-line message.
 * A process opens one library: once opened, a later call cannot switch it (the CUDA build also has
 * the CPU backend, so cpu after cuda is fine; cuda after the CPU library is an error).
 */
export function ensureNativeLibrary(opts: EnsureNativeLibraryOptions = {}): Promise<string> {
  const prev = ensuring ?? Promise.resolve("");
  const next = prev.catch(() => "").then(() => doEnsure(opts));
  ensuring = next;
  return next;
}

async function doEnsure(opts: EnsureNativeLibraryOptions): Promise<string> {
  const quiet = opts.quiet ?? true;
  const env = Deno.env.get("SINKSTREAM_LIB");
  if (env) {
    if ((await mtimeOf(env)) === null) throw new NativeLibraryError(`SINKSTREAM_LIB=${env} does not exist`);
    return env;
  }
  if (opts.backend === "cuda") {
    if (lib && loadedPath !== CUDA_LIB) {
      throw new NativeLibraryError(
        `the CPU-only library ${loadedPath} is already loaded in this process; the cuda backend needs ${CUDA_LIB}`,
      );
    }
    const path = lib ? CUDA_LIB : await ensureCudaLibrary(CUDA_LIB, {
      nvcc: Deno.env.get("SINKSTREAM_NVCC") || "nvcc",
      quiet,
      onBuild: opts.onBuild,
    });
    selected = path;
    return path;
  }
  if (lib) return nativeLibraryPath(); // already opened: a rebuild would not be picked up
  if (await libraryStale(DEFAULT_LIB, false)) {
    opts.onBuild?.(`building ${DEFAULT_LIB} (make -C csrc lib)`);
    await runMake(["lib"], quiet, DEFAULT_LIB);
  }
  return DEFAULT_LIB;
}

/**
 * @internal (exported for tests) Make sure the CUDA build at `path` exists, rebuilding it with
 * `make -C csrc cuda-check NVCC=<nvcc>` when it is missing or stale and nvcc can be found.
 */
export async function ensureCudaLibrary(
  path: string,
  opts: { nvcc: string; quiet?: boolean; onBuild?: (what: string) => void },
): Promise<string> {
  const exists = (await mtimeOf(path)) !== null;
  const stale = !exists || await libraryStale(path, true);
  if (!stale) return path;
  const hasNvcc = await commandExists(opts.nvcc);
  if (!hasNvcc) {
    if (exists) return path; // stale, but nothing to rebuild it with: use what is there
    throw new NativeLibraryError(
      `the cuda backend needs ${path}, which is not built, and nvcc ("${opts.nvcc}") is not on PATH to ` +
        `build it (install the CUDA toolkit, set SINKSTREAM_NVCC or SINKSTREAM_LIB, or use --backend cpu)`,
    );
  }
  if (path !== CUDA_LIB) {
    throw new NativeLibraryError(
      `cannot build ${path}: only ${CUDA_LIB} is built by make -C csrc cuda-check`,
    );
  }
  opts.onBuild?.(`building ${path} with nvcc (make -C csrc cuda-check); this takes a few minutes`);
  await runMake(["cuda-check", `NVCC=${opts.nvcc}`], opts.quiet ?? true, path);
  return path;
}

async function runMake(targets: string[], quiet: boolean, product: string): Promise<void> {
  await Deno.mkdir(`${CSRC_DIR}/build`, { recursive: true });
  const hasFlock = await commandExists("flock");
  const what = `make -C csrc ${targets.join(" ")}`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(hasFlock ? "flock" : "make", {
      args: hasFlock
        ? [`${CSRC_DIR}/build/.build.lock`, "make", "-C", CSRC_DIR, ...targets]
        : ["-C", CSRC_DIR, ...targets],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new NativeLibraryError(`cannot run make to build the native library: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const dec = new TextDecoder();
  if (!out.success) {
    throw new NativeLibraryError(
      `building the native library failed (${what}, exit ${out.code}):\n${dec.decode(out.stdout)}${
        dec.decode(out.stderr)
      }`,
    );
  }
  if (!quiet) {
    await Deno.stderr.write(out.stdout);
    await Deno.stderr.write(out.stderr);
  }
  if ((await mtimeOf(product)) === null) {
    throw new NativeLibraryError(`${what} succeeded but ${product} is missing`);
  }
}

async function commandExists(name: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", 'command -v "$1"', "sh", name],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}
