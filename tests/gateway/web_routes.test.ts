import assert from "node:assert/strict";
import { createWebRoutes } from "../../gateway/web/routes.ts";

Deno.test("web routes: serve the page, script and stylesheet with their content types", async () => {
  const app = createWebRoutes();
  const cases: [string, string, string][] = [
    ["/", "text/html; charset=utf-8", "<title>sinkstream chat</title>"],
    ["/index.html", "text/html; charset=utf-8", 'role="log"'],
    ["/app.js", "text/javascript; charset=utf-8", "/v1/realtime"],
    ["/style.css", "text/css; charset=utf-8", ".msg"],
  ];
  for (const [path, type, needle] of cases) {
    const res = await app.request(path);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("content-type"), type, path);
    assert.equal(res.headers.get("cache-control"), "no-cache", path);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
    assert.match(res.headers.get("etag") ?? "", /^"[A-Za-z0-9_-]+"$/, path);
    const text = await res.text();
    assert.ok(text.includes(needle), `${path} should contain ${needle}`);
  }
  const html = await app.request("/");
  assert.match(html.headers.get("content-security-policy") ?? "", /connect-src 'self'/);
  await html.body?.cancel();
});

Deno.test("web routes: If-None-Match with the current ETag answers 304 without a body", async () => {
  const app = createWebRoutes();
  const first = await app.request("/app.js");
  const etag = first.headers.get("etag");
  await first.body?.cancel();
  assert.ok(etag);
  const again = await app.request("/app.js", { headers: { "If-None-Match": `W/"nope", ${etag}` } });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), "");
  const stale = await app.request("/app.js", { headers: { "If-None-Match": '"stale"' } });
  assert.equal(stale.status, 200);
  await stale.body?.cancel();
});

Deno.test("web routes: only the page's own files are served", async () => {
  const app = createWebRoutes();
  for (const path of ["/routes.ts", "/../deno.json", "/v1/realtime", "/nope.js"]) {
    const res = await app.request(path);
    assert.equal(res.status, 404, path);
    await res.body?.cancel();
  }
});
