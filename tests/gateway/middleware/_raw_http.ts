/**
 * A hand-written HTTP/1.1 request over Deno.connect: fetch() cannot set Host or Origin freely, and these
 * tests must send exactly what a hostile page (or a client behind one) would.
 */
export interface RawResponse {
  status: number;
  headers: Headers;
  body: string;
}

const dec = new TextDecoder();

/**
 * Send `method path` with exactly `headers` (Host included; `Connection: close` unless given) to
 * 127.0.0.1:`port`; read the head, then the body by Content-Length (none for a 101).
 */
export async function rawRequest(
  port: number,
  path: string,
  headers: Record<string, string>,
  method = "GET",
): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const all = { Connection: "close", ...headers };
    const lines = [`${method} ${path} HTTP/1.1`, ...Object.entries(all).map(([k, v]) => `${k}: ${v}`)];
    await conn.write(new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\n`));
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(64 * 1024);
    const more = async () => {
      const n = await conn.read(chunk);
      if (n === null) return false;
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
      return true;
    };
    let end = -1;
    while ((end = dec.decode(buf).indexOf("\r\n\r\n")) < 0) {
      if (!await more()) throw new Error(`connection closed before the response head: ${dec.decode(buf)}`);
    }
    const [statusLine, ...fields] = dec.decode(buf).slice(0, end).split("\r\n");
    const h = new Headers();
    for (const f of fields) {
      const i = f.indexOf(":");
      if (i > 0) h.append(f.slice(0, i).trim(), f.slice(i + 1).trim());
    }
    const status = Number(statusLine.split(" ")[1]);
    const headLength = new TextEncoder().encode(dec.decode(buf).slice(0, end + 4)).length;
    const length = status === 101 ? 0 : Number(h.get("content-length") ?? 0);
    while (buf.length < headLength + length && await more());
    return { status, headers: h, body: dec.decode(buf.subarray(headLength, headLength + length)) };
  } finally {
    conn.close();
  }
}

/** The headers of a WebSocket upgrade request to /v1/realtime. */
export function upgradeHeaders(host: string, origin?: string): Record<string, string> {
  return {
    Host: host,
    Connection: "Upgrade",
    Upgrade: "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Protocol": "realtime",
    ...(origin ? { Origin: origin } : {}),
  };
}
