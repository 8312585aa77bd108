/**
 * What one connection may cost the server. The values are options of the gateway (their defaults live in
 * gateway/config/config.ts, the one owner); the constants below are internal and not options.
 */

/** Per-connection limits of the HTTP/1.1 server (all connections: HTTP and WebSocket). */
export interface ServerLimits {
  /** Request line + headers, bytes; a larger head gets 431 and the connection is closed. */
  maxHeadBytes: number;
  /** The whole head must arrive within this many ms of the connection opening or of the previous
   * response ending (keep-alive); else 408 (or a silent close when nothing arrived) and close. */
  headerTimeoutMs: number;
  /** The whole request body must arrive within this many ms of the end of its head; else 408 and close. */
  bodyTimeoutMs: number;
  /** Open connections; one more gets 503 and is closed at once. */
  maxConnections: number;
  /** Bytes queued for one connection that the kernel has not taken yet. Past it a WebSocket gets a last
   * error event and close 1008, an HTTP response is cut (connection closed, request signal aborted). */
  maxSendBufferBytes: number;
}

/** Per-socket limits of the WebSocket layer. */
export interface WebSocketLimits {
  /** Largest message (a frame, or the reassembled fragments), checked from the frame header before the
   * payload is read: over it, an error event then close 1009. */
  maxMessageBytes: number;
  /** No frame at all for this many ms: a ping; still nothing for as long again: close 1001. */
  idleTimeoutMs: number;
  /** Sustained read rate, bytes/s (each data frame costs at least WS_MIN_FRAME_COST_BYTES); over it the
   * socket is not read until the bucket refills (TCP backpressure to the client). 0 = unlimited. */
  readBytesPerSecond: number;
  /** What a socket may read at once above the rate (the bucket's size), bytes. */
  readBurstBytes: number;
}

/** The least a data frame costs against the read rate: a flood of tiny frames is bounded in frames/s. */
export const WS_MIN_FRAME_COST_BYTES = 1024;

/** How long a closing WebSocket waits for the peer's close frame and a closing connection for its
 * queued bytes to be written, ms. */
export const CLOSE_TIMEOUT_MS = 10_000;
/** After an HTTP connection's last response: how long the client's further bytes are read and dropped
 * (so that closing does not reset the connection before the client has read the response), ms. */
export const LINGER_MS = 2_000;
/** Most header fields in one request head (over it: 431). */
export const MAX_HEADER_FIELDS = 100;
/** Longest chunk-size line of a chunked request body (size, extensions, CRLF). */
export const MAX_CHUNK_LINE_BYTES = 1024;
/** Bytes the server reads from a socket per read call. */
export const READ_CHUNK_BYTES = 16 * 1024;
/** Block size of the send queue: small chunks queued behind a write in flight share blocks this big. */
export const SEND_BLOCK_BYTES = 16 * 1024;
/** Shutdown waits this long for connections to finish (close handshakes, last response bytes), ms. */
export const SHUTDOWN_GRACE_MS = 5_000;
