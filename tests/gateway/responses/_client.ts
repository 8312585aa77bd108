/** Small helpers for the Responses API tests: POST / GET / DELETE with JSON, and an SSE reader. */
import type { TestGateway } from "../_gateway.ts";

// deno-lint-ignore no-explicit-any
export type Json = Record<string, any>;

export async function post(g: TestGateway, body: Json): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${g.http}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

export async function call(
  g: TestGateway,
  method: string,
  id: string,
): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${g.http}/v1/responses/${id}`, { method });
  return { status: r.status, json: await r.json() };
}

/** A streamed response's events, with the SSE event name of each checked against its `type`. */
export async function stream(g: TestGateway, body: Json): Promise<Json[]> {
  const r = await fetch(`${g.http}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
  const events: Json[] = [];
  for (const block of (await r.text()).split("\n\n")) {
    if (block.trim() === "") continue;
    const [eventLine, dataLine] = block.split("\n");
    const ev = JSON.parse(dataLine.replace(/^data: /, ""));
    if (eventLine !== `event: ${ev.type}`) throw new Error(`event line ${eventLine} for ${ev.type}`);
    events.push(ev);
  }
  return events;
}

/** The output text of a response object. */
export function outputText(r: Json): string {
  return r.output.flatMap((o: Json) => o.content.map((c: Json) => c.text)).join("");
}
