/** A JSON schema for the structured-output tests and bench/grammar.ts: required string / integer / enum / array
 * fields and a nested object, every string and array bounded. */
export const PET_SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 24 },
    age: { type: "integer", minimum: 1, maximum: 99 },
    mood: { type: "string", enum: ["happy", "sad", "sleepy"] },
    toys: { type: "array", items: { type: "string", maxLength: 16 }, minItems: 1, maxItems: 3 },
    home: {
      type: "object",
      properties: {
        town: { type: "string", maxLength: 20 },
        rooms: { type: "integer", minimum: 1, maximum: 9 },
      },
      required: ["town", "rooms"],
      additionalProperties: false,
    },
  },
  required: ["name", "age", "mood", "toys", "home"],
  additionalProperties: false,
};
