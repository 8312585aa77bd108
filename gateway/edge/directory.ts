/**
 * The session directory on Deno KV, shared by every edge instance (docs/edge.md):
 *
 *   ["sinkstream", "session", id]            -> SessionEntry (where the session lives now)
 *   ["sinkstream", "checkpoint", id, gen, i] -> chunk i of checkpoint `gen` (JSON bytes, <= 60 000 each)
 *
 * Every write carries `expireIn` (the edge's `--session-ttl`), renewed with each checkpoint, i.e. every
 * turn. A new checkpoint's chunks are written under a fresh random `gen` first, then the entry is pointed at
 * it with `atomic().check(versionstamp)`, then the old chunks are deleted: a reader never sees a half
 * written checkpoint. A move (failover) is claimed the same way: the entry gets `moving = {by, until}` only
 * if it is unchanged since it was read, so of two edges that race to move a session exactly one restores
 * it; the other sees the claim, waits for it to end and then follows the session to its new backend. A
 * claim not finished by `until` (its edge died) may be taken over.
 */
import { type Checkpoint, CheckpointSchema } from "../realtime/internal_protocol.ts";

/** Largest KV value is 64 KiB; chunks stay below it with room for the key. */
const CHUNK_BYTES = 60_000;
/** Chunks written per atomic operation (KV caps one at 800 KiB of mutations). */
const CHUNKS_PER_WRITE = 12;

export interface CheckpointRef {
  gen: string;
  chunks: number;
  seq: number;
}

export interface SessionEntry {
  /** SHA-256 of the edge's resume token, hex. */
  tokenHash: string;
  backendUrl: string;
  backendSessionId: string;
  backendResumeToken: string;
  /** +1 per move. */
  epoch: number;
  moving: { by: string; until: number } | null;
  checkpoint: CheckpointRef | null;
}

export interface Versioned {
  entry: SessionEntry;
  versionstamp: string;
}

export type Claim = { claimed: true; at: Versioned } | { claimed: false; at: Versioned | null };

export async function tokenHash(token: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sessionKey = (id: string) => ["sinkstream", "session", id];
const chunkKey = (id: string, gen: string, i: number) => ["sinkstream", "checkpoint", id, gen, i];

export class Directory {
  constructor(readonly kv: Deno.Kv, readonly ttlMs: number) {}

  async get(id: string): Promise<Versioned | null> {
    const r = await this.kv.get<SessionEntry>(sessionKey(id));
    return r.value === null || r.versionstamp === null
      ? null
      : { entry: r.value, versionstamp: r.versionstamp };
  }

  /** Record a new session; false if the id exists (it never should: ids are random). */
  async create(id: string, entry: SessionEntry): Promise<Versioned | null> {
    const r = await this.kv.atomic().check({ key: sessionKey(id), versionstamp: null })
      .set(sessionKey(id), entry, { expireIn: this.ttlMs }).commit();
    return r.ok ? { entry, versionstamp: r.versionstamp } : null;
  }

  /** Replace the entry if it is still at `versionstamp`; the new version, or null if it changed meanwhile. */
  async update(id: string, at: Versioned, entry: SessionEntry): Promise<Versioned | null> {
    const r = await this.kv.atomic().check({ key: sessionKey(id), versionstamp: at.versionstamp })
      .set(sessionKey(id), entry, { expireIn: this.ttlMs }).commit();
    return r.ok ? { entry, versionstamp: r.versionstamp } : null;
  }

  /** Store a checkpoint and point the entry at it (if unchanged since `at`); the new version or null. */
  async saveCheckpoint(id: string, at: Versioned, cp: Checkpoint): Promise<Versioned | null> {
    const bytes = new TextEncoder().encode(JSON.stringify(cp));
    const gen = crypto.randomUUID();
    const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
    for (let first = 0; first < chunks; first += CHUNKS_PER_WRITE) {
      const op = this.kv.atomic();
      for (let i = first; i < Math.min(chunks, first + CHUNKS_PER_WRITE); i++) {
        op.set(chunkKey(id, gen, i), bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES), {
          expireIn: this.ttlMs,
        });
      }
      await op.commit();
    }
    const old = at.entry.checkpoint;
    const next = await this.update(id, at, { ...at.entry, checkpoint: { gen, chunks, seq: cp.seq } });
    await this.#deleteChunks(id, next === null ? { gen, chunks, seq: cp.seq } : old);
    return next;
  }

  async loadCheckpoint(id: string, ref: CheckpointRef): Promise<Checkpoint | null> {
    const parts: Uint8Array[] = [];
    for (let first = 0; first < ref.chunks; first += CHUNKS_PER_WRITE) {
      const keys = [];
      for (let i = first; i < Math.min(ref.chunks, first + CHUNKS_PER_WRITE); i++) {
        keys.push(chunkKey(id, ref.gen, i));
      }
      const got = await this.kv.getMany<Uint8Array[]>(keys);
      for (const g of got) {
        if (!(g.value instanceof Uint8Array)) return null; // expired or deleted meanwhile
        parts.push(g.value);
      }
    }
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    const r = CheckpointSchema.safeParse(JSON.parse(new TextDecoder().decode(all)));
    return r.success ? r.data : null;
  }

  /**
   * Claim the move of a session that lives on `fromUrl` (as this edge last knew it): the claim, or the
   * entry as it is now when another edge moved it already or holds a live claim (null: it is gone).
   */
  async claimMove(id: string, fromUrl: string, by: string, leaseMs: number): Promise<Claim> {
    for (;;) {
      const at = await this.get(id);
      if (at === null) return { claimed: false, at: null };
      const e = at.entry;
      const claimedByOther = e.moving !== null && e.moving.by !== by && e.moving.until > Date.now();
      if (e.backendUrl !== fromUrl || claimedByOther) return { claimed: false, at };
      const entry = { ...e, epoch: e.epoch + 1, moving: { by, until: Date.now() + leaseMs } };
      const next = await this.update(id, at, entry);
      if (next !== null) return { claimed: true, at: next };
      // Changed meanwhile (a checkpoint, another claim): look again.
    }
  }

  /** Wait until no live claim by another edge holds the entry (polls); the entry then, or null. */
  async settled(id: string, by: string, pollMs = 100): Promise<Versioned | null> {
    for (;;) {
      const at = await this.get(id);
      if (at === null) return null;
      const m = at.entry.moving;
      if (m === null || m.by === by || m.until <= Date.now()) return at;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  async #deleteChunks(id: string, ref: CheckpointRef | null): Promise<void> {
    if (ref === null) return;
    for (let first = 0; first < ref.chunks; first += CHUNKS_PER_WRITE) {
      const op = this.kv.atomic();
      for (let i = first; i < Math.min(ref.chunks, first + CHUNKS_PER_WRITE); i++) {
        op.delete(chunkKey(id, ref.gen, i));
      }
      await op.commit().catch(() => {}); // they expire anyway
    }
  }
}
