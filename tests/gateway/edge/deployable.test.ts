/**
 * The edge can be deployed on Deno Deploy as it is: its module graph (`deno info`) holds no FFI, no
 * subprocess and no file access and only the npm packages it needs, and it runs with --allow-net
 * --allow-env --unstable-kv alone, served by our server or, with DENO_DEPLOYMENT_ID set, by Deno.serve.
 */
import assert from "node:assert/strict";
import { freePort } from "../../../bench/lib.ts";
import { WsClient } from "../_gateway.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";
import { moduleGraph, ROOT } from "../_module_graph.ts";

const FORBIDDEN = new RegExp(
  [
    String
      .raw`Deno\.(dlopen|Command|run\(|spawn|readFile|readTextFile|writeFile|writeTextFile|open\(|openSync`,
    String
      .raw`|readDir|mkdir|remove|stat|lstat|makeTemp|chmod|chown|rename|symlink|truncate|realPath|cwd|chdir)`,
    String.raw`|UnsafePointer|UnsafeCallback|node:fs|node:child_process`,
  ].join(""),
);

Deno.test("edge graph: no FFI, subprocess or file access in any of its modules; npm: hono and zod only", async () => {
  const { local, specifiers: specs } = await moduleGraph("gateway/edge/main.ts");
  assert.ok(local.includes("gateway/edge/relay.ts"), `graph was read: ${local.join(", ")}`);
  assert.deepEqual(local.filter((m) => m.startsWith("runtime/")).sort(), [
    "runtime/errors.ts",
    "runtime/types.ts",
  ]);
  for (const m of ["gateway/scheduler/scheduler.ts", "gateway/realtime/session.ts", "gateway/main.ts"]) {
    assert.ok(!local.includes(m), `${m} is not the edge's`);
  }
  for (const m of local) {
    const src = await Deno.readTextFile(`${ROOT}/${m}`);
    const hit = FORBIDDEN.exec(src);
    assert.equal(hit, null, `${m} uses ${hit?.[0]}`);
  }
  const npm = new Set(specs.filter((s) => s.startsWith("npm:")).map((s) => /^npm:\/?(@?[^@/]+)/.exec(s)![1]));
  assert.deepEqual([...npm].sort(), ["hono", "zod"]);
});

async function runEdge(env: Record<string, string>): Promise<{ child: Deno.ChildProcess; url: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--unstable-kv",
      "gateway/edge/main.ts",
      "--backend",
      `http://127.0.0.1:${freePort()}`, // nobody listens there
      "--kv",
      ":memory:",
      "--port",
      String(freePort()),
      "--connect-timeout",
      "1",
    ],
    cwd: ROOT,
    env: { SINKSTREAM_BACKEND_KEY: BACKEND_KEY, ...env },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on (\S+)/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`edge exited:\n${seen}`);
    seen += value;
  }
  void (async () => {
    while (!(await reader.read()).done);
  })();
  return { child, url: /listening on (http:\/\/[^/\s]+)/.exec(seen)![1] };
}

for (
  const [name, env] of [["our server", {}], ["Deno.serve (DENO_DEPLOYMENT_ID)", {
    DENO_DEPLOYMENT_ID: "test",
  }]]
) {
  Deno.test(`edge runs with --allow-net --allow-env --unstable-kv only: ${name}`, async () => {
    const { child, url } = await runEdge(env as Record<string, string>);
    try {
      const health = await fetch(`${url}/healthz`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      const ready = await fetch(`${url}/readyz`);
      assert.equal(ready.status, 503, "no backend answers");
      assert.equal((await ready.json()).status, "no_backend");
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert.match(metrics, /sinkstream:edge_backend_up\{backend="b0"\} 0/);
      const c = await WsClient.open(`${url.replace("http", "ws")}/v1/realtime`);
      const err = await c.next("error");
      assert.equal(err.error.code, "backend_unavailable");
      assert.equal((await c.closed).code, 1013);
    } finally {
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0);
    }
  });
}
