/**
 * Real processes for the edge tests: backend gateways (`gateway/main.ts`, stories260K, one thread each)
 * and edges (`gateway/edge/main.ts` with --allow-net --allow-env --unstable-kv and, for a SQLite --kv
 * file, read/write permission for that file only), on loopback ports (bench/lib.ts spawnServer).
 */
import { type ServerProcess, spawnServer } from "../../../bench/lib.ts";
import { ensureNativeLibrary } from "../../../runtime/ffi.ts";
import { modelPath } from "../_gateway.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

export interface Proc extends ServerProcess {
  ws: string;
}

async function start(args: string[], what: string, env?: Record<string, string>): Promise<Proc> {
  const p = await spawnServer(args, what, undefined, env);
  return { ...p, ws: p.http.replace(/^http/, "ws") + "/v1/realtime" };
}

export async function startBackend(extra: string[] = []): Promise<Proc> {
  await ensureNativeLibrary();
  const args = ["--model", modelPath(), "--port", "0", "--threads", "1", "--backend-key", BACKEND_KEY];
  return await start(["run", "-A", "gateway/main.ts", ...args, ...extra], "backend");
}

/** `env`: e.g. DENO_DEPLOYMENT_ID, which makes the edge serve with Deno.serve as on Deno Deploy. */
export async function startEdge(
  backends: string[],
  kv: string,
  extra: string[] = [],
  env?: Record<string, string>,
): Promise<Proc> {
  const files = kv === ":memory:" ? [] : [`--allow-read=${kv}`, `--allow-write=${kv}`];
  const args = [...backends.flatMap((b) => ["--backend", b]), "--kv", kv, "--port", "0"];
  return await start(
    [
      "run",
      "--allow-net",
      "--allow-env",
      "--unstable-kv",
      ...files,
      "gateway/edge/main.ts",
      ...args,
      "--backend-key",
      BACKEND_KEY,
      "--health-interval",
      "0.5",
      ...extra,
    ],
    "edge",
    env,
  );
}
