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

function lookup(obj: unknown, path: string): unknown {
  let v = obj;
  for (const key of path.split(".")) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[key];
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
