/**
 * `deno task start`: build the native library if needed, load the model,
 * serve HTTP + WebSocket, print the URL; graceful shutdown on SIGINT/SIGTERM.
 * The only gateway file that imports the native runtime.
 */
import { createEngine, ensureNativeLibrary, isBackendAvailable, loadModel, loadTokenizer } from "../mod.ts";
import { createApp } from "./app.ts";
import { ConfigError, loadConfig, usage } from "./config/config.ts";
import { resolveModel } from "./config/model.ts";

function fail(msg: string): never {
  console.error(`sinkstream: ${msg}`);
  Deno.exit(2);
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
  const resolved = await resolveModel(config.model, { cacheDir: config.cacheDir }).catch((e) => {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  });
  await ensureNativeLibrary({ quiet: true });
  if (!isBackendAvailable(config.backend)) {
    fail(`backend ${config.backend} is not available in this build / on this machine (try --backend cpu)`);
  }
  const model = await loadModel(resolved.modelPath);
  const engine = await createEngine(model, {
    backend: config.backend,
    threads: config.threads,
    maxSequences: Math.max(1, config.maxSessions),
    maxBatchTokens: config.maxBatchTokens,
  });
  const tokenizer = await loadTokenizer(resolved.modelPath, config.tokenizer ?? resolved.tokenizerPath);
  const gw = createApp({ engine, tokenizer, config, modelName: config.modelName ?? resolved.name });
  const tls = config.tlsCert && config.tlsKey
    ? { cert: await Deno.readTextFile(config.tlsCert), key: await Deno.readTextFile(config.tlsKey) }
    : {};
  gw.serve({
    ...tls,
    onListen: (addr) => {
      const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
      const scheme = tls.cert ? "https" : "http";
      console.log(
        `sinkstream: model ${gw.ctx.modelName} (${engine.info.nParams} params, ${engine.backend}), ` +
          `policy ${config.policy}, sinks ${config.sinks}, window ${config.window || engine.info.maxSeqLen}`,
      );
      console.log(`sinkstream: listening on ${scheme}://${host}:${addr.port}/`);
    },
  });
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`sinkstream: ${sig}: shutting down`);
    const force = setTimeout(() => Deno.exit(1), 10_000);
    await gw.shutdown();
    engine.close();
    model.close();
    clearTimeout(force);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
}

if (import.meta.main) await main();
