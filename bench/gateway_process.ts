/**
 * The gateway as a subprocess (what `deno task start` runs: its command is read from deno.json), for benchmarks
 * and tests that need its real process: its memory (VmRSS of its process tree), whether it died, and its
 * stderr when it did. It listens on a port the kernel picks (`--port 0`; the port is read from its
 * "listening on" line, so there is no race for a free port) on 127.0.0.1.
 */
import { treeRss, waitHealthy } from "./lib.ts";

/** The test model of ../shared (llama2.c stories260K with its tok512 tokenizer beside it). */
export const SHARED_MODEL =
  new URL("../../shared/models/stories260K/stories260K.bin", import.meta.url).pathname;

const REPO = new URL("..", import.meta.url).pathname;
/** Bytes of stderr kept for error messages. */
const STDERR_TAIL_CHARS = 8000;
/** After SIGTERM the gateway drains for at most 5 s and force-exits after 10 s (gateway/main.ts). */
const KILL_AFTER_MS = 15_000;

export interface GatewayProcessOptions {
  /** Model path (default SHARED_MODEL). */
  model?: string;
  /** More gateway flags, e.g. ["--max-sessions", "200"]. */
  args?: string[];
  /** Extra environment variables (the rest is inherited). */
  env?: Record<string, string>;
  /** How long it may take to listen and answer /healthz (default 120 s: it may build csrc/ first). */
  startTimeoutMs?: number;
}

export interface GatewayProcess {
  /** http://127.0.0.1:PORT */
  readonly url: URL;
  readonly port: number;
  readonly pid: number;
  /** Settles when the process exits, for whatever reason. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** False once it has exited. */
  readonly alive: boolean;
  /** Resident memory of its process tree in bytes (NaN once it is gone). */
  rssBytes(): number;
  /** The last few thousand characters it wrote to stderr. */
  stderrTail(): string;
  /** SIGTERM, then SIGKILL if it has not exited after KILL_AFTER_MS; resolves with its exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * The arguments of `deno task start` after `deno` (deno.json owns the command, V8 flags included: D54),
 * e.g. ["run", "-A", "--v8-flags=...", "gateway/main.ts"].
 */
export function startTaskArgs(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${REPO}deno.json`)) as { tasks: { start: string } };
  const [deno, ...args] = config.tasks.start.trim().split(/\s+/);
  if (deno !== "deno" || !args.includes("gateway/main.ts")) {
    throw new Error(`deno.json's start task is not "deno ... gateway/main.ts": ${config.tasks.start}`);
  }
  return args;
}

export async function startGatewayProcess(opts: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...startTaskArgs(),
      "--model",
      opts.model ?? SHARED_MODEL,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      ...(opts.args ?? []),
    ],
    cwd: REPO,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let alive = true;
  const exited = child.status.then((s) => {
    alive = false;
    return s;
  });
  let tail = "";
  const stderrDone = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (tail = (tail + chunk).slice(-STDERR_TAIL_CHARS)) }),
  ).catch(() => {});
  // stdout: wait for the listening line, then keep reading so that the pipe never fills up.
  let out = "";
  let resolvePort: (port: number) => void;
  const listening = new Promise<number>((resolve) => (resolvePort = resolve));
  const stdoutDone = child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({
      write(chunk) {
        if (out.length > 4000) return;
        out += chunk;
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
        if (m) resolvePort(Number(m[1]));
      },
    }),
  ).catch(() => {});

  const stop = async () => {
    if (alive) {
      try {
        child.kill("SIGTERM");
      } catch {
        // exited meanwhile
      }
    }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, KILL_AFTER_MS);
    const status = await exited;
    clearTimeout(killer);
    await Promise.all([stdoutDone, stderrDone]);
    return status;
  };

  const timeoutMs = opts.startTimeoutMs ?? 120_000;
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const port = await Promise.race([
      listening,
      exited.then((s) => Promise.reject(new Error(`the gateway exited (code ${s.code}) before listening`))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the gateway did not listen within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
    clearTimeout(timer);
    const url = new URL(`http://127.0.0.1:${port}`);
    await waitHealthy(url, Math.max(1_000, timeoutMs - (performance.now() - started)), exited);
    return {
      url,
      port,
      pid: child.pid,
      exited,
      get alive() {
        return alive;
      },
      rssBytes: () => {
        const tree = alive ? treeRss(child.pid) : [];
        return tree.length === 0 ? NaN : tree.reduce((sum, p) => sum + p.rss, 0);
      },
      stderrTail: () => tail,
      stop,
    };
  } catch (err) {
    clearTimeout(timer);
    await stop();
    throw new Error(
      `${(err as Error).message}\n--- gateway stdout ---\n${out}\n--- gateway stderr ---\n${tail}`,
    );
  }
}
