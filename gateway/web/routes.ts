/**
 * Serves the web chat page (index.html, app.js, style.css from this folder). The files are read
 * once, when the routes are created, so a running gateway never touches the disk for them.
 * Mount with `app.route("/", createWebRoutes())`.
 */
import { Hono } from "hono";
import { createHash } from "node:crypto";

interface StaticFile {
  body: Uint8Array<ArrayBuffer>;
  contentType: string;
  etag: string;
}

const FILES: Record<string, { file: string; contentType: string }> = {
  "/": { file: "index.html", contentType: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", contentType: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", contentType: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", contentType: "text/css; charset=utf-8" },
};

/** The page loads only its own script and stylesheet and talks only to its own origin. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

function load(file: string, contentType: string): StaticFile {
  const body = Deno.readFileSync(new URL(`./${file}`, import.meta.url));
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
  return { body, contentType, etag };
}

/** True when an If-None-Match header value names this ETag (or is `*`). */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim().replace(/^W\//, "");
    return t === "*" || t === etag;
  });
}

export function createWebRoutes(): Hono {
  const cache = new Map<string, StaticFile>();
  for (const [route, { file, contentType }] of Object.entries(FILES)) {
    cache.set(route, load(file, contentType));
  }
  const app = new Hono();
  for (const [route, entry] of cache) {
    app.get(route, (c) => {
      const headers: Record<string, string> = {
        "Content-Type": entry.contentType,
        // No hashed file names, so revalidate every time; the ETag turns that into a cheap 304.
        "Cache-Control": "no-cache",
        "ETag": entry.etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
      };
      if (entry.contentType.startsWith("text/html")) headers["Content-Security-Policy"] = CSP;
      if (matchesEtag(c.req.header("If-None-Match"), entry.etag)) {
        return c.body(null, 304, headers);
      }
      return c.body(entry.body, 200, headers);
    });
  }
  return app;
}
