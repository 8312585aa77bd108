/**
 * Opening a session on a backend, for the relay: a new one, a resume of an existing one, or a restore of a
 * checkpoint into a new one. Each reads the backend's first answers (`session.created` +
 * `sinkstream.attached`, or an error and a close) within a deadline and says plainly what happened, so the
 * relay can try the next backend. Connection failures open the backend's circuit breaker; a refusal for
 * draining marks it draining.
 */
import type { ErrorCode } from "../errors.ts";
import { INTERNAL } from "../realtime/internal_protocol.ts";
import type { Backend, BackendPool } from "./backend_pool.ts";
import { frameType, type ServerEvent } from "./frames.ts";
import { UpstreamError, UpstreamSocket } from "./upstream_socket.ts";

/** How long a restore may take (its prefill is the whole cached window), ms. */
export const RESTORE_TIMEOUT_MS = 120_000;
/** Largest message the edge accepts from a backend: a checkpoint holds a window of ids and pending ids. */
export const MAX_BACKEND_MESSAGE_BYTES = 64 << 20;

export interface Attached {
  backend: Backend;
  socket: UpstreamSocket;
  /** The backend's session object (its session.created). */
  session: ServerEvent;
  /** Client events the backend session has handled (sinkstream.attached). */
  seq: number;
}

export interface OpenFailure {
  failed: true;
  /** unreachable: no connection or no answer; refused: it answered no (busy, draining, bad key); gone:
   * the session to resume is not there; in_use: another connection holds it. */
  kind: "unreachable" | "refused" | "gone" | "in_use";
  code: ErrorCode;
  message: string;
}

const fail = (kind: OpenFailure["kind"], code: ErrorCode, message: string): OpenFailure => ({
  failed: true,
  kind,
  code,
  message,
});

/** The next message within `ms`, or null (the socket is aborted on timeout). */
async function nextWithin(socket: UpstreamSocket, ms: number): Promise<string | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => {
      socket.abort();
      resolve(null);
    }, ms);
  });
  try {
    return await Promise.race([socket.next(), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** An `error` event from a backend as a failure. */
function refusal(pool: BackendPool, b: Backend, ev: ServerEvent): OpenFailure {
  const code = (ev.error?.code ?? "internal_error") as ErrorCode;
  const message = String(ev.error?.message ?? "refused");
  if (code === "session_not_found") return fail("gone", code, message);
  if (code === "session_in_use") return fail("in_use", code, message);
  if (code === "server_shutting_down") pool.markDraining(b);
  return fail("refused", code, message);
}

/** Open a session on `b` (new, or a resume of `resume`) and read its greeting. */
export async function openBackendSession(
  pool: BackendPool,
  b: Backend,
  resume: { id: string; token: string } | null,
): Promise<Attached | OpenFailure> {
  const url = new URL(b.realtime);
  if (resume) {
    url.searchParams.set("session_id", resume.id);
    url.searchParams.set("resume_token", resume.token);
  }
  const timeout = pool.opts.timeoutMs;
  let socket: UpstreamSocket;
  try {
    socket = await UpstreamSocket.connect(url, {
      headers: pool.headers,
      protocols: ["realtime"],
      maxMessageBytes: MAX_BACKEND_MESSAGE_BYTES,
      connectTimeoutMs: timeout,
    });
  } catch (e) {
    if (!(e instanceof UpstreamError)) throw e;
    pool.connectFailed(b);
    if (e.status === 401) {
      console.error(`sinkstream-edge: ${b.name} (${b.base.origin}) refused the backend key: ${e.body}`);
    }
    const code = e.status === 401 ? "invalid_api_key" : "backend_unavailable";
    return fail(e.status === 401 ? "refused" : "unreachable", code, e.message);
  }
  let session: ServerEvent | null = null;
  for (;;) {
    const m = await nextWithin(socket, timeout);
    if (m === null) {
      pool.connectFailed(b);
      return fail("unreachable", "backend_unavailable", `${b.name} closed the session before greeting it`);
    }
    const type = frameType(m);
    if (type === "error") {
      socket.close();
      return refusal(pool, b, JSON.parse(m));
    }
    if (type === "session.created") session = JSON.parse(m).session;
    else if (type === INTERNAL.attached && session !== null) {
      return { backend: b, socket, session, seq: JSON.parse(m).seq };
    }
  }
}

/** Send a restore's frames into a new backend session and wait for `sinkstream.restored`. */
export async function restoreInto(
  pool: BackendPool,
  a: Attached,
  frames: readonly string[],
): Promise<ServerEvent | OpenFailure> {
  for (const f of frames) a.socket.send(f);
  const deadline = Date.now() + RESTORE_TIMEOUT_MS;
  for (;;) {
    const m = await nextWithin(a.socket, Math.max(1, deadline - Date.now()));
    if (m === null) {
      pool.connectFailed(a.backend);
      return fail("unreachable", "backend_unavailable", `${a.backend.name} ended the restore`);
    }
    const type = frameType(m);
    if (type === INTERNAL.restored) return JSON.parse(m);
    if (type === "error") {
      a.socket.close();
      return refusal(pool, a.backend, JSON.parse(m));
    }
    // Anything else (a checkpoint of the restored state) is not the answer yet.
  }
}

export function isFailure(x: unknown): x is OpenFailure {
  return typeof x === "object" && x !== null && (x as { failed?: unknown }).failed === true;
}
