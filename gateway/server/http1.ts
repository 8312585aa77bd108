/**
 * HTTP/1.1 wire format (RFC 9112): the request head parser (strict: anything ambiguous is a 400, never a
 * guess) and the response head writer. No I/O here.
 */
import { MAX_HEADER_FIELDS } from "./limits.ts";

/** Every code the server itself answers with (its app turns them into its own error shape). */
export type HttpErrorCode =
  | "bad_body"
  | "bad_framing"
  | "bad_header"
  | "bad_host"
  | "bad_request"
  | "bad_request_line"
  | "bad_request_target"
  | "bad_upgrade"
  | "incomplete_body"
  | "body_timeout"
  | "header_timeout"
  | "unsupported_websocket_version"
  | "upgrade_required"
  | "head_too_large"
  | "too_many_headers"
  | "trailers_too_large"
  | "http_version_not_supported"
  | "too_many_connections"
  | "internal_error";

/** A request the server refuses before any handler runs: status, machine code and a one-line reason. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly status: number, readonly code: HttpErrorCode, message: string) {
    super(message);
  }
}

export interface RequestHead {
  method: string;
  /** The request target as sent: origin-form (`/path?q`) or absolute-form (`http://host/path`). */
  target: string;
  minor: 0 | 1;
  /** Field names lower-cased, values without surrounding whitespace, in order. */
  headers: [string, string][];
}

/** How the request body is delimited and what the connection does afterwards. */
export interface RequestFraming {
  /** Body bytes (0: none) or "chunked". */
  body: number | "chunked";
  keepAlive: boolean;
  expectContinue: boolean;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TARGET = /^[\x21-\x7e]+$/;
// Field values: visible ASCII, obs-text (0x80-0xff), space and tab; no other control characters.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const CONTENT_LENGTH = /^[0-9]{1,15}$/;

/** Index of the CRLFCRLF that ends a head starting at 0, or -1; `from`: bytes already searched. */
export function headEnd(b: Uint8Array, from = 0): number {
  for (let i = Math.max(3, from); i < b.length; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i - 3;
  }
  return -1;
}

/** ISO-8859-1 (byte = code point), as HTTP heads are decoded. */
export function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 4096) {
    s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 4096)));
  }
  return s;
}

/** Parse a head (without its final CRLFCRLF). Throws HttpError. */
export function parseHead(bytes: Uint8Array): RequestHead {
  const lines = latin1(bytes).split("\r\n");
  const m = /^([^ ]+) ([^ ]+) HTTP\/([0-9])\.([0-9])$/.exec(lines[0]);
  if (!m || !TOKEN.test(m[1]) || !TARGET.test(m[2])) {
    throw new HttpError(400, "bad_request_line", "malformed request line");
  }
  if (m[3] !== "1" || (m[4] !== "0" && m[4] !== "1")) {
    throw new HttpError(505, "http_version_not_supported", `HTTP/${m[3]}.${m[4]} is not supported`);
  }
  if (!m[2].startsWith("/") && !/^https?:\/\//i.test(m[2])) {
    throw new HttpError(400, "bad_request_target", "the request target must be a path or an absolute URL");
  }
  if (lines.length - 1 > MAX_HEADER_FIELDS) {
    throw new HttpError(431, "too_many_headers", `more than ${MAX_HEADER_FIELDS} header fields`);
  }
  const headers: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      // Also catches obs-fold (a line starting with whitespace), bare CR/LF and "name : value".
      throw new HttpError(400, "bad_header", `malformed header line ${i}`);
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) throw new HttpError(400, "bad_header", `invalid characters in ${name}`);
    headers.push([name.toLowerCase(), value]);
  }
  return { method: m[1], target: m[2], minor: m[4] === "1" ? 1 : 0, headers };
}

function values(head: RequestHead, name: string): string[] {
  return head.headers.filter(([n]) => n === name).map(([, v]) => v);
}

/** Comma-separated tokens of every `name` field, lower-cased. */
export function tokens(head: RequestHead, name: string): string[] {
  return values(head, name).flatMap((v) => v.split(",")).map((t) => t.trim().toLowerCase()).filter(
    (t) => t !== "",
  );
}

/** Body length and connection persistence (RFC 9112 6.3, 9.3). Throws HttpError. */
export function requestFraming(head: RequestHead): RequestFraming {
  const te = tokens(head, "transfer-encoding");
  const cl = values(head, "content-length").flatMap((v) => v.split(",")).map((v) => v.trim());
  const connection = tokens(head, "connection");
  const keepAlive = head.minor === 1 ? !connection.includes("close") : connection.includes("keep-alive");
  const expect = values(head, "expect");
  const expectContinue = head.minor === 1 && expect.some((v) => v.toLowerCase() === "100-continue");
  if (te.length > 0) {
    if (cl.length > 0) {
      throw new HttpError(400, "bad_framing", "both Transfer-Encoding and Content-Length are present");
    }
    if (head.minor === 0 || te.length !== 1 || te[0] !== "chunked") {
      throw new HttpError(400, "bad_framing", "only Transfer-Encoding: chunked is supported");
    }
    return { body: "chunked", keepAlive, expectContinue };
  }
  if (cl.length === 0) return { body: 0, keepAlive, expectContinue };
  if (!cl.every((v) => CONTENT_LENGTH.test(v) && v === cl[0])) {
    throw new HttpError(400, "bad_framing", "invalid Content-Length");
  }
  return { body: Number(cl[0]), keepAlive, expectContinue };
}

const STATUS_TEXT: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Status line + fields + blank line, as bytes (field values are ByteStrings: one byte per char). */
export function responseHead(status: number, fields: Iterable<[string, string]>): Uint8Array {
  let s = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Status"}\r\n`;
  for (const [name, value] of fields) s += `${name}: ${value}\r\n`;
  s += "\r\n";
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

let dateSecond = 0;
let dateText = "";
/** The Date field value (RFC 9110 6.6.1), formatted at most once a second. */
export function httpDate(): string {
  const now = Math.floor(Date.now() / 1000);
  if (now !== dateSecond) {
    dateSecond = now;
    dateText = new Date(now * 1000).toUTCString();
  }
  return dateText;
}
