/**
 * `wscat` (npm, pinned in deno.json and below) as a person at a terminal uses it against a gateway process: connect with the
 * `realtime` subprotocol and a Bearer header, send events with `-x`, read the server events it prints one per
 * line. Two sessions with the same greedy turn get the same text; a bad event among them gets a typed error and
 * the session goes on.
 */
import assert from "node:assert/strict";
import { API_KEY, withGatewayProcess } from "./_process.ts";

const WSCAT = "npm:wscat@6.1.0";
const REPO = new URL("../../..", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
type Ev = Record<string, any>;

/** Run wscat with these events until it printed a `response.done`; the events it printed. */
async function wscat(port: number, events: unknown[]): Promise<Ev[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      WSCAT,
      "-c",
      `ws://127.0.0.1:${port}/v1/realtime`,
      "-s",
      "realtime",
      "-H",
      `Authorization: Bearer ${API_KEY}`,
      "-w",
      "-1", // never close by itself: we stop it once the response is done
      ...events.flatMap((e) => ["-x", JSON.stringify(e)]),
    ],
    cwd: REPO,
    stdin: "piped", // kept open: wscat quits when its stdin closes
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: Ev[] = [];
  let buf = "";
  try {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) if (line.trim() !== "") out.push(JSON.parse(line));
      if (out.some((e) => e.type === "response.done")) break;
    }
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
    await child.stdin.close().catch(() => {});
    await child.stderr.cancel();
  }
  return out;
}

const item = (text: string) => ({
  type: "conversation.item.create",
  item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
});

Deno.test("wscat: a Realtime turn from the command line, typed errors, same greedy text twice", async () => {
  await withGatewayProcess(async (g) => {
    const turn = [
      item("Lily had a red ball."),
      { type: "nope.nope", event_id: "evt_bad" },
      { type: "response.create", response: { max_output_tokens: 12 } },
    ];
    const a = await wscat(g.port, turn);
    assert.equal(a[0].type, "session.created");
    const err = a.find((e) => e.type === "error")!;
    assert.equal(err.error.code, "unknown_event");
    assert.equal(err.error.event_id, "evt_bad");
    const done = a.find((e) => e.type === "response.done")!;
    assert.equal(done.response.status, "incomplete");
    assert.equal(done.response.usage.output_tokens, 12);
    const text = a.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
    assert.equal(text, done.response.output[0].content[0].text);
    const b = await wscat(g.port, turn);
    assert.equal(b.find((e) => e.type === "response.done")!.response.output[0].content[0].text, text);
  });
});
