/**
 * Model resolution: a local path, or `hf:REPO[/FILE]` downloaded from the
 * Hugging Face Hub into a cache folder with a progress bar. With no model
 * given, the default is karpathy/tinyllamas stories260K (model + tok512
 * tokenizer). Offline with nothing cached: one clear line naming --model.
 */
import { downloadFileToCacheDir } from "@huggingface/hub";
import { ConfigError } from "./config.ts";

export const DEFAULT_MODEL = "hf:karpathy/tinyllamas/stories260K/stories260K.bin";
const DEFAULT_TOKENIZER_FILE = "stories260K/tok512.bin";

export interface ResolvedModel {
  modelPath: string;
  tokenizerPath?: string;
  /** Name shown in /v1/models. */
  name: string;
}

export interface ResolveOptions {
  cacheDir?: string;
  /** Where progress goes (default: stderr). */
  progress?: (line: string) => void;
  fetch?: typeof fetch;
}

/** Split "hf:owner/repo[/path/in/repo]". */
export function parseHfSpec(spec: string): { repo: string; file?: string } {
  const rest = spec.slice(3).replace(/^\/+/, "");
  const parts = rest.split("/").filter((p) => p !== "");
  if (parts.length < 2) throw new ConfigError(`invalid --model ${spec}: expected hf:OWNER/REPO[/FILE]`);
  const repo = `${parts[0]}/${parts[1]}`;
  const file = parts.slice(2).join("/");
  return file ? { repo, file } : { repo };
}

/** Bytes in the unit that suits the file's total size. */
function size(bytes: number, total: number): string {
  if (total >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
  if (total >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function progressFetch(name: string, print: (line: string) => void, base: typeof fetch): typeof fetch {
  return async (input, init) => {
    const res = await base(input, init);
    const total = Number(res.headers.get("content-length") ?? 0);
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    // Only whole-file downloads get a bar: not the API calls, not the library's 1-byte Range probes.
    if (!res.ok || res.status === 206 || !res.body || method !== "GET" || total < 1) return res;
    let seen = 0;
    let lastPct = -1;
    const bar = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        seen += chunk.byteLength;
        const pct = Math.min(100, Math.floor((seen / total) * 100));
        if (pct !== lastPct) {
          lastPct = pct;
          const filled = Math.round(pct / 4);
          print(
            `\r  ${name} [${"#".repeat(filled)}${".".repeat(25 - filled)}] ${String(pct).padStart(3)}% ` +
              `${size(seen, total)}/${size(total, total)}`,
          );
        }
        ctl.enqueue(chunk);
      },
      flush() {
        print("\n");
      },
    });
    return new Response(res.body.pipeThrough(bar), {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  };
}

const encoder = new TextEncoder();
const stderrPrint = (line: string) => Deno.stderr.writeSync(encoder.encode(line));

async function cachedCopy(cacheDir: string | undefined, repo: string, file: string): Promise<string | null> {
  const home = Deno.env.get("HOME") ?? ".";
  const dir = cacheDir ?? Deno.env.get("HF_HUB_CACHE") ??
    `${Deno.env.get("HF_HOME") ?? `${home}/.cache/huggingface`}/hub`;
  const snapshots = `${dir}/models--${repo.replace("/", "--")}/snapshots`;
  try {
    for await (const e of Deno.readDir(snapshots)) {
      const p = `${snapshots}/${e.name}/${file}`;
      try {
        if ((await Deno.stat(p)).isFile) return p;
      } catch { /* not in this snapshot */ }
    }
  } catch { /* no cache */ }
  return null;
}

async function download(
  repo: string,
  file: string,
  opts: ResolveOptions,
  optional = false,
): Promise<string | null> {
  const print = opts.progress ?? stderrPrint;
  // The library announces each download with console.debug; our progress bar says it better.
  const debug = console.debug;
  console.debug = () => {};
  try {
    return await downloadFileToCacheDir({
      repo,
      path: file,
      cacheDir: opts.cacheDir,
      fetch: progressFetch(file.split("/").pop()!, print, opts.fetch ?? fetch),
    });
  } catch (e) {
    const cached = await cachedCopy(opts.cacheDir, repo, file);
    if (cached) return cached;
    if (optional) return null;
    const why = (e as Error).message.split("\n")[0];
    throw new ConfigError(
      `cannot download hf:${repo}/${file} (${why}) and it is not cached; pass --model PATH (or SINKSTREAM_MODEL) to a local model`,
    );
  } finally {
    console.debug = debug;
  }
}

/** Resolve `spec` (default: stories260K from the Hub) to local files. */
export async function resolveModel(
  spec: string | undefined,
  opts: ResolveOptions = {},
): Promise<ResolvedModel> {
  const s = spec ?? DEFAULT_MODEL;
  if (!s.startsWith("hf:")) {
    try {
      await Deno.stat(s);
    } catch {
      throw new ConfigError(`model not found: ${s} (check --model / SINKSTREAM_MODEL)`);
    }
    const base = s.replace(/\/+$/, "").split("/").pop()!;
    return { modelPath: s, name: base.replace(/\.(bin|safetensors)$/, "") };
  }
  const { repo, file } = parseHfSpec(s);
  if (file) {
    const modelPath = (await download(repo, file, opts))!;
    let tokenizerPath: string | undefined;
    if (s === DEFAULT_MODEL) tokenizerPath = (await download(repo, DEFAULT_TOKENIZER_FILE, opts))!;
    const base = file.split("/").pop()!.replace(/\.(bin|safetensors)$/, "");
    return { modelPath, tokenizerPath, name: base };
  }
  // A Hugging Face model folder: config, tokenizer and weights (single file or index + shards).
  const cfg = (await download(repo, "config.json", opts))!;
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    await download(repo, f, opts, true);
  }
  const index = await download(repo, "model.safetensors.index.json", opts, true);
  if (index) {
    const map = JSON.parse(await Deno.readTextFile(index)).weight_map as Record<string, string>;
    for (const shard of new Set(Object.values(map))) await download(repo, shard, opts);
  } else await download(repo, "model.safetensors", opts);
  return { modelPath: cfg.slice(0, cfg.lastIndexOf("/")), name: repo.split("/")[1] };
}
