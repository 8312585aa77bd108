/** Config: flags > env > file > defaults, zod validation with clear one-line messages; model resolution. */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../../gateway/config/config.ts";
import { DEFAULT_MODEL, parseHfSpec, resolveModel } from "../../../gateway/config/model.ts";

Deno.test("config: defaults", () => {
  const { config } = loadConfig();
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.port, 8000);
  assert.equal(config.sinks, 4);
  assert.equal(config.backend, "cpu");
  assert.equal(config.policy, "streaming");
  assert.deepEqual(config.apiKeys, []);
  assert.equal(config.model, undefined);
});

Deno.test("config: flags override env override file", () => {
  const file = JSON.stringify({ port: 7000, sinks: 2, window: 100, host: "0.0.0.0" });
  const { config } = loadConfig({
    args: ["--port", "9000", "--api-key", "a", "--api-key", "b,c", "--backend", "cuda"],
    env: {
      SINKSTREAM_PORT: "8001",
      SINKSTREAM_SINKS: "8",
      SINKSTREAM_CONFIG: "/x.json",
      SINKSTREAM_MODEL: "m.bin",
    },
    readFile: () => file,
  });
  assert.equal(config.port, 9000);
  assert.equal(config.sinks, 8);
  assert.equal(config.window, 100);
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.model, "m.bin");
  assert.equal(config.backend, "cuda");
  assert.deepEqual(config.apiKeys, ["a", "b", "c"]);
});

Deno.test("config: clear errors", () => {
  const bad: [Parameters<typeof loadConfig>[0], RegExp][] = [
    [{ args: ["--port", "abc"] }, /--port: expected a number/],
    [{ args: ["--port", "70000"] }, /invalid --port \/ SINKSTREAM_PORT/],
    [{ args: ["--backend", "tpu"] }, /invalid --backend \/ SINKSTREAM_BACKEND/],
    [{ args: ["--sinks", "1.5"] }, /invalid --sinks/],
    [{ args: ["--max-sessions", "0"] }, /invalid --max-sessions/],
    [{ args: ["--bogus"] }, /bogus/],
    [{ args: ["extra"] }, /unexpected argument "extra"/],
    [{ env: { SINKSTREAM_WINDOW: "big" } }, /SINKSTREAM_WINDOW: expected a number/],
    [{ args: ["--config", "c.json"], readFile: () => "{" }, /not valid JSON/],
    [{ args: ["--config", "c.json"], readFile: () => '{"prot": 1}' }, /unknown key "prot"/],
    [{ args: ["--config", "c.json"], readFile: () => '{"port": "80"}' }, /invalid --port/],
    [{
      args: ["--config", "nope.json"],
      readFile: () => {
        throw new Error("ENOENT");
      },
    }, /cannot read config file/],
    [{ args: ["--tls-cert", "a.pem"] }, /--tls-cert and --tls-key/],
  ];
  for (const [opts, re] of bad) {
    assert.throws(
      () => loadConfig(opts),
      (e: unknown) => e instanceof ConfigError && re.test((e as Error).message),
    );
  }
});

Deno.test("model: hf spec parsing, local paths, offline with nothing cached names --model", async () => {
  assert.deepEqual(parseHfSpec("hf:karpathy/tinyllamas/stories260K/stories260K.bin"), {
    repo: "karpathy/tinyllamas",
    file: "stories260K/stories260K.bin",
  });
  assert.deepEqual(parseHfSpec("hf:Qwen/Qwen2.5-0.5B-Instruct"), { repo: "Qwen/Qwen2.5-0.5B-Instruct" });
  assert.throws(() => parseHfSpec("hf:justone"), ConfigError);
  await assert.rejects(() => resolveModel("/no/such/model.bin"), /model not found/);
  const cacheDir = await Deno.makeTempDir();
  try {
    const offline = (() => Promise.reject(new TypeError("network unreachable"))) as typeof fetch;
    await assert.rejects(
      () => resolveModel(undefined, { cacheDir, fetch: offline, progress: () => {} }),
      (e: unknown) => {
        const m = (e as Error).message;
        return e instanceof ConfigError && m.includes("--model") && !m.includes("\n") &&
          m.includes(DEFAULT_MODEL.slice(3));
      },
    );
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});
