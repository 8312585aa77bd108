/**
 * The CUDA backend behind the real gateway, on a machine without a GPU: the library built against
 * the CUDA emulator (csrc/tests/cuda_emu; `make -C csrc cuda-emu`, which `deno task test` runs
 * first) is loaded with SINKSTREAM_LIB, so the FFI binding, the gateway and the CUDA backend's host
 * code and kernels all run for real; only the device is emulated.
 *   - `deno task start --backend cuda` (gateway/main.ts as a subprocess) serves a greedy chat
 *     completion whose text equals the CPU backend's through a window small enough to evict, and a
 *     structured one (json_schema: token masks in the engine's sampler) that validates and equals it too;
 *   - tests/runtime/cuda_backend.test.ts, whose GPU tests are ignored without a GPU, runs against the
 *     emulated library in a subprocess and must run (not ignore) its CUDA-vs-CPU test.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { modelPath } from "./_gateway.ts";
import { assertValid, PET_SCHEMA } from "./grammar/_schemas.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const EMU_LIB = `${ROOT}csrc/build/cuda-emu/libsinkstream.so`;

async function ensureEmulatedLibrary(): Promise<void> {
  const out = await new Deno.Command("make", {
    args: ["-C", "csrc", "--no-print-directory", "build/cuda-emu/libsinkstream.so"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

/** Start gateway/main.ts on the emulated library; resolves with its base URL once it listens. */
async function startGateway(backend: "cpu" | "cuda") {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "gateway/main.ts", "--backend", backend, "--model", modelPath(), "--port", "0"]
      .concat(
        ["--window", "24", "--sinks", "4", "--host", "127.0.0.1"],
      ),
    cwd: ROOT,
    env: { SINKSTREAM_LIB: EMU_LIB },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
    const m = /listening on (http:\/\/\S+?)\/?\n/.exec(seen);
    if (m) {
      void reader.cancel().catch(() => {});
      return { url: m[1], banner: seen, child };
    }
  }
  child.kill("SIGKILL");
  const err = await new Response(child.stderr).text();
  throw new Error(`gateway (${backend}) did not start:\n${seen}\n${err}`);
}

async function stop(child: Deno.ChildProcess) {
  child.kill("SIGTERM");
  await child.status;
  await child.stderr.cancel().catch(() => {});
}

async function complete(
  url: string,
  extra: Record<string, unknown> = {},
): Promise<{ text: string; usage: Record<string, number> }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "stories260K",
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 60,
      temperature: 0,
      ...extra,
    }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const body = await res.json();
  return { text: body.choices[0].message.content, usage: body.usage };
}

/** A greedy completion from gateway/main.ts started with `--backend`; checks the banner names it. */
async function completeOn(backend: "cpu" | "cuda") {
  const gw = await startGateway(backend);
  try {
    assert.match(gw.banner, new RegExp(`params, ${backend}\\)`), gw.banner);
    const plain = await complete(gw.url);
    const json = await complete(gw.url, {
      max_tokens: 300,
      response_format: { type: "json_schema", json_schema: { name: "pet", schema: PET_SCHEMA } },
    });
    return { ...plain, json: json.text };
  } finally {
    await stop(gw.child);
  }
}

Deno.test("deno task start --backend cuda on the emulated CUDA backend: same greedy and structured text as --backend cpu", async () => {
  await ensureEmulatedLibrary();
  const cudaOut = await completeOn("cuda");
  const cpuOut = await completeOn("cpu");
  assert.ok(cudaOut.text.length > 40, cudaOut.text);
  const total = cudaOut.usage.prompt_tokens + cudaOut.usage.completion_tokens;
  assert.ok(total > 24 + 20, `${total} tokens through a 24-token cache: evictions happened`);
  assert.equal(cudaOut.text, cpuOut.text);
  assertValid(cudaOut.json, PET_SCHEMA, "structured output on the CUDA backend");
  assert.equal(cudaOut.json, cpuOut.json);
});

Deno.test("runtime cuda_backend tests run (not ignored) on the emulated CUDA backend and pass", async () => {
  await ensureEmulatedLibrary();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "tests/runtime/cuda_backend.test.ts"],
    cwd: ROOT,
    env: { SINKSTREAM_LIB: EMU_LIB, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(300_000),
  }).output();
  const log = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, log);
  assert.match(log, /greedy tokens equal the cpu backend's across evictions .* \.\.\. ok/);
  assert.match(log, /1 passed \| 0 failed \| 1 ignored/);
});
