/** Command-line helpers shared by the tools: strict flag parsing with clear errors. */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parse flags strictly (unknown flags, missing values and positionals are UsageErrors). */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
    return values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function requireString(v: string | boolean | undefined, flag: string): string {
  if (typeof v !== "string" || v === "") throw new UsageError(`--${flag} is required`);
  return v;
}

export function optNumber(
  v: string | boolean | undefined,
  flag: string,
  check: { integer?: boolean; min?: number; max?: number; minExclusive?: boolean } = {},
): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.trim() === "") throw new UsageError(`--${flag} needs a number`);
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${flag}: "${v}" is not a number`);
  if (check.integer && !Number.isInteger(n)) throw new UsageError(`--${flag}: "${v}" is not an integer`);
  if (check.min !== undefined && (check.minExclusive ? n <= check.min : n < check.min)) {
    throw new UsageError(`--${flag} must be ${check.minExclusive ? ">" : ">="} ${check.min}, got ${v}`);
  }
  if (check.max !== undefined && n > check.max) {
    throw new UsageError(`--${flag} must be <= ${check.max}, got ${v}`);
  }
  return n;
}

export function optChoice<C extends string>(
  v: string | boolean | undefined,
  flag: string,
  choices: readonly C[],
): C | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) {
    throw new UsageError(`--${flag} must be one of ${choices.join(", ")}, got ${JSON.stringify(v)}`);
  }
  return v as C;
}

/** Values of --weights (conversion at load) and --kv-dtype (the CPU KV cache). */
export { KV_DTYPES, WEIGHT_DTYPES } from "../../runtime/types.ts";

/** Run a CLI main: UsageError -> usage + exit 2; other errors -> message + exit 1. */
export async function runMain(usage: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\n\n${usage}`);
      Deno.exit(2);
    }
    const err = e as Error;
    console.error(`error: ${err.name && err.name !== "Error" ? `${err.name}: ` : ""}${err.message}`);
    Deno.exit(1);
  }
}

/**
 * Resolve a path argument. `deno task` runs in the folder of deno.json; INIT_CWD holds the
 * folder the user ran it from, so relative paths are taken relative to that.
 */
export function resolvePath(p: string): string {
  if (p.startsWith("/")) return p;
  const base = Deno.env.get("INIT_CWD") || Deno.cwd();
  return `${base.replace(/\/$/, "")}/${p}`;
}
