/**
 * Test helpers: a real gateway (native engine + tokenizer of stories260K,
 * SINKSTREAM_MODEL or ../shared) on a loopback port, and a raw WebSocket
 * client that records events.
 */
import { fileURLToPath } from "node:url";
import { createEngine, ensureNativeLibrary, loadModel, loadTokenizer } from "../../mod.ts";
import type { Engine, Tokenizer } from "../../runtime/types.ts";
import { createApp, type Gateway } from "../../gateway/app.ts";
import { type ConfigInput, ConfigSchema } from "../../gateway/config/config.ts";
import type { Server } from "../../gateway/server/serve.ts";

export function modelPath(): string {
  const env = Deno.env.get("SINKSTREAM_MODEL");
  if (env) return env;
  return fileURLToPath(new URL("../../../shared/models/stories260K/stories260K.bin", import.meta.url));
}

let shared: Promise<{ engine: Engine; tokenizer: Tokenizer }> | null = null;

/** One native engine per test process (2 threads: the CI machine has 2 cores). */
export function sharedEngine(): Promise<{ engine: Engine; tokenizer: Tokenizer }> {
  shared ??= (async () => {
    await ensureNativeLibrary();
    const path = modelPath();
    const model = await loadModel(path);
    // kvDtype f32: the KV-budget tests size their budgets in f32 bytes per token (the CPU default is f16)
    const engine = await createEngine(model, {
      threads: 1,
      maxSequences: 256,
      maxBatchTokens: 512,
      kvDtype: "f32",
    });
    const tokenizer = await loadTokenizer(path);
    return { engine, tokenizer };
  })();
  return shared;
}

export interface TestGateway {
  gw: Gateway;
  server: Server;
  http: string;
  ws: string;
  close(): Promise<void>;
}

export async function startGateway(overrides: ConfigInput = {}): Promise<TestGateway> {
  const { engine, tokenizer } = await sharedEngine();
  const config = ConfigSchema.parse({ port: 0, modelName: "stories260K", ...overrides });
  const gw = createApp({ engine, tokenizer, config, web: false });
  const server = gw.serve({ hostname: "127.0.0.1", port: 0 });
  const port = server.addr.port;
  return {
    gw,
    server,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/v1/realtime`,
    async close() {
      await gw.shutdown();
    },
  };
}

// deno-lint-ignore no-explicit-any
export type Ev = Record<string, any>;

/** A raw WebSocket client that queues server events. */
export class WsClient {
  readonly ws: WebSocket;
  readonly events: Ev[] = [];
  #waiters: { pred: (e: Ev) => boolean; resolve: (e: Ev, idx: number) => void }[] = [];
  #cursor = 0;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;

  constructor(url: string, protocols: string[] = ["realtime"]) {
    this.ws = new WebSocket(url, protocols);
    this.opened = new Promise((res, rej) => {
      this.ws.onopen = () => res();
      this.ws.onerror = (e) => rej(new Error(`websocket error: ${(e as ErrorEvent).message}`));
    });
    this.closed = new Promise((res) => this.ws.addEventListener("close", (e) => res(e)));
    this.ws.onmessage = (m) => {
      const ev = JSON.parse(m.data as string);
      this.events.push(ev);
      const idx = this.events.length - 1;
      for (const w of [...this.#waiters]) {
        if (w.pred(ev)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          w.resolve(ev, idx);
        }
      }
    };
  }

  static async open(url: string, protocols?: string[]): Promise<WsClient> {
    const c = new WsClient(url, protocols);
    await c.opened;
    return c;
  }

  send(ev: unknown): void {
    this.ws.send(typeof ev === "string" ? ev : JSON.stringify(ev));
  }

  /** Next event (after the previous `next`) matching `type` (or a predicate). */
  next(match: string | ((e: Ev) => boolean), timeoutMs = 10_000): Promise<Ev> {
    const pred = typeof match === "string" ? (e: Ev) => e.type === match : match;
    for (let i = this.#cursor; i < this.events.length; i++) {
      if (pred(this.events[i])) {
        this.#cursor = i + 1;
        return Promise.resolve(this.events[i]);
      }
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timeout waiting for ${String(match)}`)), timeoutMs);
      this.#waiters.push({
        pred,
        resolve: (e, idx) => {
          clearTimeout(t);
          this.#cursor = idx + 1;
          resolve(e);
        },
      });
    });
  }

  /** Send a user message and a response.create; resolve with the response.done event. */
  async turn(text: string, response: Ev = {}): Promise<Ev> {
    this.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    this.send({ type: "response.create", response });
    return await this.next("response.done", 20_000);
  }

  close(): Promise<CloseEvent> {
    try {
      this.ws.close();
    } catch { /* closed */ }
    return this.closed;
  }
}
