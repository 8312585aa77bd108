/**
 * What the edge reads in a backend's frames. The relay passes every frame on as it came, so it must not
 * parse the hot ones (token deltas): `frameType` reads the type from the fixed start every backend frame
 * has (`{"event_id":"…","type":"…"`, realtime/session.ts and response_events.ts write them so) and parses
 * the JSON only for a frame that does not start that way. The few events the edge changes (the session
 * objects, which name the backend's session id and resume token) are parsed and rebuilt.
 */

const HEAD = '{"event_id":"';
const TYPE = '","type":"';

/** The `type` of a server event frame ("" when it has none). */
export function frameType(frame: string): string {
  if (frame.startsWith(HEAD)) {
    const at = frame.indexOf(TYPE, HEAD.length);
    if (at > 0) {
      const start = at + TYPE.length;
      const end = frame.indexOf('"', start);
      if (end > start) return frame.slice(start, end);
    }
  }
  try {
    const t = (JSON.parse(frame) as { type?: unknown }).type;
    return typeof t === "string" ? t : "";
  } catch {
    return "";
  }
}

// deno-lint-ignore no-explicit-any
export type ServerEvent = Record<string, any>;

/** A backend's session object as the client of the edge sees it: the edge's session id and resume token. */
export function edgeSessionObject(session: ServerEvent, id: string, resumeToken: string): ServerEvent {
  return {
    ...session,
    id,
    sinkstream: { ...(session.sinkstream ?? {}), session_id: id, resume_token: resumeToken },
  };
}
