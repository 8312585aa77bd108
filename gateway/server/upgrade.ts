/**
 * The WebSocket opening handshake (RFC 6455 section 4.2) and the hook a handler calls to accept it.
 *
 * Our server passes a `ServerEnv` as the second argument of `app.fetch` (Hono's `c.env`); a handler calls
 * `upgradeWebSocket(c, { protocols })`, which returns `{ socket, response }` like `Deno.upgradeWebSocket`:
 * return the response and the server switches the connection to the socket. So the app's middleware
 * (auth, origin) runs before the upgrade. A request that is not a valid upgrade gets `response` = a
 * 400 / 426 error (never a throw, never a 500) and a socket that never opens.
 */
import type { Context } from "hono";
import { createHash } from "node:crypto";
import { HttpError } from "./http1.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A Sec-WebSocket-Key: base64 of 16 bytes. */
const KEY = /^[A-Za-z0-9+/]{22}==$/;

export interface UpgradeOptions {
  /**
   * Subprotocols this endpoint speaks, preferred first; an entry ending in `*` matches every offered
   * protocol starting with what precedes it. The server selects the first offered protocol that matches
   * the earliest entry, or none: it never selects a protocol the client did not offer.
   */
  protocols?: readonly string[];
}

export interface UpgradeResult {
  socket: WebSocket;
  response: Response;
}

export type UpgradeWebSocket = (req: Request, opts?: UpgradeOptions) => UpgradeResult;

/** What our server passes to the handler (Hono: `c.env`). */
export interface ServerEnv {
  upgradeWebSocket: UpgradeWebSocket;
  remoteAddr: Deno.NetAddr;
  /** Bytes queued on this connection that the kernel has not taken yet. */
  readonly bufferedAmount: number;
}

/** Accept a WebSocket upgrade from a Hono handler served by our server (see the file comment). */
export function upgradeWebSocket(c: Context, opts?: UpgradeOptions): UpgradeResult {
  const env = c.env as Partial<ServerEnv> | undefined;
  if (typeof env?.upgradeWebSocket !== "function") {
    throw new Error("upgradeWebSocket: the app is not served by gateway/server (no upgrade hook in c.env)");
  }
  return env.upgradeWebSocket(c.req.raw, opts);
}

/** The offered subprotocols (every Sec-WebSocket-Protocol field, comma-separated, spaces optional). */
export function offeredProtocols(value: string | null): string[] {
  if (value === null) return [];
  const list = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const bad = list.find((p) => !TOKEN.test(p));
  if (bad !== undefined) throw new HttpError(400, "bad_upgrade", `invalid subprotocol "${bad.slice(0, 40)}"`);
  return list;
}

/** Our choice among the offered protocols (see UpgradeOptions.protocols). */
export function selectProtocol(offered: readonly string[], ours: readonly string[]): string | undefined {
  for (const want of ours) {
    const hit = want.endsWith("*")
      ? offered.find((p) => p.startsWith(want.slice(0, -1)))
      : offered.find((p) => p === want);
    if (hit !== undefined) return hit;
  }
  return undefined;
}

export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

function listHas(headers: Headers, name: string, token: string): boolean {
  return (headers.get(name) ?? "").split(",").some((t) => t.trim().toLowerCase() === token);
}

export interface Handshake {
  accept: string;
  protocol: string | undefined;
}

/** Check an upgrade request (HTTP/1.1 head already parsed); throws HttpError 400 / 426. */
export function handshake(req: Request, http11: boolean, opts: UpgradeOptions = {}): Handshake {
  const h = req.headers;
  if (!listHas(h, "upgrade", "websocket")) {
    throw new HttpError(426, "upgrade_required", "send Upgrade: websocket to open a WebSocket");
  }
  if (req.method !== "GET" || !http11) {
    throw new HttpError(400, "bad_upgrade", "a WebSocket upgrade must be an HTTP/1.1 GET");
  }
  if (!listHas(h, "connection", "upgrade")) {
    throw new HttpError(400, "bad_upgrade", "a WebSocket upgrade needs Connection: Upgrade");
  }
  if (h.get("sec-websocket-version")?.trim() !== "13") {
    throw new HttpError(426, "unsupported_websocket_version", "only WebSocket version 13 is supported");
  }
  const key = h.get("sec-websocket-key")?.trim() ?? "";
  if (!KEY.test(key)) throw new HttpError(400, "bad_upgrade", "missing or malformed Sec-WebSocket-Key");
  const offered = offeredProtocols(h.get("sec-websocket-protocol"));
  return { accept: acceptKey(key), protocol: selectProtocol(offered, opts.protocols ?? []) };
}
