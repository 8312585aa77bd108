/**
 * `deno task start --backend cuda` (gateway/main.ts as a subprocess): it must pick the CUDA build of
 * the library (csrc/build/cuda/libsinkstream.so) and, on a machine without a GPU, stop with one
 * clear line — not a stack trace. SINKSTREAM_NVCC points at no compiler so the test never starts
 * a multi-minute nvcc build (a stale CUDA build is used as it is; a missing one is its own error).
 * On a machine with an NVIDIA driver the test is ignored with a visible message.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { modelPath } from "./_gateway.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CPU_LIB = `${ROOT}csrc/build/libsinkstream.so`;
const hasGpu = (() => {
  try {
    Deno.statSync("/dev/nvidiactl");
    return true;
  } catch {
    return false;
  }
})();
if (hasGpu) console.log("SKIP main_backend.test.ts: an NVIDIA driver is present (tests the no-GPU path)");

async function start(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "gateway/main.ts", "--backend", "cuda", "--model", modelPath(), "--port", "0"],
    cwd: ROOT,
    env: { SINKSTREAM_NVCC: "/nonexistent/nvcc", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  });
  const out = await cmd.output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
}

Deno.test({
  name: "start --backend cuda without a GPU: exit 2 with one line naming the CUDA library",
  ignore: hasGpu,
  async fn() {
    const { code, stderr } = await start({});
    assert.equal(code, 2, stderr);
    assert.equal(stderr.split("\n").length, 1, `expected one line, got:\n${stderr}`);
    assert.match(stderr, /^sinkstream: --backend cuda: /);
    // The CUDA build was chosen: the message names it (no GPU) or says it cannot be built (no nvcc).
    assert.ok(stderr.includes("csrc/build/cuda/libsinkstream.so"), stderr);
    assert.match(stderr, /no GPU found|nvcc/);
    assert.doesNotMatch(stderr, /Uncaught|\n\s+at /);
  },
});

Deno.test({
  name: "start --backend cuda: SINKSTREAM_LIB overrides the choice (a CPU-only library: clear line)",
  ignore: hasGpu,
  async fn() {
    const { code, stderr } = await start({ SINKSTREAM_LIB: CPU_LIB });
    assert.equal(code, 2, stderr);
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.ok(stderr.includes(`SINKSTREAM_LIB=${CPU_LIB}`), stderr);
    assert.doesNotMatch(stderr, /csrc\/build\/cuda\//);
  },
});
