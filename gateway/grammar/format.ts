/**
 * Structured-output formats as the three front ends ask for them, read into one `OutputFormat`:
 *  - chat completions: `response_format: {type: "json_object"}` or
 *    `{type: "json_schema", json_schema: {name, description?, schema, strict?}}`;
 *  - the Responses API: `text.format: {type: "json_object"}` or `{type: "json_schema", name, description?,
 *    schema, strict?}`;
 *  - Realtime (our extension, the Responses API's shape): `session.text.format` in `session.update` and
 *    `response.text.format` in `response.create`.
 * `{type: "text"}` (or nothing) asks for plain text. The limits on what a client may send are here, once.
 */
import { z } from "zod";

/** What a response's text must be: any JSON object, or JSON valid under a JSON schema. */
export type OutputFormat =
  | { type: "json_object" }
  | { type: "json_schema"; name: string; schema: Record<string, unknown>; strict: boolean };

/** Bytes of a schema's JSON a request may send (compile time and grammar memory grow with it). */
export const MAX_SCHEMA_BYTES = 32 * 1024;
/** Nesting depth of objects and arrays in a schema. */
export const MAX_SCHEMA_DEPTH = 16;

/** Depth of nested objects / arrays in a JSON value (1 for a flat object). */
function depth(v: unknown): number {
  if (typeof v !== "object" || v === null) return 0;
  let d = 0;
  for (const x of Object.values(v)) d = Math.max(d, depth(x));
  return d + 1;
}

/** A JSON schema (an object) within the limits. */
const SchemaSchema = z.record(z.string(), z.unknown()).superRefine((schema, ctx) => {
  const bytes = new TextEncoder().encode(JSON.stringify(schema)).length;
  if (bytes > MAX_SCHEMA_BYTES) {
    ctx.addIssue({
      code: "custom",
      message: `the schema is ${bytes} bytes of JSON; at most ${MAX_SCHEMA_BYTES} are accepted`,
    });
  } else if (depth(schema) > MAX_SCHEMA_DEPTH) {
    ctx.addIssue({ code: "custom", message: `the schema nests deeper than ${MAX_SCHEMA_DEPTH} levels` });
  }
});

/** OpenAI's rule for a format's name. */
const NameSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a-z, A-Z, 0-9, _ and -, at most 64 characters");

const JsonSchemaFields = {
  name: NameSchema,
  description: z.string().nullable().optional(),
  schema: SchemaSchema.optional(),
  strict: z.boolean().nullable().optional(),
};

const Text = z.object({ type: z.literal("text") }).strict();
const JsonObject = z.object({ type: z.literal("json_object") }).strict();

/** `response_format` of a chat completion request. */
export const ChatResponseFormatSchema = z.discriminatedUnion("type", [
  Text,
  JsonObject,
  z.object({ type: z.literal("json_schema"), json_schema: z.object(JsonSchemaFields).strict() }).strict(),
]);

/** `text.format` of the Responses API (and of our Realtime session and response). */
export const TextFormatSchema = z.discriminatedUnion("type", [
  Text,
  JsonObject,
  z.object({ type: z.literal("json_schema"), ...JsonSchemaFields }).strict(),
]);

/** `text` of a Responses API request / Realtime session or response: the format (verbosity is refused elsewhere). */
export const TextConfigSchema = z.object({ format: TextFormatSchema.nullable().optional() }).loose();

type ChatResponseFormat = z.infer<typeof ChatResponseFormatSchema>;
/** A `text.format` as a request gives it. */
export type TextFormatRequest = z.infer<typeof TextFormatSchema>;

function jsonSchema(
  f: { name: string; schema?: Record<string, unknown>; strict?: boolean | null },
): OutputFormat {
  // A json_schema format without a schema constrains to a JSON object, as OpenAI reads it.
  return {
    type: "json_schema",
    name: f.name,
    schema: f.schema ?? { type: "object" },
    strict: f.strict === true,
  };
}

/** The output format of a chat completion's `response_format`; null for plain text. */
export function chatFormat(f: ChatResponseFormat | null | undefined): OutputFormat | null {
  if (!f || f.type === "text") return null;
  return f.type === "json_object" ? { type: "json_object" } : jsonSchema(f.json_schema);
}

/** The output format of a `text.format`; null for plain text. */
export function textFormat(f: TextFormatRequest | null | undefined): OutputFormat | null {
  if (!f || f.type === "text") return null;
  return f.type === "json_object" ? { type: "json_object" } : jsonSchema(f);
}

/** A format as the Responses API echoes it in `text.format`. */
export function textFormatObject(f: OutputFormat | null): Record<string, unknown> {
  if (f === null) return { type: "text" };
  if (f.type === "json_object") return { type: "json_object" };
  return { type: "json_schema", name: f.name, schema: f.schema, strict: f.strict };
}

/** A response's output format and the request parameter that set it (named in a compile error). */
export interface FormatSpec {
  value: OutputFormat;
  param: string;
}

/** The FormatSpec of a format read from `param`; undefined for plain text. */
export function formatSpec(value: OutputFormat | null, param: string): FormatSpec | undefined {
  return value ? { value, param } : undefined;
}
