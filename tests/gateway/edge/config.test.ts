/** Edge options: flags and env like the gateway's (the shared definitions), required backends and key, no config file. */
import assert from "node:assert/strict";
import { edgeUsage, loadEdgeConfig } from "../../../gateway/edge/config.ts";
import { ConfigError } from "../../../gateway/config/options.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

Deno.test("edge config: defaults, repeatable --backend, env lists, the gateway's rules, one-line errors", () => {
  const { config } = loadEdgeConfig({
    args: ["--backend", "http://10.0.0.5:8000", "--backend", "https://gpu.example"],
    env: { SINKSTREAM_BACKEND_KEY: BACKEND_KEY, SINKSTREAM_API_KEYS: "a,b" },
  });
  assert.deepEqual(config.backends, ["http://10.0.0.5:8000", "https://gpu.example"]);
  assert.deepEqual(config.apiKeys, ["a", "b"]);
  assert.equal(config.port, 8080);
  assert.equal(config.kv, undefined);
  assert.equal(config.maxFrameBytes, 256 * 1024, "the gateway's default");
  const env = { SINKSTREAM_BACKEND_KEY: BACKEND_KEY };
  const bad: [string[], Record<string, string>, RegExp][] = [
    [[], env, /invalid --backend \/ SINKSTREAM_BACKENDS/],
    [["--backend", "http://a:1"], {}, /invalid --backend-key/],
    [["--backend", "http://a:1", "--backend-key", "short"], {}, /invalid --backend-key/],
    [["--backend", "ws://a:1"], env, /http:\/\/ or https:\/\/ base URL/],
    [["--backend", "http://a:1/v1"], env, /base URL/],
    [["--backend", "http://a:1", "--max-send-buffer-bytes", "10"], env, /larger than --backpressure-bytes/],
    [["--backend", "http://a:1", "--metrics-auth"], env, /--metrics-auth needs an --api-key/],
    [["--backend", "http://a:1", "--config", "x.json"], env, /config/],
  ];
  for (const [args, e, re] of bad) {
    assert.throws(
      () => loadEdgeConfig({ args, env: e }),
      (x) => x instanceof ConfigError && re.test(x.message),
      args.join(" "),
    );
  }
  assert.equal(loadEdgeConfig({ args: ["--help"] }).help, true, "--help needs no valid options");
  assert.match(edgeUsage(), /--port +listen port \(0 = any\); default 8080/);
  assert.doesNotMatch(edgeUsage(), /--config/);
});
