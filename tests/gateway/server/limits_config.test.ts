/** The server's limits as gateway options: defaults, flags / env, and the send cap checked against backpressure. */
import assert from "node:assert/strict";
import { ConfigError, ConfigSchema, loadConfig, usage } from "../../../gateway/config/config.ts";

Deno.test("limits config: documented defaults, flags and env, send cap above the backpressure threshold", () => {
  const d = ConfigSchema.parse({});
  assert.deepEqual(
    [d.maxConnections, d.maxHeadBytes, d.headerTimeout, d.bodyTimeout, d.wsIdleTimeout, d.maxSendBufferBytes],
    [1024, 32 * 1024, 10, 30, 60, 8 << 20],
  );
  const c = loadConfig({
    args: ["--header-timeout", "2.5", "--max-connections", "50"],
    env: { SINKSTREAM_BODY_TIMEOUT: "4", SINKSTREAM_WS_IDLE_TIMEOUT: "15" },
  }).config;
  assert.deepEqual([c.headerTimeout, c.maxConnections, c.bodyTimeout, c.wsIdleTimeout], [2.5, 50, 4, 15]);
  assert.throws(
    () => loadConfig({ args: ["--max-send-buffer-bytes", "1000"] }),
    (e) =>
      e instanceof ConfigError && /--max-send-buffer-bytes.*larger than --backpressure-bytes/.test(e.message),
  );
  assert.throws(() => loadConfig({ args: ["--header-timeout", "0"] }), ConfigError);
  for (const flag of ["--max-connections", "--header-timeout", "--body-timeout", "--ws-idle-timeout"]) {
    assert.ok(usage().includes(flag), flag);
  }
});
