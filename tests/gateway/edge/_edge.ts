/** An edge in this process (createEdge + our server on a loopback port) for tests that look inside it. */
import { createEdge, type Edge } from "../../../gateway/edge/app.ts";
import { type EdgeConfigInput, EdgeConfigSchema } from "../../../gateway/edge/config.ts";
import type { Server } from "../../../gateway/server/serve.ts";
import { BACKEND_KEY } from "./_upstream_client.ts";

export interface TestEdge {
  edge: Edge;
  server: Server;
  http: string;
  ws: string;
  lines: string[];
  close(): Promise<void>;
}

export async function startTestEdge(
  backends: string[],
  kv: Deno.Kv,
  overrides: Partial<EdgeConfigInput> = {},
): Promise<TestEdge> {
  const config = EdgeConfigSchema.parse({
    backends,
    backendKey: BACKEND_KEY,
    port: 0,
    healthInterval: 0.5,
    connectTimeout: 2,
    ...overrides,
  });
  const lines: string[] = [];
  const edge = createEdge({ config, kv, log: (l) => lines.push(l) });
  await edge.start();
  const server = edge.serve({ hostname: "127.0.0.1", port: 0 });
  const http = `http://127.0.0.1:${server.addr.port}`;
  return {
    edge,
    server,
    http,
    ws: `ws://127.0.0.1:${server.addr.port}/v1/realtime`,
    lines,
    close: () => edge.shutdown(),
  };
}
