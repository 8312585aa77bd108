/** Schemas and a validator (ajv) shared by the structured-output tests. */
import assert from "node:assert/strict";
import { Ajv } from "ajv";

export { PET_SCHEMA } from "../../../bench/pet_schema.ts";

const ajv = new Ajv({ allErrors: true, strict: true });

/** Parses `text` as JSON and asserts it is valid under `schema` (ajv); returns the value. */
export function assertValid(text: string, schema: Record<string, unknown>, what = "output"): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    assert.fail(`${what} is not JSON (${(e as Error).message}): ${JSON.stringify(text)}`);
  }
  const validate = ajv.compile(schema);
  assert.ok(validate(value), `${what} ${text} is not valid: ${ajv.errorsText(validate.errors)}`);
  return value;
}

/** Asserts `text` is a JSON object. */
export function assertJsonObject(text: string, what = "output"): Record<string, unknown> {
  return assertValid(text, { type: "object" }, what) as Record<string, unknown>;
}
