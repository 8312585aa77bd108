/**
 * Hostile clients against a gateway on this machine, for the soak (bench/soak.ts runs this as its own
 * process, so that a flooder's CPU does not slow the normal sessions' client) or on their own:
 *
 *   deno run -A bench/hostile.ts --url http://127.0.0.1:8000 --seconds 60 [--clients 5] [--kinds K,...]
 *       [--json]
 *
 * Client i is of kind kinds[i % kinds.length] (bench/hostile/*.ts; default all five: flooder,
 * huge_items, never_reading, faulty_dense, http_abuser). Each repeats its abuse, reconnecting, until --seconds are over (bounded in count
 * too: hostile/context.ts), and counts what the gateway did. They expect the gateway's default limits.
 * Prints, per client, its kind and tally (JSON with --json).
 */
import { parseArgs } from "node:util";
import { ConfigSchema } from "../gateway/config/config.ts";
import { assertLoopback, intFlag } from "./lib.ts";
import type { HostileContext } from "./hostile/context.ts";
import { faultyDense } from "./hostile/faulty_dense.ts";
import { flooder } from "./hostile/flooder.ts";
import { httpAbuser } from "./hostile/http_abuser.ts";
import { hugeItems } from "./hostile/huge_items.ts";
import { neverReading } from "./hostile/never_reading.ts";
import { describeCounts, Tally, type TallyJson } from "./hostile/tally.ts";

export const KINDS = {
  flooder,
  huge_items: hugeItems,
  never_reading: neverReading,
  faulty_dense: faultyDense,
  http_abuser: httpAbuser,
} as const;
export type Kind = keyof typeof KINDS;

export interface HostileReport extends TallyJson {
  kind: Kind;
}

/** Run `clients` hostile clients against `base` until `seconds` have passed, client i of kinds[i % n]. */
export async function runHostile(
  base: URL,
  clients: number,
  seconds: number,
  kinds = Object.keys(KINDS) as Kind[],
): Promise<HostileReport[]> {
  assertLoopback(base);
  const deadline = performance.now() + seconds * 1000;
  const limits = ConfigSchema.parse({});
  const runs = Array.from({ length: clients }, (_, i) => {
    const kind = kinds[i % kinds.length];
    const ctx: HostileContext = { base, port: Number(base.port), deadline, limits, tally: new Tally() };
    return KINDS[kind](ctx).then(() => ({ kind, ...ctx.tally.toJSON() }));
  });
  return await Promise.all(runs);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string", default: "http://127.0.0.1:8000" },
      seconds: { type: "string", default: "60" },
      clients: { type: "string", default: "5" },
      kinds: { type: "string", default: Object.keys(KINDS).join(",") },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno run -A bench/hostile.ts [--url URL] [--seconds 60] [--clients 5] [--kinds K,...] [--json]\n" +
        `  kinds: ${Object.keys(KINDS).join(", ")}`,
    );
    Deno.exit(0);
  }
  const kinds = values.kinds.split(",").map((k) => k.trim()) as Kind[];
  for (const k of kinds) {
    if (!(k in KINDS)) throw new Error(`--kinds: unknown ${k} (${Object.keys(KINDS).join(", ")})`);
  }
  const reports = await runHostile(
    new URL(values.url),
    intFlag("clients", values.clients, 1, 100),
    intFlag("seconds", values.seconds, 1, 86_400),
    kinds,
  );
  if (values.json) console.log(JSON.stringify(reports));
  else {for (const r of reports) {
      console.log(`${r.kind}: ${describeCounts(r.counts)} ${JSON.stringify(r.maxima)}`);
    }}
}
