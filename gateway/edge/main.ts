/**
 * `deno task edge --backend URL [--backend URL]... [--kv PATH|:memory:|URL]`: the edge front (docs/edge.md).
 * Runs with --allow-net --allow-env --unstable-kv (a local SQLite --kv file also needs read and write
 * permission for that file). Serves with our own server, or with Deno.serve on Deno Deploy
 * (DENO_DEPLOYMENT_ID set). Its module graph has no FFI, subprocesses or file access
 * (tests/gateway/edge/deployable.test.ts).
 */
import { ConfigError } from "../config/options.ts";
import { hostCheckApplies } from "../middleware/origin.ts";
import { createEdge } from "./app.ts";
import { edgeUsage, loadEdgeConfig } from "./config.ts";
import { serveWithDenoServe } from "./serve_deploy.ts";

function fail(msg: string): never {
  console.error(`sinkstream-edge: ${msg}`);
  Deno.exit(2);
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadEdgeConfig({ args: Deno.args, env: Deno.env.toObject() });
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  }
  if (loaded.help) {
    console.log(edgeUsage());
    return;
  }
  const config = loaded.config;
  if (hostCheckApplies(config)) {
    console.error(
      `sinkstream-edge: warning: listening on ${config.host} without --api-key: anyone who can reach it can use ` +
        "the backends (Host names other than IP addresses and localhost need --allow-host)",
    );
  }
  let kv: Deno.Kv;
  try {
    kv = await Deno.openKv(config.kv);
  } catch (e) {
    fail(`--kv ${config.kv ?? "(default)"}: ${oneLine(e)}`);
  }
  const edge = createEdge({ config, kv });
  await edge.start();
  const backends = edge.pool.backends.map((b) =>
    `${b.name}=${b.base.origin}${b.takesSessions() ? "" : " (down)"}`
  );
  const onListen = (addr: Deno.NetAddr) => {
    console.log(`sinkstream-edge: backends ${backends.join(", ")}`);
    console.log(
      `sinkstream-edge: listening on http://${
        addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname
      }:${addr.port}/`,
    );
  };
  let server: { shutdown(): Promise<void> };
  try {
    server = Deno.env.get("DENO_DEPLOYMENT_ID")
      ? serveWithDenoServe(edge.app.fetch, {
        hostname: config.host,
        port: config.port,
        idleTimeoutS: config.wsIdleTimeout,
        onListen,
      })
      : edge.serve({ onListen });
  } catch (e) {
    fail(`cannot listen on ${config.host}:${config.port}: ${oneLine(e)}`);
  }
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`sinkstream-edge: ${sig}: shutting down`);
    await edge.shutdown();
    await server.shutdown().catch(() => {});
    kv.close();
    Deno.exit(0);
  };
  try {
    Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
    Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  } catch { /* no signals here (Deno Deploy) */ }
}

if (import.meta.main) await main();
