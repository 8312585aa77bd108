/**
 * Real processes for the edge tests: backend gateways (`gateway/main.ts`, stories260K, one thread each)
 * and edges (`gateway/edge/main.ts` with --allow-net --allow-env --unstable-kv and, for a SQLite --kv
 * file, read/write permission for that file only), on loopback ports, with their output lines kept.
 */
import { fileURLToPath } from "node:url";
import { ensureNativeLibrary } from "../../../runtime/ffi.ts";
import { modelPath } from "../_gateway.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export interface Proc {
  child: Deno.ChildProcess;
  /** http://127.0.0.1:PORT */
  http: string;
  ws: string;
  lines: string[];
  /** Resolves when the process has exited. */
  exited: Promise<Deno.CommandStatus>;
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

async function spawn(args: string[], what: string): Promise<Proc> {
  const child = new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdout: "piped", stderr: "piped" })
    .spawn();
  const lines: string[] = [];
  let resolveUrl!: (u: string) => void;
  const url = new Promise<string>((r) => (resolveUrl = r));
  const read = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        const m = /listening on (http:\/\/[^/\s]+)\//.exec(line);
        if (m) resolveUrl(m[1]);
      }
    }
  };
  const pumps = Promise.all([read(child.stdout), read(child.stderr)]);
  const exited = child.status.then(async (s) => {
    await pumps;
    return s;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what} did not start:\n${lines.join("\n")}`)), 60_000);
  });
  const early = exited.then((s) => {
    throw new Error(`${what} exited (${s.code}) before listening:\n${lines.join("\n")}`);
  });
  early.catch(() => {}); // after it listens, exiting is the test's business
  const http = await Promise.race([url, timeout, early]).finally(() => clearTimeout(timer));
  return {
    child,
    http,
    ws: http.replace(/^http/, "ws") + "/v1/realtime",
    lines,
    exited,
    async kill(signal: Deno.Signal = "SIGKILL") {
      try {
        child.kill(signal);
      } catch { /* gone */ }
      return await exited;
    },
  };
}

export async function startBackend(extra: string[] = []): Promise<Proc> {
  await ensureNativeLibrary();
  return await spawn([
    "run",
    "-A",
    "gateway/main.ts",
    "--model",
    modelPath(),
    "--port",
    "0",
    "--threads",
    "1",
    "--backend-key",
    BACKEND_KEY,
    ...extra,
  ], "backend");
}

export async function startEdge(backends: string[], kv: string, extra: string[] = []): Promise<Proc> {
  const files = kv === ":memory:" ? [] : [`--allow-read=${kv}`, `--allow-write=${kv}`];
  return await spawn([
    "run",
    "--allow-net",
    "--allow-env",
    "--unstable-kv",
    ...files,
    "gateway/edge/main.ts",
    ...backends.flatMap((b) => ["--backend", b]),
    "--kv",
    kv,
    "--port",
    "0",
    "--backend-key",
    BACKEND_KEY,
    "--health-interval",
    "0.5",
    ...extra,
  ], "edge");
}
