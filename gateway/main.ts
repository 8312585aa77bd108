/**
 * `deno task start`: build the native library if needed, load the model,
 * serve HTTP + WebSocket, print the URL; graceful shutdown on SIGINT/SIGTERM.
 * The only gateway file that imports the native runtime.
 */
import {
  backendUnavailableReason,
  createEngine,
  ensureNativeLibrary,
  loadModel,
  loadTokenizer,
  SinkstreamError,
} from "../mod.ts";
import { createApp } from "./app.ts";
import { ConfigError, loadConfig, usage } from "./config/config.ts";
import { resolveModel } from "./config/model.ts";
import { hostCheckApplies } from "./middleware/origin.ts";

function fail(msg: string): never {
  console.error(`sinkstream: ${msg}`);
  Deno.exit(2);
}

/** host:port as in a URL (IPv6 in brackets). */
function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Why listening failed, in a few words (the common cases named, else the error's first line). */
function listenError(e: unknown): string {
  if (e instanceof Deno.errors.AddrInUse) return "address in use";
  if (e instanceof Deno.errors.AddrNotAvailable) return "address not available on this machine";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig({ args: Deno.args, env: Deno.env.toObject() });
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  }
  if (loaded.help) {
    console.log(usage());
    return;
  }
  const config = loaded.config;
  if (hostCheckApplies(config)) {
    console.error(
      `sinkstream: warning: listening on ${config.host} without --api-key: anyone who can reach it can use ` +
        "the model (Host names other than IP addresses and localhost need --allow-host)",
    );
  }
  const resolved = await resolveModel(config.model, { cacheDir: config.cacheDir }).catch((e) => {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  });
  // --backend cuda picks (and if needed builds) the CUDA build of the library; every failure on the
  // way is one line naming the backend, not a stack trace.
  const backend = config.backend;
  const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0];
  try {
    await ensureNativeLibrary({
      quiet: true,
      backend,
      onBuild: (what) => console.error(`sinkstream: ${what}`),
    });
  } catch (e) {
    if (e instanceof SinkstreamError) fail(`--backend ${backend}: ${e.message}`);
    throw e;
  }
  let why: string | null;
  try {
    why = backendUnavailableReason(backend);
  } catch (e) {
    if (e instanceof SinkstreamError) fail(`--backend ${backend}: ${oneLine(e)}`);
    throw e;
  }
  if (why) fail(`--backend ${backend}: ${why}; try --backend cpu`);
  let model, engine;
  try {
    model = await loadModel(resolved.modelPath, { weights: config.weights });
    engine = await createEngine(model, {
      backend,
      threads: config.threads,
      kvDtype: config.kvDtype,
      // Sessions and running completions, plus the idle Responses API chains kept live (--responses-live).
      maxSequences: Math.max(1, config.maxSessions + config.responsesLive),
      maxBatchTokens: config.maxBatchTokens,
    });
  } catch (e) {
    if (e instanceof SinkstreamError) fail(oneLine(e));
    throw e;
  }
  // The session defaults go through the engine's own validator now, not at the first response.
  try {
    engine.checkSequenceOptions({ policy: config.policy, sinks: config.sinks, capacity: config.window });
  } catch (e) {
    if (e instanceof SinkstreamError) {
      fail(`--policy ${config.policy} --sinks ${config.sinks} --window ${config.window}: ${oneLine(e)}`);
    }
    throw e;
  }
  const tokenizer = await loadTokenizer(resolved.modelPath, config.tokenizer ?? resolved.tokenizerPath);
  const gw = createApp({ engine, tokenizer, config, modelName: config.modelName ?? resolved.name });
  const tls = config.tlsCert && config.tlsKey
    ? { cert: await Deno.readTextFile(config.tlsCert), key: await Deno.readTextFile(config.tlsKey) }
    : {};
  // Signal handlers before the "listening" line: whoever reads that line may stop us at once.
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => Deno.exit(1), 10_000 + config.drainTimeout * 1000);
    if (config.drainTimeout > 0) {
      console.log(`sinkstream: ${sig}: draining (running responses may take ${config.drainTimeout} s)`);
      await gw.drain(config.drainTimeout * 1000);
    }
    console.log(`sinkstream: ${sig}: shutting down`);
    await gw.shutdown();
    engine.close();
    model.close();
    clearTimeout(force);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  try {
    gw.serve({
      ...tls,
      onListen: (addr) => {
        const scheme = tls.cert ? "https" : "http";
        console.log(
          `sinkstream: model ${gw.ctx.modelName} (${engine.info.nParams} params, ${engine.backend}), ` +
            `${engine.info.weightDtype} weights, ` +
            `policy ${config.policy}, sinks ${config.sinks}, window ${
              config.window || engine.limits.defaultCapacity
            }`,
        );
        console.log(`sinkstream: listening on ${scheme}://${hostPort(addr.hostname, addr.port)}/`);
      },
    });
  } catch (e) {
    fail(`cannot listen on ${hostPort(config.host, config.port)}: ${listenError(e)}`);
  }
}

if (import.meta.main) await main();
