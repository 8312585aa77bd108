/**
 * Picking the CUDA build of the library (runtime/ffi.ts ensureCudaLibrary): a missing build with no
 * nvcc is a one-line NativeLibraryError; a stale build with no nvcc is used as it is; a current one
 * is used without looking for nvcc. Nothing is compiled here.
 */
import assert from "node:assert/strict";
import { ensureCudaLibrary } from "../../runtime/ffi.ts";
import { NativeLibraryError } from "../../runtime/errors.ts";

const NO_NVCC = "/nonexistent/nvcc";

Deno.test("cuda library: missing and no nvcc -> one-line NativeLibraryError naming nvcc", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/libsinkstream.so`;
    const err = await ensureCudaLibrary(path, { nvcc: NO_NVCC }).then(() => null, (e) => e);
    assert.ok(err instanceof NativeLibraryError, String(err));
    assert.equal(err.message.split("\n").length, 1);
    assert.match(err.message, /nvcc/);
    assert.ok(err.message.includes(path));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cuda library: stale without nvcc is used as it is; current is used without nvcc", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/libsinkstream.so`;
    await Deno.writeFile(path, new Uint8Array(1));
    await Deno.utime(path, new Date(0), new Date(0)); // older than every source: stale
    assert.equal(await ensureCudaLibrary(path, { nvcc: NO_NVCC }), path);
    const future = new Date(Date.now() + 86_400_000);
    await Deno.utime(path, future, future);
    let built = false;
    assert.equal(await ensureCudaLibrary(path, { nvcc: NO_NVCC, onBuild: () => (built = true) }), path);
    assert.equal(built, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
