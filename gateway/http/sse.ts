/**
 * A `text/event-stream` response: one `data: <json>` event per object, `data: [DONE]` at the end (chat
 * completions), or named events (`event: <type>` + `data: <json>`) ended by closing the stream (the
 * Responses API).
 */
const enc = new TextEncoder();

export class SseStream {
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;

  /** `onCancel`: the client went away (the stream was cancelled). */
  constructor(onCancel: () => void) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      cancel: onCancel,
    });
  }

  /** One event; false when the stream is closed. */
  send(obj: unknown): boolean {
    try {
      this.#controller.enqueue(enc.encode(`data: ${JSON.stringify(obj)}\n\n`));
      return true;
    } catch {
      return false;
    }
  }

  /** One named event; false when the stream is closed. */
  sendNamed(event: string, obj: unknown): boolean {
    try {
      this.#controller.enqueue(enc.encode(`event: ${event}\ndata: ${JSON.stringify(obj)}\n\n`));
      return true;
    } catch {
      return false;
    }
  }

  /** Close without `[DONE]`. */
  close(): void {
    try {
      this.#controller.close();
    } catch { /* closed */ }
  }

  /** `data: [DONE]`, then close. */
  end(): void {
    try {
      this.#controller.enqueue(enc.encode("data: [DONE]\n\n"));
      this.#controller.close();
    } catch { /* closed */ }
  }

  response(): Response {
    return new Response(this.body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "connection": "keep-alive",
      },
    });
  }
}
