/**
 * --metrics-auth puts /metrics behind the API key (the /v1 Bearer check); off by default, so a
 * Prometheus scraper without a key keeps working. Plus the option's parsing and its one rule.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../../gateway/config/config.ts";
import { startGateway } from "../_gateway.ts";

async function metrics(base: string, auth?: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`${base}/metrics`, { headers: auth ? { Authorization: auth } : {} });
  return { status: r.status, body: await r.text() };
}

Deno.test("/metrics: open by default, even with API keys", async () => {
  const g = await startGateway({ apiKeys: ["k1"] });
  try {
    const r = await metrics(g.http);
    assert.equal(r.status, 200);
    assert.match(r.body, /sinkstream:/);
    assert.equal(await fetch(`${g.http}/v1/models`).then((x) => (x.body?.cancel(), x.status)), 401);
  } finally {
    await g.close();
  }
});

Deno.test("/metrics with --metrics-auth: the Bearer key of /v1", async () => {
  const g = await startGateway({ apiKeys: ["k1", "k2"], metricsAuth: true });
  try {
    const none = await metrics(g.http);
    assert.equal(none.status, 401);
    assert.match(none.body, /"code":"invalid_api_key"/);
    assert.equal((await metrics(g.http, "Bearer wrong")).status, 401);
    const ok = await metrics(g.http, "Bearer k2");
    assert.equal(ok.status, 200);
    assert.match(ok.body, /sinkstream:/);
  } finally {
    await g.close();
  }
});

Deno.test("config: --metrics-auth / SINKSTREAM_METRICS_AUTH, needs a key; --allow-host repeats", () => {
  const on = loadConfig({ args: ["--metrics-auth", "--api-key", "k"] }).config;
  assert.equal(on.metricsAuth, true);
  assert.equal(loadConfig({ args: ["--api-key", "k"] }).config.metricsAuth, false);
  assert.equal(
    loadConfig({ env: { SINKSTREAM_METRICS_AUTH: "true", SINKSTREAM_API_KEYS: "k" } }).config.metricsAuth,
    true,
  );
  assert.throws(
    () => loadConfig({ env: { SINKSTREAM_METRICS_AUTH: "maybe" } }),
    /METRICS_AUTH: expected true or false/,
  );
  assert.throws(
    () => loadConfig({ args: ["--metrics-auth"] }),
    (e) => e instanceof ConfigError && /needs an --api-key/.test(e.message),
  );
  const hosts = loadConfig({ args: ["--allow-host", "a.example", "--allow-host", "b.example"] }).config;
  assert.deepEqual(hosts.allowedHosts, ["a.example", "b.example"]);
  assert.deepEqual(
    loadConfig({ env: { SINKSTREAM_ALLOWED_HOSTS: "a.example,b.example" } }).config.allowedHosts,
    [
      "a.example",
      "b.example",
    ],
  );
});
