/**
 * The option loader shared by the gateway (`deno task start`) and the edge (`deno task edge`): each option
 * is a flag, an environment variable `SINKSTREAM_<NAME>` and, where the program reads one, a camelCase key
 * of a JSON config file; merged (flags > env > file > defaults) and validated with the program's zod
 * schema. Every problem is one line naming the flag / variable / file key. No file system access here: a
 * program that reads config files passes the reader.
 */
import { parseArgs } from "node:util";
import type { z } from "zod";

export class ConfigError extends Error {
  override name = "ConfigError";
}

export type Kind = "string" | "int" | "number" | "list" | "bool";

/** One option: its key in the schema, its flag, its variable (after `SINKSTREAM_`), its kind and help. */
export interface FieldSpec {
  key: string;
  flag: string;
  env: string;
  kind: Kind;
  help: string;
}

export interface LoadOptions {
  args?: string[];
  env?: Record<string, string | undefined>;
  /** Reads a config file (`--config`, `SINKSTREAM_CONFIG`); absent: the program has no config file. */
  readFile?: (path: string) => string;
}

export interface Loaded<T> {
  /** The validated options (not set when `help` is). */
  config: T;
  help: boolean;
}

/** The help text: one line per option with its default from the schema (so the two cannot drift). */
export function usageText(command: string, schema: z.ZodObject, fields: readonly FieldSpec[], file: boolean) {
  const lines = fields.map((f) => {
    const r = schema.shape[f.key]?.safeParse(undefined);
    const value = r?.success ? r.data : undefined;
    const shown = value === undefined || (Array.isArray(value) && value.length === 0)
      ? ""
      : `; default ${value}`;
    return `  --${f.flag.padEnd(20)} ${f.help}${shown} (env SINKSTREAM_${f.env})`;
  });
  return [
    `usage: ${command} [options]`,
    ...(file ? ["  --config FILE          JSON config file (env SINKSTREAM_CONFIG); keys as camelCase"] : []),
    ...lines,
    "  --help                 this text",
  ].join("\n");
}

function convert(raw: string, kind: Kind, where: string): unknown {
  if (kind === "string") return raw;
  if (kind === "list") return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (kind === "bool") {
    if (/^(1|true|yes)$/i.test(raw.trim())) return true;
    if (/^(0|false|no)$/i.test(raw.trim())) return false;
    throw new ConfigError(`${where}: expected true or false, got "${raw}"`);
  }
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n)) {
    throw new ConfigError(`${where}: expected a number, got "${raw}"`);
  }
  return n;
}

function readConfigFile(path: string, read: (path: string) => string, fields: readonly FieldSpec[]) {
  let text: string;
  try {
    text = read(path);
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  for (const k of Object.keys(obj)) {
    if (!fields.some((f) => f.key === k)) throw new ConfigError(`config file ${path}: unknown key "${k}"`);
  }
  return obj as Record<string, unknown>;
}

/** Merge and validate flags, environment and config file. Throws ConfigError with one clear line. */
export function loadOptions<T>(
  schema: z.ZodType<T>,
  fields: readonly FieldSpec[],
  opts: LoadOptions,
): Loaded<T> {
  const args = opts.args ?? [];
  const env = opts.env ?? {};
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {
    help: { type: "boolean" },
  };
  if (opts.readFile) options.config = { type: "string" };
  for (const f of fields) {
    options[f.flag] = { type: f.kind === "bool" ? "boolean" : "string", multiple: f.kind === "list" };
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ConfigError(`${(e as Error).message.split("\n")[0]} (see --help)`);
  }
  if (parsed.positionals.length > 0) {
    throw new ConfigError(`unexpected argument "${parsed.positionals[0]}" (see --help)`);
  }
  const values = parsed.values;
  // --help needs no valid configuration (the edge has required options); `config` is not read then.
  if (values.help === true) return { config: null as never, help: true };
  const merged: Record<string, unknown> = {};
  const configPath = (values.config as string | undefined) ?? env.SINKSTREAM_CONFIG;
  if (opts.readFile && configPath) Object.assign(merged, readConfigFile(configPath, opts.readFile, fields));
  for (const f of fields) {
    const raw = env[`SINKSTREAM_${f.env}`];
    if (raw !== undefined && raw !== "") merged[f.key] = convert(raw, f.kind, `SINKSTREAM_${f.env}`);
  }
  for (const f of fields) {
    const v = values[f.flag];
    if (v === undefined) continue;
    if (f.kind === "list") {
      merged[f.key] = (v as string[]).flatMap((s) => convert(s, "list", `--${f.flag}`) as string[]);
    } else if (f.kind === "bool") merged[f.key] = v;
    else merged[f.key] = convert(v as string, f.kind, `--${f.flag}`);
  }

  const result = schema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue.path[0];
    const spec = fields.find((f) => f.key === key);
    const where = spec ? `--${spec.flag} / SINKSTREAM_${spec.env}` : "config";
    throw new ConfigError(`invalid ${where}: ${issue.message}`);
  }
  return { config: result.data, help: false };
}
