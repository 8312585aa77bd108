/**
 * The engine seam: the gateway app (everything but its entrypoint, gateway/main.ts) reaches the
 * engine only through runtime/types.ts, so another engine (a TensorRT-LLM adapter) can stand behind it.
 * Checked on the real module graph (`deno info`), and the FFI module itself must be the only place that
 * calls Deno.dlopen. (The edge, which has no engine at all: tests/gateway/edge/deployable.test.ts.)
 */
import assert from "node:assert/strict";
import { moduleGraph, ROOT } from "./_module_graph.ts";

Deno.test("seam: the gateway app imports no FFI code, only runtime/types.ts (+ the pure detokenizer, errors)", async () => {
  const mods = (await moduleGraph("gateway/app.ts")).local;
  assert.ok(mods.includes("gateway/scheduler/scheduler.ts"), `graph was read: ${mods.join(", ")}`);
  const runtime = mods.filter((m) => m.startsWith("runtime/"));
  // types.ts names the typed errors of StepResult.error (runtime/errors.ts touches no FFI)
  assert.deepEqual(runtime.sort(), ["runtime/detokenizer.ts", "runtime/errors.ts", "runtime/types.ts"]);
  for (const m of mods) {
    const src = await Deno.readTextFile(`${ROOT}/${m}`);
    assert.ok(!/Deno\.dlopen|UnsafePointer|UnsafeCallback/.test(src), `${m} touches FFI`);
  }
});

Deno.test("seam: runtime/ffi.ts is the only module that calls Deno.dlopen", async () => {
  const hits: string[] = [];
  async function walk(dir: string): Promise<void> {
    for await (const e of Deno.readDir(`${ROOT}/${dir}`)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (
        /\.(ts|js)$/.test(e.name) && (await Deno.readTextFile(`${ROOT}/${p}`)).includes("Deno.dlopen(")
      ) {
        hits.push(p);
      }
    }
  }
  for (const d of ["gateway", "runtime", "tools", "bench"]) await walk(d);
  assert.deepEqual(hits, ["runtime/ffi.ts"]);
});
