/**
 * The default model download, end to end through @huggingface/hub, against a loopback stand-in for
 * the Hub (CI has no network): the stand-in speaks the Hub's file endpoints (paths-info, resolve with
 * a Range probe, full GET) and serves karpathy/tinyllamas' stories260K files from ../shared. Checks
 * the files land in the cache intact, the progress bar describes the real download (and not the
 * 1-byte probe), and a second start works offline from the cache.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { resolveModel } from "../../../gateway/config/model.ts";

const SHARED = fileURLToPath(new URL("../../../../shared/models/stories260K/", import.meta.url));
const REPO = "karpathy/tinyllamas";
const FILES: Record<string, string> = {
  "stories260K/stories260K.bin": `${SHARED}/stories260K.bin`,
  "stories260K/tok512.bin": `${SHARED}/tok512.bin`,
};
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

function standInHub(): { server: Deno.HttpServer<Deno.NetAddr>; requests: string[] } {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    requests.push(
      `${req.method} ${url.pathname}${req.headers.get("range") ? ` ${req.headers.get("range")}` : ""}`,
    );
    if (req.method === "POST" && url.pathname === `/api/models/${REPO}/paths-info/main`) {
      const { paths } = await req.json() as { paths: string[] };
      const out = [];
      for (const p of paths) {
        if (!FILES[p]) continue;
        const bytes = await Deno.readFile(FILES[p]);
        out.push({
          type: "file",
          path: p,
          size: bytes.length,
          oid: (await sha256(bytes)).slice(0, 40),
          lastCommit: { id: COMMIT, title: "stand-in", date: "2026-11-26T00:00:00Z" },
        });
      }
      return Response.json(out);
    }
    const prefix = `/${REPO}/resolve/main/`;
    if (req.method === "GET" && url.pathname.startsWith(prefix)) {
      const file = FILES[decodeURIComponent(url.pathname.slice(prefix.length))];
      if (!file) {
        return new Response("not found", { status: 404, headers: { "X-Error-Code": "EntryNotFound" } });
      }
      const bytes = await Deno.readFile(file);
      const etag = `"${(await sha256(bytes)).slice(0, 40)}"`;
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get("range") ?? "");
      if (m) {
        const [a, b] = [Number(m[1]), Math.min(Number(m[2]), bytes.length - 1)];
        return new Response(bytes.slice(a, b + 1), {
          status: 206,
          headers: { "Content-Range": `bytes ${a}-${b}/${bytes.length}`, ETag: etag },
        });
      }
      return new Response(bytes, { headers: { "Content-Length": String(bytes.length), ETag: etag } });
    }
    return new Response("unexpected", { status: 500 });
  });
  return { server, requests };
}

Deno.test("model: default stories260K download via the Hub protocol, progress bar, then offline from cache", async () => {
  const { server, requests } = standInHub();
  const cacheDir = await Deno.makeTempDir({ prefix: "sinkstream-hub-" });
  const hub = `http://127.0.0.1:${server.addr.port}`;
  const viaStandIn = ((input: RequestInfo | URL, init?: RequestInit) => {
    const u = input instanceof Request ? input.url : String(input);
    return fetch(u.replace("https://huggingface.co", hub), init);
  }) as typeof fetch;
  try {
    const progress: string[] = [];
    const m = await resolveModel(undefined, {
      cacheDir,
      fetch: viaStandIn,
      progress: (l) => progress.push(l),
    });
    assert.equal(m.name, "stories260K");
    assert.deepEqual(
      await Deno.readFile(m.modelPath),
      await Deno.readFile(FILES["stories260K/stories260K.bin"]),
    );
    assert.deepEqual(
      await Deno.readFile(m.tokenizerPath!),
      await Deno.readFile(FILES["stories260K/tok512.bin"]),
    );
    assert.ok(m.modelPath.startsWith(cacheDir), `${m.modelPath} is in the cache folder`);
    assert.ok(requests.some((r) => r.startsWith("GET") && !r.includes("bytes=")), "a full GET was made");

    const text = progress.join("");
    assert.match(text, /stories260K\.bin \[#{25}\] 100% 1\.0 MiB\/1\.0 MiB/);
    assert.match(text, /tok512\.bin \[#{25}\] 100% 6\.1 KiB\/6\.1 KiB/);
    // One bar per file, each ending at 100%: none for the library's 1-byte Range probes.
    assert.equal(text.match(/100%/g)?.length, 2, JSON.stringify(text));

    // Second start, offline: the cached copies are used, nothing is fetched.
    const offline = (() => Promise.reject(new TypeError("network unreachable"))) as typeof fetch;
    const again = await resolveModel(undefined, { cacheDir, fetch: offline, progress: () => {} });
    assert.deepEqual(await Deno.readFile(again.modelPath), await Deno.readFile(m.modelPath));
    assert.deepEqual(await Deno.readFile(again.tokenizerPath!), await Deno.readFile(m.tokenizerPath!));
  } finally {
    await server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});
