/** The module graph of an entry as `deno info --json` reads it: its local files (repo-relative) and every specifier. */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export async function moduleGraph(entry: string): Promise<{ local: string[]; specifiers: string[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: { specifier: string }[] };
  const specifiers = graph.modules.map((m) => m.specifier);
  const local = specifiers.filter((s) => s.startsWith("file://")).map((s) =>
    fileURLToPath(s).slice(ROOT.length)
  );
  return { local, specifiers };
}
