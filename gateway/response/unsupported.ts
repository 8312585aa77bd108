/**
 * Parameters of OpenAI's APIs that this server accepts in their shape but does not implement (tools,
 * audio, structured outputs, ...): each front end lists them here once, with the values that ask for
 * nothing (`null`, `[]`, `"none"`, ...) and pass. A request that asks for one is answered with
 * `unsupported_parameter` naming it (HTTP: 400; a Realtime `session.update`: a non-fatal error event and
 * the rest of the update applied), never silently ignored. docs/gateway.md lists them.
 */

/** A parameter we do not implement; `asks` says whether a value asks for it (default: anything but null). */
export interface UnsupportedRule {
  /** Dotted path from the request's root (or the Realtime `session`), e.g. "audio.output.voice". */
  readonly param: string;
  /** Why it is refused, for the message ("audio output is not supported"). */
  readonly why: string;
  readonly asks?: (value: unknown) => boolean;
}

/** One parameter of a request that asks for something this server does not do. */
export interface Unsupported {
  /** The full path, with the front end's prefix (e.g. "session.tools"). */
  param: string;
  message: string;
}

/** Parameters of OpenAI's HTTP APIs accepted everywhere though they change nothing here: identifiers, cache hints. */
export const ACCEPTED_HINTS: readonly string[] = [
  "user",
  "safety_identifier",
  "prompt_cache_key",
  "prompt_cache_options",
  "prompt_cache_retention",
];

/** Values that ask for nothing: absent, null, an empty list or object. */
export function isEmptyValue(v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === "object" && Object.keys(v as object).length === 0;
}

/** Asks unless empty or one of `ok` (e.g. tool_choice "none"). */
export function asksUnless(...ok: unknown[]): (v: unknown) => boolean {
  return (v) => !isEmptyValue(v) && !ok.includes(v);
}

/** Asks when a list of modalities includes "audio". */
export const asksAudio = (v: unknown): boolean => Array.isArray(v) && v.includes("audio");

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function lookup(obj: unknown, path: string): unknown {
  let v = obj;
  for (const key of path.split(".")) {
    if (!isObject(v)) return undefined;
    v = v[key];
  }
  return v;
}

/** The parameters of `obj` that ask for something in `rules`, in the rules' order. */
export function findUnsupported(
  obj: unknown,
  rules: readonly UnsupportedRule[],
  prefix = "",
): Unsupported[] {
  const out: Unsupported[] = [];
  for (const r of rules) {
    const v = lookup(obj, r.param);
    if (!(r.asks ?? ((x) => !isEmptyValue(x)))(v)) continue;
    const param = prefix + r.param;
    out.push({ param, message: `${param} is not supported by this server: ${r.why}` });
  }
  return out;
}

/**
 * The keys of `obj` that neither `known` nor a rule names (OpenAI answers them `unknown_parameter`).
 * Only the top level: nested objects are checked by their own schemas.
 */
export function unknownKeys(
  obj: Record<string, unknown>,
  known: ReadonlySet<string>,
  rules: readonly UnsupportedRule[],
): string[] {
  return Object.keys(obj).filter((k) => !known.has(k) && !rules.some((r) => r.param.split(".")[0] === k));
}

/** Why an HTTP request is refused before anything runs (400, `param` set). */
export interface ParamProblem {
  code: "unsupported_parameter" | "unknown_parameter";
  message: string;
  param: string;
}

/**
 * The first parameter of a request body that asks for something in `rules`, else the first problem
 * `items` finds in its nested items (messages, input items), else its first key neither `known` nor a rule
 * names; null when there is none.
 */
export function requestProblem(
  body: Record<string, unknown>,
  rules: readonly UnsupportedRule[],
  known: ReadonlySet<string>,
  items?: (body: Record<string, unknown>) => ParamProblem | null,
): ParamProblem | null {
  const [u] = findUnsupported(body, rules);
  if (u) return { code: "unsupported_parameter", ...u };
  const p = items?.(body);
  if (p) return p;
  const [k] = unknownKeys(body, known, rules);
  if (k === undefined) return null;
  return { code: "unknown_parameter", param: k, message: `unrecognized request argument supplied: ${k}` };
}
