/**
 * `deno task start` with a GGUF model (no --tokenizer: the file has one), --weights and --kv-dtype:
 * /v1/models reports the weight type, the bytes read per token and the KV bytes per token, and a chat
 * completion runs. A bad --weights value is one line, exit 2. Runs gateway/main.ts as a subprocess.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { convertToGguf } from "../../tools/lib/convert.ts";
import { modelPath } from "./_gateway.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function cli(model: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "gateway/main.ts", "--model", model, "--port", "0", "--threads", "1", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
}

/** Start, wait for the URL, run `fn` against it, stop. */
async function withServer(model: string, args: string[], fn: (url: string) => Promise<void>): Promise<void> {
  const child = cli(model, args);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on (\S+)/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  try {
    const url = /listening on (\S+)/.exec(seen)?.[1];
    assert.ok(url, seen);
    await fn(url.replace(/\/$/, ""));
  } finally {
    child.kill("SIGTERM");
    await reader.cancel();
    await child.status;
    await child.stderr.cancel();
  }
}

Deno.test("gateway on a GGUF file with --weights q4_0 --kv-dtype f32: /v1/models reports the weights", async () => {
  await ensureNativeLibrary();
  const dir = await Deno.makeTempDir({ prefix: "ss_gw_gguf_" });
  try {
    const gguf = `${dir}/stories260K-f16.gguf`;
    await convertToGguf({ input: modelPath(), output: gguf, dtype: "f16" });
    const seen: Record<string, unknown>[] = [];
    for (const args of [[], ["--weights", "q4_0", "--kv-dtype", "f32"]]) {
      await withServer(gguf, args, async (url) => {
        const m = await (await fetch(`${url}/v1/models`)).json();
        seen.push(m.data[0].sinkstream);
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
        });
        assert.equal(r.status, 200);
        assert.equal((await r.json()).usage.completion_tokens, 4);
      });
    }
    const [asFile, q4] = seen as {
      weight_dtype: string;
      source_dtype: string;
      format: string;
      weight_bytes_per_token: number;
      kv_bytes_per_token: number;
    }[];
    assert.equal(asFile.format, "gguf");
    assert.deepEqual([asFile.weight_dtype, asFile.source_dtype, q4.weight_dtype, q4.source_dtype], [
      "f16",
      "f16",
      "q4_0",
      "f16",
    ]);
    assert.ok(q4.weight_bytes_per_token < 0.7 * asFile.weight_bytes_per_token, JSON.stringify(seen));
    assert.equal(q4.kv_bytes_per_token, 2 * asFile.kv_bytes_per_token); // f32 cache vs the default f16
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start with --weights q5_k: one line naming the option, exit 2", async () => {
  const out = await cli(modelPath(), ["--weights", "q5_k"]).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 2, stderr);
  assert.match(stderr, /weights/);
  assert.ok(stderr.split("\n").length <= 3, stderr);
});
