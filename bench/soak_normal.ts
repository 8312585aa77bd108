/**
 * The soak's normal sessions: each a Realtime session holding a multi-round greedy chat (temperature 0)
 * with MT-Bench turns (lib.ts mtBenchTurn: the same conversation for the same session index in every
 * run), started STAGGER_MS apart, with a short think time between rounds that depends only on (session,
 * round). Per round it records the response's text, its status, and the time to first token: from
 * `response.create` sent to the first non-empty text delta.
 */
import { mtBenchTurn, type Prompt, RealtimeSession, realtimeUrl, sleep } from "./lib.ts";

export interface RoundRecord {
  session: number;
  round: number;
  /** The response's output text ("" when it failed). */
  text: string;
  /** ms from response.create sent to the first text delta; NaN when none came. */
  ttftMs: number;
  /** response.done's status (completed, incomplete, failed, cancelled) or "error <code>" / "lost". */
  status: string;
}

export interface NormalRun {
  rounds: RoundRecord[];
  /** Sessions that could not start (connect, session.created, session.update), with why. */
  sessionErrors: string[];
}

export interface NormalOptions {
  base: URL;
  sessions: number;
  maxTokens: number;
  prompts: Prompt[];
  /** performance.now() after which no round starts. */
  deadline: number;
}

/** Session i starts i x this after the first. */
export const STAGGER_MS = 50;
/** A round that has not finished this long after its response.create is given up ("lost"). */
const ROUND_TIMEOUT_MS = 120_000;
const SETUP_TIMEOUT_MS = 30_000;

/** A round that ended this way leaves the conversation as the other run has it. */
export function roundOk(r: RoundRecord): boolean {
  return r.status === "completed" || r.status === "incomplete";
}

/** Think time before round `round + 1` of session `session`: 100..499 ms, the same in every run. */
export function thinkMs(session: number, round: number): number {
  return 100 + (session * 7919 + round * 104_729) % 400;
}

export async function runNormalSessions(o: NormalOptions): Promise<NormalRun> {
  const run: NormalRun = { rounds: [], sessionErrors: [] };
  await Promise.all(Array.from({ length: o.sessions }, async (_, i) => {
    await sleep(i * STAGGER_MS);
    if (performance.now() >= o.deadline) return;
    const s = new RealtimeSession(realtimeUrl(o.base));
    try {
      await s.opened;
      await s.until(["session.created"], SETUP_TIMEOUT_MS);
      s.send({ type: "session.update", session: { max_output_tokens: o.maxTokens, temperature: 0 } });
      await s.until(["session.updated"], SETUP_TIMEOUT_MS);
    } catch (e) {
      run.sessionErrors.push(`session ${i}: ${(e as Error).message}`);
      s.close();
      return;
    }
    try {
      for (let r = 0; performance.now() < o.deadline; r++) {
        const record = await oneRound(s, i, r, mtBenchTurn(o.prompts, i, r));
        run.rounds.push(record);
        if (!roundOk(record)) break; // the conversation differs from the other run's from here on
        await sleep(thinkMs(i, r));
      }
    } finally {
      s.close();
    }
  }));
  return run;
}

async function oneRound(
  s: RealtimeSession,
  session: number,
  round: number,
  text: string,
): Promise<RoundRecord> {
  const record: RoundRecord = { session, round, text: "", ttftMs: NaN, status: "lost" };
  let sentAt = 0;
  s.onEvent = (e, at) => {
    if (e.type === "response.output_text.delta" && e.delta && Number.isNaN(record.ttftMs)) {
      record.ttftMs = at - sentAt;
    }
  };
  try {
    s.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    sentAt = performance.now();
    s.send({ type: "response.create" });
    // Any error event fails the round: the gateway refused this normal session's input or response.
    const e = await s.until(["response.done", "error"], ROUND_TIMEOUT_MS);
    if (e.type === "error") record.status = `error ${e.error?.code ?? "?"}`;
    else {
      record.status = e.response?.status ?? "?";
      record.text = e.response?.output?.[0]?.content?.[0]?.text ?? "";
    }
  } catch {
    // closed or timed out: "lost"
  } finally {
    s.onEvent = null;
  }
  return record;
}
