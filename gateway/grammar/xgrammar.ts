/**
 * Loads `@mlc-ai/web-xgrammar` (xgrammar compiled to WebAssembly; the wasm is embedded in its one
 * JavaScript file) under Deno. The package is a UMD bundle published with `"type": "module"`, so Deno
 * evaluates it as an ES module, where two things differ from the browser and Node it was built for:
 *  - at the top level `this` is undefined, so the bundle registers its classes on `globalThis.xgrammar`
 *    instead of exporting them;
 *  - Deno has `process` (for npm code) but no `require` / `__filename` in an ES module, and its Emscripten
 *    loader asks for `require("url").pathToFileURL(__filename)` unless a `location` exists.
 * So `location` is defined (as this module's URL: the loader only derives a directory from it; it fetches
 * nothing, the wasm being inline) for the import and the first instantiation, then both globals are
 * removed again. Tested by tests/gateway/grammar/xgrammar.test.ts.
 */
import type * as Xgrammar from "@mlc-ai/web-xgrammar";

export type XgrammarModule = typeof Xgrammar;

let loading: Promise<XgrammarModule> | null = null;

/** The xgrammar module, loaded and instantiated once per isolate. */
export function loadXgrammar(): Promise<XgrammarModule> {
  loading ??= load();
  return loading;
}

async function load(): Promise<XgrammarModule> {
  const g = globalThis as Record<string, unknown>;
  const hadLocation = Object.hasOwn(g, "location") && g.location !== undefined;
  if (!hadLocation) {
    Object.defineProperty(g, "location", {
      value: { href: import.meta.url },
      configurable: true,
      writable: true,
    });
  }
  try {
    await import("@mlc-ai/web-xgrammar");
    const xg = g.xgrammar as XgrammarModule | undefined;
    if (!xg?.TokenizerInfo) throw new Error("@mlc-ai/web-xgrammar did not register its classes");
    delete g.xgrammar;
    // The wasm instance is created by the first call that needs it; make it while `location` is set.
    const probe = await xg.TokenizerInfo.createTokenizerInfo(["a"], "raw", false, 1, []);
    probe.dispose();
    return xg;
  } finally {
    if (!hadLocation) delete g.location;
  }
}
