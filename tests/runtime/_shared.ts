/** Test helpers: paths of the shared test material and the repo. */
import { fileURLToPath } from "node:url";

/** Absolute path of a file under the shared test material (env SINKSTREAM_SHARED or ../shared). */
export function shared(rel: string): string {
  const base = Deno.env.get("SINKSTREAM_SHARED");
  if (base) return `${base.replace(/\/$/, "")}/${rel}`;
  return fileURLToPath(new URL(`../../../shared/${rel}`, import.meta.url));
}

/** Absolute path inside the repository. */
export function repo(rel: string): string {
  return fileURLToPath(new URL(`../../${rel}`, import.meta.url));
}

export const STORY_PREFIX =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
export const STORY_SENTENCE = "Once upon a time, there was a little girl named Lily.";
