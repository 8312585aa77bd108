/**
 * The protocol between an edge (gateway/edge/) and its backends (this gateway), spoken over the ordinary
 * `/v1/realtime` socket of an edge-relayed session. A connection is an edge's when it carries the shared
 * secret in BACKEND_KEY_HEADER (auth.ts: backendKeyMatches) and the backend was started with the same
 * `--backend-key`; only then do these events exist. An ordinary client that sends one gets `unknown_event`
 * from a backend and from an edge alike, and an edge never passes one on to its clients.
 *
 * Backend -> edge:
 *  - `sinkstream.attached {seq}`: after `session.created` (new session or resume); `seq` = the client
 *    events the session has handled, in the edge's numbering.
 *  - `sinkstream.checkpoint {checkpoint}`: what rebuilds the session elsewhere, sent when a response has
 *    finished (before its closing events) and on attach: the cached token ids in cache order, the pending
 *    unfed tokens, the settings and the unanswered items, as of client event `seq`.
 *  - `sinkstream.restored {seq, session}`: a restore is complete (its prefill ran, its replay is handled).
 *  - `sinkstream.draining {}`: the backend is shutting down (SIGTERM): move idle sessions away.
 * Edge -> backend (a new session, before any client event):
 *  - `sinkstream.restore.begin {state, cache_tokens, pending_tokens, seq, replay}`, then
 *    `sinkstream.restore.tokens {tokens}` frames (the cache ids, then the pending ids), then
 *    `sinkstream.restore.end {}`; then `replay` client events that the backend handles silently (their
 *    answers were sent to the client before). A refusal is an ordinary `error` event with the
 *    `event_id` of the restore event (e.g. `server_busy` when the KV budget has no room).
 */
import { z } from "zod";
import { TextFormatSchema } from "../grammar/format.ts";
import type { SequenceLimits } from "../../runtime/types.ts";
import { TemperatureSchema } from "../config/server_options.ts";
import { sinkstreamSessionSchema } from "./protocol.ts";

export { BACKEND_KEY_HEADER, backendKeyMatches } from "../middleware/auth.ts";

/** Every internal event type starts with this; for an ordinary client such a type is unknown. */
export const INTERNAL_PREFIX = "sinkstream.";

export const INTERNAL = {
  attached: "sinkstream.attached",
  checkpoint: "sinkstream.checkpoint",
  restored: "sinkstream.restored",
  draining: "sinkstream.draining",
  restoreBegin: "sinkstream.restore.begin",
  restoreTokens: "sinkstream.restore.tokens",
  restoreEnd: "sinkstream.restore.end",
} as const;

/** Largest internal frame an edge sends: backends behind an edge need `--max-frame-bytes` at least this. */
export const INTERNAL_FRAME_BYTES = 60 * 1024;

/** Bounds an edge applies where it has no engine: representable values only; backends check their own. */
export const UNBOUNDED_LIMITS: SequenceLimits = {
  minCapacity: 1,
  maxCapacity: 0x7fffffff,
  defaultCapacity: 0,
  maxTopK: 0x7fffffff,
};

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const tokenId = z.number().int().min(0).max(0x7fffffff);

/** A session's settings and turn state: what a checkpoint carries and a restore applies. */
export function sessionStateSchema(limits: SequenceLimits) {
  return z.object({
    turns: count,
    instructions: z.string(),
    /** The instructions last put in the cache (a new turn repeats them only when they changed). */
    sent_instructions: z.string().nullable(),
    max_output_tokens: z.union([z.number().int().min(1), z.literal("inf")]),
    temperature: TemperatureSchema,
    /** The session's output format (`session.text.format`); absent or null: plain text. */
    text_format: TextFormatSchema.nullable().optional(),
    sinkstream: sinkstreamSessionSchema(limits),
  });
}
export type SessionState = z.infer<ReturnType<typeof sessionStateSchema>>;

/** An unanswered item of a checkpoint (replayed to the new backend as `conversation.item.create`). */
const CheckpointItemSchema = z.object({
  id: z.string(),
  role: z.enum(["user", "system", "assistant"]),
  content: z.array(z.object({ type: z.string(), text: z.string() })),
});
export type CheckpointItem = z.infer<typeof CheckpointItemSchema>;

/** The body of `sinkstream.checkpoint` (the edge stores it; a restore sends it back in pieces). */
export const CheckpointSchema = z.object({
  seq: count,
  state: sessionStateSchema(UNBOUNDED_LIMITS),
  cache_tokens: z.array(tokenId),
  pending_tokens: z.array(tokenId),
  items: z.array(CheckpointItemSchema),
});
export type Checkpoint = z.infer<typeof CheckpointSchema>;

export function restoreBeginSchema(limits: SequenceLimits) {
  return z.object({
    type: z.literal(INTERNAL.restoreBegin),
    event_id: z.string().optional(),
    /** Absent: the session keeps this backend's defaults (there was no checkpoint yet). */
    state: sessionStateSchema(limits).optional(),
    cache_tokens: count,
    pending_tokens: count,
    /** The client event number the restored state stands at (the backend counts on from it). */
    seq: count,
    /** Client events after restore.end to handle silently. */
    replay: count,
  });
}
export type RestoreBegin = z.infer<ReturnType<typeof restoreBeginSchema>>;

export const RestoreTokensSchema = z.object({
  type: z.literal(INTERNAL.restoreTokens),
  event_id: z.string().optional(),
  tokens: z.array(tokenId),
});

/** Split ids into runs whose `sinkstream.restore.tokens` frame stays within INTERNAL_FRAME_BYTES. */
export function tokenChunks(ids: readonly number[]): number[][] {
  const budget = INTERNAL_FRAME_BYTES - 128; // the frame's own keys
  const out: number[][] = [];
  let run: number[] = [];
  let bytes = 0;
  for (const id of ids) {
    const n = String(id).length + 1;
    if (bytes + n > budget) {
      out.push(run);
      run = [];
      bytes = 0;
    }
    run.push(id);
    bytes += n;
  }
  if (run.length > 0) out.push(run);
  return out;
}

/** The `conversation.item.create` that re-adds a checkpoint's unanswered item on a new backend. */
export function itemCreateOf(item: CheckpointItem): Record<string, unknown> {
  return {
    type: "conversation.item.create",
    item: { id: item.id, type: "message", role: item.role, content: item.content },
  };
}

/**
 * Every frame of a restore from `checkpoint`, in order: begin, the ids, end, then the replay (the
 * checkpoint's unanswered items as item.create events, then `later`: the client events the edge forwarded
 * after the checkpoint). `seq`: the client event number the restored session stands at after the replay.
 * No checkpoint (the backend was lost before its first one arrived): the backend's defaults + `later`.
 */
export function restoreFrames(
  checkpoint: Checkpoint | null,
  later: readonly string[],
  seq: number,
  eventId: string,
): string[] {
  const cache = checkpoint?.cache_tokens ?? [], pending = checkpoint?.pending_tokens ?? [];
  const items = checkpoint?.items ?? [];
  const replay = [...items.map((it) => JSON.stringify(itemCreateOf(it))), ...later];
  const begin = {
    type: INTERNAL.restoreBegin,
    event_id: eventId,
    ...(checkpoint ? { state: checkpoint.state } : {}),
    cache_tokens: cache.length,
    pending_tokens: pending.length,
    seq,
    replay: replay.length,
  };
  const frames = [JSON.stringify(begin)];
  for (const tokens of tokenChunks([...cache, ...pending])) {
    frames.push(JSON.stringify({ type: INTERNAL.restoreTokens, tokens }));
  }
  frames.push(JSON.stringify({ type: INTERNAL.restoreEnd }));
  return [...frames, ...replay];
}
