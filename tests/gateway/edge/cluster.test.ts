/**
 * The edge in front of three backend gateway processes (stories260K), on a SQLite KV file, all real
 * processes on loopback (issue #8's tests): placement over the three, the same greedy conversation as
 * straight against a backend, the openai SDK through the edge, an edge killed and replaced (clients resume
 * on the same backend sessions, no re-prefill), a backend killed (its sessions migrate with their context,
 * the others see nothing), a backend drained (no new sessions, its running response finishes).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/realtime/websocket";
import { type Ev, WsClient } from "../_gateway.ts";
import { type Proc, startBackend, startEdge } from "./_cluster.ts";

const text = (done: Ev) => done.response.output[0]?.content?.[0]?.text ?? "";
const usage = (done: Ev) => done.response.usage;

/** The backend name (b0, b1, …) the edge's log says each session was placed on or moved to. */
function placements(edge: Proc): Map<string, string> {
  const at = new Map<string, string>();
  for (const l of edge.lines) {
    const m = /(?:placed (sess_\w+) on (b\d+))|(?:moved (sess_\w+) from b\d+ to (b\d+))/.exec(l);
    if (m) at.set(m[1] ?? m[3], m[2] ?? m[4]);
  }
  return at;
}

async function session(url: string): Promise<{ c: WsClient; id: string; token: string }> {
  const c = await WsClient.open(url);
  const created = await c.next("session.created");
  return { c, id: created.session.sinkstream.session_id, token: created.session.sinkstream.resume_token };
}

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function metric(proc: Proc, name: string): Promise<number> {
  const text = await (await fetch(`${proc.http}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name)) sum += Number(line.split(" ").at(-1));
  return sum;
}

const NativeWebSocket = globalThis.WebSocket;
/** The SDK insists on wss://; the edge under test speaks ws:// on loopback (as in openai_sdk.test.ts). */
class LoopbackWebSocket extends NativeWebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(String(url).replace(/^wss:\/\/127\.0\.0\.1:/, "ws://127.0.0.1:"), protocols);
  }
}

Deno.test("edge cluster: 3 backends + edge on SQLite KV", async (t) => {
  const backends = await Promise.all([0, 1, 2].map(() => startBackend(["--drain-timeout", "30"])));
  const kvFile = await Deno.makeTempFile({ suffix: ".sqlite3" });
  let edge = await startEdge(backends.map((b) => b.http), kvFile);
  const names = new Map(backends.map((b, i) => [`b${i}`, b]));
  try {
    await t.step(
      "30 sessions spread over all three, no backend more than twice another's share",
      async () => {
        const all = await Promise.all(Array.from({ length: 30 }, () => session(edge.ws)));
        await waitFor(() => placements(edge).size >= 30, "30 placements logged");
        const per = new Map<string, number>();
        for (const s of all) {
          const b = placements(edge).get(s.id)!;
          per.set(b, (per.get(b) ?? 0) + 1);
        }
        const counts = [...names.keys()].map((n) => per.get(n) ?? 0);
        assert.ok(
          Math.min(...counts) > 0 && Math.max(...counts) <= 2 * Math.min(...counts),
          `spread ${counts}`,
        );
        // The client sees the edge's ids only: the session id is the edge's, in both places.
        for (const s of all) assert.match(s.id, /^sess_/);
        assert.equal(await metric(edge, "sinkstream:edge_placements_total"), 30);
        await Promise.all(all.map((s) => s.c.close()));
      },
    );

    await t.step(
      "a greedy 3-round conversation through the edge = the same straight against a backend",
      async () => {
        const rounds = ["Tell me about Lily.", "What did she find?", "And then?"];
        const via = await session(edge.ws);
        const direct = await WsClient.open(backends[0].ws);
        await direct.next("session.created");
        for (const r of rounds) {
          const [a, b] = [
            await via.c.turn(r, { max_output_tokens: 12 }),
            await direct.turn(r, { max_output_tokens: 12 }),
          ];
          assert.equal(text(a), text(b));
          assert.equal(usage(a).input_tokens, usage(b).input_tokens);
          assert.equal(usage(a).sinkstream.cached_tokens, usage(b).sinkstream.cached_tokens);
        }
        assert.deepEqual(via.c.events.filter((e) => e.type.startsWith("sinkstream.")), []);
        await via.c.close();
        await direct.close();
      },
    );

    await t.step("the official openai SDK through the edge: Realtime, chat completions, models", async () => {
      globalThis.WebSocket = LoopbackWebSocket as typeof WebSocket;
      try {
        const client = new OpenAI({ apiKey: "unused", baseURL: `${edge.http}/v1` });
        const rt = new OpenAIRealtimeWebSocket({ model: "stories260K" }, client);
        const created = await new Promise<{ type?: string }>((r) =>
          rt.on("session.created", (e) => r(e.session))
        );
        assert.equal(created.type, "realtime");
        rt.send({
          type: "conversation.item.create",
          item: {
            type: "message",
            role: "user",
            content: [{ type: "input_text", text: "Once upon a time" }],
          },
        });
        let streamed = "";
        rt.on("response.output_text.delta", (e) => (streamed += e.delta));
        const done = new Promise<{ response: { status?: string; usage?: { output_tokens?: number } } }>((r) =>
          rt.on("response.done", r)
        );
        rt.send({ type: "response.create", response: { max_output_tokens: 16 } });
        const d = await done;
        assert.equal(d.response.status, "incomplete");
        assert.equal(d.response.usage?.output_tokens, 16);
        assert.ok(streamed.length > 0);
        const closed = new Promise((r) => rt.socket.addEventListener("close", r));
        rt.close();
        await closed;
      } finally {
        globalThis.WebSocket = NativeWebSocket;
      }
      const client = new OpenAI({ apiKey: "unused", baseURL: `${edge.http}/v1`, maxRetries: 0 });
      assert.deepEqual((await client.models.list()).data.map((m) => m.id), ["stories260K"]);
      const messages = [{ role: "user" as const, content: "Once upon a time" }];
      const r = await client.chat.completions.create({ model: "stories260K", messages, max_tokens: 12 });
      const s = await client.chat.completions.create({
        model: "stories260K",
        messages,
        max_tokens: 12,
        stream: true,
      });
      let joined = "";
      for await (const chunk of s) joined += chunk.choices[0]?.delta?.content ?? "";
      assert.equal(joined, r.choices[0].message.content);
    });

    await t.step(
      "kill -9 the edge; a new edge on the same KV: clients resume on the same backend sessions",
      async () => {
        const a = await session(edge.ws);
        const direct = await WsClient.open(backends[0].ws);
        await direct.next("session.created");
        const first = await a.c.turn("Tell me about Tom.", { max_output_tokens: 10 });
        await direct.turn("Tell me about Tom.", { max_output_tokens: 10 });
        await edge.kill("SIGKILL");
        await a.c.closed;
        edge = await startEdge(backends.map((b) => b.http), kvFile);
        const again = await WsClient.open(`${edge.ws}?session_id=${a.id}&resume_token=${a.token}`);
        const created = await again.next("session.created");
        assert.equal(created.session.id, a.id);
        assert.equal(created.session.sinkstream.cached_tokens, usage(first).sinkstream.cached_tokens);
        const [next, ref] = [await again.turn("What did he do?"), await direct.turn("What did he do?")];
        // No re-prefill: the next turn's input is the new turn only, as on an uninterrupted session.
        assert.equal(usage(next).input_tokens, usage(ref).input_tokens);
        assert.equal(text(next), text(ref));
        assert.ok(!again.events.some((e) => e.type === "sinkstream.session.migrated"));
        assert.equal(await metric(edge, "sinkstream:edge_reattached_total"), 1);
        assert.equal(await metric(edge, "sinkstream:edge_restores_total"), 0);
        await again.close();
        await direct.close();
        // A wrong token is refused like at a backend.
        const wrong = await WsClient.open(`${edge.ws}?session_id=${a.id}&resume_token=00`);
        assert.equal((await wrong.next("error")).error.code, "session_not_found");
        assert.equal((await wrong.closed).code, 4404);
      },
    );

    await t.step(
      "kill -9 a backend mid-conversation: its sessions migrate with their context; others see nothing",
      async () => {
        const all = await Promise.all(Array.from({ length: 6 }, () => session(edge.ws)));
        await waitFor(() => all.every((s) => placements(edge).has(s.id)), "placements");
        const before = await Promise.all(
          all.map((s) => s.c.turn("Tell me a story.", { max_output_tokens: 8 })),
        );
        const victimName = placements(edge).get(all[0].id)!;
        const victim = names.get(victimName)!;
        const onVictim = all.filter((s) => placements(edge).get(s.id) === victimName);
        const others = all.filter((s) => placements(edge).get(s.id) !== victimName);
        assert.ok(others.length > 0, "sessions on other backends too");
        // A response is running on the victim (and elsewhere) when it dies.
        for (const s of [onVictim[0], others[0]]) {
          s.c.send({ type: "response.create", response: { max_output_tokens: 100_000 } });
          await s.c.next("response.output_text.delta");
        }
        await victim.kill("SIGKILL");
        names.delete(victimName);
        const failed = await onVictim[0].c.next("response.done");
        assert.equal(failed.response.status, "failed");
        assert.equal(failed.response.status_details.error.code, "backend_lost");
        for (const s of onVictim) {
          const i = all.indexOf(s);
          const m = await s.c.next("sinkstream.session.migrated", 30_000);
          assert.equal(m.reason, "backend_lost");
          assert.equal(m.session.id, s.id);
          // The restored cache holds the checkpointed tokens: the cache after the last finished response.
          assert.equal(m.session.sinkstream.cached_tokens, usage(before[i]).sinkstream.cached_tokens);
          const next = await s.c.turn("What happened next?", { max_output_tokens: 8 });
          assert.equal(next.response.status, "incomplete");
          const u = usage(next);
          assert.equal(
            u.sinkstream.cached_tokens,
            usage(before[i]).sinkstream.cached_tokens + u.input_tokens + 7,
          );
        }
        others[0].c.send({ type: "response.cancel" });
        const otherDone = await others[0].c.next("response.done");
        assert.equal(otherDone.response.status, "cancelled");
        for (const s of others) {
          assert.ok(
            !s.c.events.some((e) =>
              e.type === "sinkstream.session.migrated" || e.error?.code === "backend_lost"
            ),
          );
          const next = await s.c.turn("And then?", { max_output_tokens: 4 });
          assert.equal(next.response.status, "incomplete");
        }
        assert.equal(await metric(edge, "sinkstream:edge_restores_total"), onVictim.length);
        assert.ok(edge.lines.some((l) => l.includes(`from ${victimName} to`) && l.includes("backend_lost")));
        await Promise.all(all.map((s) => s.c.close()));
      },
    );

    await t.step(
      "SIGTERM a backend (drain): no new sessions go there, its running response finishes",
      async () => {
        const s = await session(edge.ws);
        await waitFor(() => placements(edge).has(s.id), "placement");
        const drainName = placements(edge).get(s.id)!;
        const drained = names.get(drainName)!;
        s.c.send({
          type: "conversation.item.create",
          item: {
            type: "message",
            role: "user",
            content: [{ type: "input_text", text: "Tell a long story." }],
          },
        });
        s.c.send({ type: "response.create", response: { max_output_tokens: 1500 } });
        await s.c.next("response.output_text.delta");
        drained.child.kill("SIGTERM");
        await waitFor(() => drained.lines.some((l) => l.includes("draining")), "the backend drains");
        const fresh = await Promise.all(Array.from({ length: 4 }, () => session(edge.ws)));
        await waitFor(() => fresh.every((f) => placements(edge).has(f.id)), "placements");
        for (const f of fresh) assert.notEqual(placements(edge).get(f.id), drainName);
        const done = await s.c.next("response.done", 60_000);
        assert.equal(done.response.status, "incomplete", "the running response finished, not cancelled");
        assert.equal(usage(done).output_tokens, 1500);
        const m = await s.c.next("sinkstream.session.migrated", 30_000);
        assert.equal(m.reason, "draining");
        assert.equal(m.session.sinkstream.cached_tokens, usage(done).sinkstream.cached_tokens);
        assert.equal((await drained.exited).code, 0);
        const next = await s.c.turn("The end?", { max_output_tokens: 4 });
        assert.equal(next.response.status, "incomplete");
        await Promise.all([s, ...fresh].map((x) => x.c.close()));
      },
    );
  } finally {
    await edge.kill("SIGTERM");
    await Promise.all(backends.map((b) => b.kill("SIGKILL")));
    await Deno.remove(kvFile).catch(() => {});
  }
});
