/**
 * Browser origin and Host checks.
 *
 * Origin: requests without an Origin header (servers, CLIs, SDKs) pass; a browser origin passes when it
 * is the server's own origin — the same scheme, host and port as the request's (`http` or `https` as
 * this server speaks it, and its Host header) — or is listed in `allowedOrigins` ("*" allows any).
 *
 * Host (DNS rebinding): a page on evil.example whose name is re-pointed at this server is same-origin
 * with it as far as the browser knows, so the Origin check alone lets it in. When nothing else stops it
 * — no API key, and listening beyond loopback — the Host header must name this server: an IP address
 * (a rebinding page always has a domain name), `localhost` / `*.localhost`, the listen address, or an
 * `allowedHosts` entry ("*" allows any).
 */
import type { MiddlewareHandler } from "hono";
import { openaiError } from "../http/errors.ts";

export interface OriginGuardOptions {
  /** --allow-origin: origins allowed besides same-origin; "*" = any. */
  allowedOrigins: readonly string[];
  /** --allow-host: Host names allowed besides IP addresses, localhost and the listen address; "*" = any. */
  allowedHosts: readonly string[];
  /** --api-key: with keys configured the Host header is not checked (a rebinding page has no key). */
  apiKeys: readonly string[];
  /** --host: the listen address. */
  host: string;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The host part of a URL host (brackets of IPv6 kept), lowercased, without a trailing dot. */
function bareHostname(hostname: string): string {
  return hostname.toLowerCase().replace(/\.$/, "");
}

/** Whether `host` (a name or address, IPv6 with or without brackets) is a loopback address or name. */
export function isLoopbackHost(host: string): boolean {
  const h = bareHostname(host).replace(/^\[|\]$/g, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" ||
    (IPV4.test(h) && h.startsWith("127."));
}

/** Whether the Host header is checked: no API key, and listening beyond loopback. */
export function hostCheckApplies(opts: Pick<OriginGuardOptions, "apiKeys" | "host">): boolean {
  return opts.apiKeys.length === 0 && !isLoopbackHost(opts.host);
}

/** The origin of a URL, or the lowercased text when it is not one ("null"). */
function originOf(url: string): string {
  try {
    const o = new URL(url).origin;
    if (o !== "null") return o;
  } catch { /* not a URL */ }
  return url.replace(/\/+$/, "").toLowerCase();
}

export function originGuard(opts: OriginGuardOptions): MiddlewareHandler {
  const anyOrigin = opts.allowedOrigins.includes("*");
  const origins = new Set(opts.allowedOrigins.map(originOf));
  const checkHost = hostCheckApplies(opts) && !opts.allowedHosts.includes("*");
  const hosts = new Set([...opts.allowedHosts, opts.host].map(bareHostname));
  const hostAllowed = (hostname: string) =>
    hostname.startsWith("[") || IPV4.test(hostname) || isLoopbackHost(hostname) || hosts.has(hostname);

  return async (c, next) => {
    const hostHeader = c.req.header("host") ?? "";
    let self: URL | null = null;
    try {
      self = new URL(`${new URL(c.req.url).protocol}//${hostHeader}`);
    } catch { /* no or malformed Host */ }
    if (checkHost && (!self || !hostAllowed(bareHostname(self.hostname)))) {
      return openaiError(
        c,
        403,
        `host ${hostHeader.slice(0, 200)} is not allowed (see --allow-host)`,
        "host_not_allowed",
      );
    }
    const origin = c.req.header("origin");
    if (!origin || anyOrigin) return await next();
    const o = originOf(origin);
    if ((self && o === self.origin) || origins.has(o)) return await next();
    return openaiError(
      c,
      403,
      `origin ${origin.slice(0, 200)} is not allowed (see --allow-origin)`,
      "origin_not_allowed",
    );
  };
}
